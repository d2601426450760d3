"""
One batch from rows to exit status: resume, report, send (or only count), summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from rich.console import Console

from .._client import AsyncVobiz
from .._targets import Target
from .display import print_summary, progress_display
from .input import BadRow, Row
from .options import Options
from .report import Reporter, ReportKey, load_resume, open_report, report_key, target_fields
from .tally import Tally

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "execute",
    "exit_status",
    "targets_from",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


async def execute(
    target_type: type[Target],
    rows: Iterator[Row | BadRow],
    total: int | None,
    options: Options,
    make_client: Callable[[], AsyncVobiz] | None,
) -> int:
    """
    Run one batch and print its summary; return the exit status.

    Without ``make_client`` (--dry-run) every row is read and validated, and nothing sent.
    """
    out, err = Console(), Console(stderr=True)
    finished = load_resume(options.resume, err) if options.resume else set()
    tally = Tally(rows=total)
    with open_report(options.report, options.resume) as report:
        reporter = Reporter(target_type.kind, tally, report, err)
        if options.dry_run or make_client is None:  # read and validate everything, send nothing
            for _ in targets_from(rows, finished, reporter.bad_row, reporter.skip):
                tally.planned += 1
        else:
            async with (
                make_client() as vobiz,
                interrupted_by_signals(tally),
                progress_display(tally, err, quiet=options.quiet) as progress,
            ):
                targets = targets_from(
                    rows, finished, progress.wrap(reporter.bad_row), progress.wrap(reporter.skip)
                )
                async for _ in vobiz.iter_stop_many(
                    targets,
                    concurrency=options.concurrency,
                    rate_limit=options.rate,
                    on_result=progress.wrap(reporter.result),
                ):
                    pass
    print_summary(tally, options, out, err)
    return EXIT_OK if options.dry_run and not tally.bad_rows else exit_status(tally)


def targets_from(
    rows: Iterable[Row | BadRow],
    finished: set[ReportKey],
    on_bad_row: Callable[[BadRow], None],
    on_skip: Callable[[], None],
) -> Iterator[Target]:
    """
    The targets to send: bad rows and those ``finished`` already go to their hooks instead.
    """
    for row in rows:
        if isinstance(row, BadRow):
            on_bad_row(row)
        elif finished and report_key(target_fields(row.target)) in finished:
            on_skip()
        else:
            yield row.target


@contextlib.asynccontextmanager
async def interrupted_by_signals(tally: Tally) -> AsyncIterator[None]:
    """
    SIGINT or SIGTERM stop the batch: the run ends interrupted, its summary still printed.
    """
    work = asyncio.current_task()
    assert work is not None
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        tally.interrupted = True
        work.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        yield
    except asyncio.CancelledError:
        if not tally.interrupted:
            raise
        work.uncancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def exit_status(tally: Tally) -> int:
    """
    130 when interrupted, 1 when any row failed, else 0.
    """
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed or tally.bad_rows else EXIT_OK
