"""
What the person at the terminal sees: progress while the batch runs, a summary after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import ParamSpec

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as LiveBar
from rich.table import Table

from .options import Options
from .tally import Tally

__all__ = ["PLAIN_PROGRESS_EVERY", "Progress", "print_summary", "progress_display"]

P = ParamSpec("P")

PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines when stderr is not a terminal


class Progress:
    """
    Wraps the hooks that account for rows, so that each call also moves the bar on.
    """

    def __init__(self, advance: Callable[[], None] | None = None) -> None:
        self._advance = advance

    def wrap(self, hook: Callable[P, None]) -> Callable[P, None]:
        """
        ``hook``, then one row more on the bar; ``hook`` itself when there is no bar.
        """
        advance = self._advance
        if advance is None:
            return hook

        def hook_then_advance(*args: P.args, **kwargs: P.kwargs) -> None:
            hook(*args, **kwargs)
            advance()

        return hook_then_advance


@contextlib.asynccontextmanager
async def progress_display(tally: Tally, err: Console, *, quiet: bool) -> AsyncIterator[Progress]:
    """
    A live bar on a terminal, plain periodic lines elsewhere, nothing with --quiet.
    """
    if quiet:
        yield Progress()
    elif err.is_terminal:
        with _live_bar(tally, err) as advance:
            yield Progress(advance)
    else:
        async with _plain_lines(tally, err):
            yield Progress()


@contextlib.contextmanager
def _live_bar(tally: Tally, err: Console) -> Iterator[Callable[[], None]]:
    bar = LiveBar(
        SpinnerColumn(),
        TextColumn("[bold]stopping"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f}/s"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
    )
    task = bar.add_task("stopping", total=tally.rows, rate=0.0, counts=tally.counts_text())

    def advance() -> None:
        bar.update(task, advance=1, rate=tally.rate(), counts=tally.counts_text())

    with bar:
        yield advance


@contextlib.asynccontextmanager
async def _plain_lines(tally: Tally, err: Console) -> AsyncIterator[None]:
    async def print_every_few_seconds() -> None:
        while True:
            await asyncio.sleep(PLAIN_PROGRESS_EVERY)
            out_of = f"/{tally.rows}" if tally.rows is not None else ""
            err.print(
                f"progress: {tally.accounted}{out_of} done ({tally.counts_text()}), "
                f"{tally.rate():.1f}/s",
                highlight=False,
            )

    ticker = asyncio.create_task(print_every_few_seconds())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def print_summary(tally: Tally, options: Options, out: Console, err: Console) -> None:
    """
    The summary: JSON on stdout with --json, and a table (stderr with --json) unless --quiet.
    """
    data = tally.as_json()
    if options.dry_run:
        data = {
            "dry_run": True,
            "would_send": tally.planned,
            "bad_rows": tally.bad_rows,
            "skipped": tally.skipped,
        }
    if options.json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    if options.quiet:
        return
    if options.dry_run:
        (err if options.json else out).print(
            f"dry run: {tally.planned} targets would be sent, {tally.bad_rows} bad rows, "
            f"{tally.skipped} skipped per --resume; nothing was sent",
            highlight=False,
        )
        return
    table = Table(title="vobiz-async summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("stopped", str(tally.stopped))
    table.add_row("not found", str(tally.not_found))
    table.add_row("failed", str(tally.failed + tally.bad_rows))
    if tally.bad_rows:
        table.add_row("  of which bad input rows", str(tally.bad_rows))
    if tally.skipped:
        table.add_row("skipped (done per --resume)", str(tally.skipped))
    not_attempted = tally.not_attempted
    table.add_row("not attempted", "unknown" if not_attempted is None else str(not_attempted))
    table.add_row("elapsed", f"{data['elapsed']:.1f}s")
    table.add_row("req/s", f"{data['requests_per_second']:.1f}")
    (err if options.json else out).print(table)
    if tally.interrupted:
        err.print("[yellow]interrupted: finish the job with --resume and this run's report")
