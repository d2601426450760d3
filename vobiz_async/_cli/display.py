"""
What the person at the terminal sees: progress while the batch runs, a summary after.

The progress fits 80 columns: a bar line (done/total, elapsed, eta), a line
of counts and the current rate, and, when there is one, a line that says why
it is waiting (a 429 pause, requests with no answer, input that has not come)
or why it stopped, and the commonest failure reasons. The rate is measured
over the last few seconds, so a stall shows as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from .nextstep import NextStep
from .options import Options
from .source import ReaderState
from .tally import RunEnd, Tally

__all__ = [
    "HUNG_AFTER",
    "consoles",
    "PLAIN_PROGRESS_EVERY",
    "print_summary",
    "progress_display",
    "reasons_text",
    "status_text",
]

PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines when stderr is not a terminal
TICK = 0.25  # seconds between updates of the live display
#: Seconds without any answer, requests in flight, before the display says so.
HUNG_AFTER = 2.0


def consoles() -> tuple[Console, Console]:
    """
    Stdout and stderr as the command writes to them: lines never wrapped (they are grepped).
    """
    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


def status_text(
    tally: Tally,
    now: float,
    reader: Callable[[], ReaderState] | None,
    attempt_timeout: float | None,
) -> str | None:
    """
    Why the batch is not moving, if it is not (or why it stopped); None when all is well.
    """
    if tally.halt is not None:
        return f"stopping: {tally.halt.reason}"
    if tally.interrupted:
        return "interrupted: finishing what is in flight"
    if tally.paused_until > now:
        return (
            f"paused by the server's rate limit (429): sending again in "
            f"{tally.paused_until - now:.1f}s"
        )
    if tally.in_flight:
        oldest = min(handed for _, handed in tally.in_flight.values())
        waited = now - max(oldest, tally.last_answer)
        if waited >= HUNG_AFTER:
            within = f" (timeout {attempt_timeout:g}s per attempt)" if attempt_timeout else ""
            return (
                f"no answer for {now - oldest:.0f}s: {len(tally.in_flight)} "
                f"request{'s' if len(tally.in_flight) != 1 else ''} in flight{within}"
            )
        return None
    if reader is not None and reader() is ReaderState.WAITING:
        # Ctrl-D is for someone typing; a pipe ends when what writes to it does.
        ends = " (Ctrl-D ends it)" if _stdin_is_terminal() else ""
        return f"waiting for input on standard input{ends}"
    return None


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):  # no standard input at all
        return False


def reasons_text(tally: Tally) -> str | None:
    """
    The commonest failure reasons, most common first: "failing: 503 Service Unavailable (12)".
    """
    top = tally.top_reasons()
    if not top:
        return None
    return "failing: " + ", ".join(f"{reason} ({count})" for reason, count in top)


def _counts_line(tally: Tally, rate: float | None) -> str:
    parts = [tally.counts_text()]
    if rate is not None:
        parts.append(f"{rate:.1f}/s")
    if tally.duplicates:
        parts.append(f"duplicates {tally.duplicates}")
    if tally.skipped:
        parts.append(f"skipped {tally.skipped}")
    return " · ".join(parts)


class LiveBar(RichProgress):
    """
    rich's progress bar, with the status lines the batch's ticker last wrote under it.
    """

    lines: tuple[Text, ...] = ()

    def get_renderables(self) -> Iterable[RenderableType]:
        """
        The bar's line, then the status lines, each cut (never wrapped) at the terminal's width.
        """
        yield self.make_tasks_table(self.tasks)
        yield from self.lines


@contextlib.asynccontextmanager
async def progress_display(
    tally: Tally,
    err: Console,
    *,
    quiet: bool,
    reader: Callable[[], ReaderState] | None = None,
    attempt_timeout: float | None = None,
) -> AsyncIterator[None]:
    """
    A live bar on a terminal, plain periodic lines elsewhere, nothing with --quiet.
    """
    if quiet:
        yield
    elif err.is_terminal:
        async with _live_bar(tally, err, reader, attempt_timeout):
            yield
    else:
        async with _plain_lines(tally, err, reader, attempt_timeout):
            yield


@contextlib.asynccontextmanager
async def _live_bar(
    tally: Tally,
    err: Console,
    reader: Callable[[], ReaderState] | None,
    attempt_timeout: float | None,
) -> AsyncIterator[None]:
    bar = LiveBar(
        SpinnerColumn(),
        TextColumn("[bold]stopping"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        expand=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = bar.add_task("stopping", total=tally.rows)

    def update() -> None:
        # On the event loop, where the tally changes; rich's refresh thread only reads the result.
        now = time.monotonic()
        lines = [_counts_line(tally, tally.recent_rate(now))]
        status = status_text(tally, now, reader, attempt_timeout)
        if status is not None:
            lines.append(status)
        reasons = reasons_text(tally)
        if reasons is not None:
            lines.append(reasons)
        bar.lines = tuple(Text(line, no_wrap=True, overflow="ellipsis") for line in lines)
        bar.update(task, completed=tally.accounted, total=tally.rows)

    async def tick() -> None:
        while True:
            update()
            await asyncio.sleep(TICK)

    with bar:
        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            update()


@contextlib.asynccontextmanager
async def _plain_lines(
    tally: Tally,
    err: Console,
    reader: Callable[[], ReaderState] | None,
    attempt_timeout: float | None,
) -> AsyncIterator[None]:
    async def print_every_few_seconds() -> None:
        while True:
            await asyncio.sleep(PLAIN_PROGRESS_EVERY)
            now = time.monotonic()
            out_of = f"/{tally.rows}" if tally.rows is not None else ""
            rate = tally.recent_rate(now)
            parts = [
                f"progress: {tally.accounted}{out_of} done ({tally.counts_text()})"
                + (f", {rate:.1f}/s" if rate is not None else "")
            ]
            parts += filter(
                None, (status_text(tally, now, reader, attempt_timeout), reasons_text(tally))
            )
            err.print("; ".join(parts), highlight=False, markup=False)

    ticker = asyncio.create_task(print_every_few_seconds())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def print_summary(
    tally: Tally,
    options: Options,
    out: Console,
    err: Console,
    *,
    report: str | None = None,
    next_step: NextStep | None = None,
    refused: str | None = None,
) -> None:
    """
    The summary: JSON on stdout with --json, and a table (stderr with --json) unless --quiet.

    ``refused``: what the real run would refuse (--dry-run only).
    """
    if options.dry_run:
        _print_dry_run(tally, options, out, err, refused)
        return
    data: dict[str, Any] = {
        **tally.as_json(),
        "report": report,
        "next_command": next_step.line if next_step is not None else None,
    }
    if options.json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    show = err if options.json else out
    if not options.quiet:
        show.print(_table(tally, data))
    for note in _notes(tally, errors_only=options.quiet):
        err.print(note, highlight=False)
    if options.quiet:
        return
    if report is not None:
        show.print(f"report: {escape(report)}", highlight=False)
    if next_step is not None:
        show.print(f"{next_step.why}:", highlight=False)
        show.print(f"  {escape(next_step.line)}", highlight=False)


def _print_dry_run(
    tally: Tally, options: Options, out: Console, err: Console, refused: str | None
) -> None:
    data = {
        "dry_run": True,
        "would_send": tally.planned,
        "bad_rows": tally.bad_rows,
        "skipped": tally.skipped,
        "duplicates": tally.duplicates,
        "refused": refused,
    }
    if options.json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    if not options.quiet:
        (err if options.json else out).print(
            f"dry run: {tally.planned} targets would be sent, {tally.bad_rows} bad rows, "
            f"{tally.duplicates} duplicates, {tally.skipped} skipped per --resume; "
            "nothing was sent",
            highlight=False,
        )
    if refused is not None:
        err.print(f"vobiz-async: the real run would refuse this: {refused}", highlight=False)


def _table(tally: Tally, data: dict[str, Any]) -> Table:
    table = Table(title="vobiz-async summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("stopped", str(tally.stopped))
    table.add_row("not found", str(tally.not_found))
    table.add_row("failed", str(tally.failed + tally.bad_rows))
    if tally.bad_rows:
        table.add_row("  of which bad input rows", str(tally.bad_rows))
    if tally.duplicates:
        table.add_row("duplicates (sent once)", str(tally.duplicates))
    if tally.skipped:
        table.add_row("skipped (done per --resume)", str(tally.skipped))
    if tally.in_flight_interrupted:
        table.add_row("interrupted in flight", str(tally.in_flight_interrupted))
        table.add_row("  (may have been applied)", "")
    not_attempted = tally.not_attempted
    table.add_row(
        "not attempted",
        "unknown: input not read to its end" if not_attempted is None else str(not_attempted),
    )
    table.add_row("elapsed", f"{data['elapsed']:.1f}s")
    table.add_row("req/s", f"{data['requests_per_second']:.1f}")
    return table


def _notes(tally: Tally, *, errors_only: bool) -> list[str]:
    """
    Why the run ended as it did, in the command line's words: errors first (only those, quiet).
    """
    notes = []
    if tally.halt is not None:
        notes.append(f"[red]vobiz-async: {escape(tally.halt.reason)}[/red]")
    if tally.input_error is not None:
        notes.append(
            f"[red]vobiz-async: {escape(tally.input_error)}[/red]; "
            "the rows before it were sent and are in the report"
        )
    if errors_only:
        return notes
    if tally.end is RunEnd.INTERRUPTED:
        in_flight = tally.in_flight_interrupted
        notes.append(
            "[yellow]interrupted[/yellow]"
            + (
                f": {in_flight} in flight may have been applied (their requests may have "
                "reached the server); sending them again is safe"
                if in_flight
                else ""
            )
        )
    reasons = reasons_text(tally)
    if reasons is not None:
        notes.append(escape(reasons))
    return notes
