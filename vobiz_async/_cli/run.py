"""
One batch from rows to exit status: input, resume, report, send (or only check), summary.

``execute`` is the building block of every command that stops targets: give
it rows (an InputSource, or any iterable or async iterable of Row/BadRow) and
the options, and it reads them off the event loop, skips duplicates and what
``--resume`` shows done, keeps the report, shows progress, stops early when a
brake says the rest would fail, accounts for every row after Ctrl-C, prints
the summary with the command to run next, and returns the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)

import click
from rich.console import Console
from rich.markup import escape

from .._client import AsyncVobiz
from .._exceptions import APIConnectError, AuthenticationError, VobizError
from .._models import StopResult
from .._targets import Target
from .display import consoles, print_summary, progress_display
from .exits import CommandError, ExitStatus
from .input import BadRow, InputError, Row, Unit
from .nextstep import next_step
from .options import Options
from .report import (
    Reporter,
    ReportKey,
    ReportPlan,
    load_resume,
    open_report,
    plan_report,
    report_key,
    target_fields,
)
from .source import InputSource, ReaderState, in_thread
from .tally import Halt, InputState, RunEnd, Tally, failure_reason

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Rows",
    "execute",
    "exit_status",
    "halt_on",
    "interrupted_by_signals",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = (
    ExitStatus.OK,
    ExitStatus.FAILED,
    ExitStatus.USAGE,
    ExitStatus.INTERRUPTED,
)

#: Rows to stop: read as they are needed, never all at once.
Rows = Iterable[Row | BadRow] | AsyncIterable[Row | BadRow]

#: Files this large are said to be counted before anything is sent: it takes a moment.
COUNT_NOTICE_BYTES = 4 * 1024 * 1024

AUTHENTICATION_FAILED = "authentication failed (401): check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN"


async def execute(
    target_type: type[Target] | None,
    rows: Rows | InputSource,
    total: int | None,
    options: Options,
    make_client: Callable[[], AsyncVobiz] | None,
    *,
    command: str | None = None,
    tally: Tally | None = None,
    refused: str | None = None,
    keep_report: bool = True,
) -> int:
    """
    Run one batch and print its summary; return the exit status.

    Without ``make_client`` (--dry-run) every row is read and checked, and
    nothing sent; ``refused`` is what the real run would refuse. ``total``
    is the number of rows, if known (an InputSource counts its own). Every
    real run keeps a report: ``options.report``, or what ``--resume`` names,
    or a new file named after ``command``; ``keep_report=False`` (the demo)
    keeps one only when asked.
    """
    out, err = consoles()
    command = command or _current_command()
    tally = tally if tally is not None else Tally(rows=total)
    source = rows if isinstance(rows, InputSource) else None
    plan: ReportPlan | None = None
    if keep_report or options.report is not None or options.resume is not None:
        plan = plan_report(
            report=options.report,
            resume=options.resume,
            append=options.append,
            command=command,
            input_path=source.path if source is not None else None,
        )
    async with interrupted_by_signals(tally):
        await _run(target_type, rows, options, make_client, tally, plan, err)
    if tally.read == 0 and tally.input is InputState.COMPLETE:
        where = source.name if source is not None else "the input"
        raise CommandError(f"no targets in {where}: it is empty, or holds only a header")
    # A report this run created and never wrote to is gone: nothing to resume from.
    kept = plan if plan is not None and not options.dry_run and plan.path.exists() else None
    step = next_step(tally, command=command, source=source, options=options, report=kept)
    report_name = kept.name if kept is not None else None
    print_summary(tally, options, out, err, report=report_name, next_step=step, refused=refused)
    if options.dry_run and not tally.interrupted:
        if refused is not None:
            return ExitStatus.USAGE
        return ExitStatus.FAILED if tally.bad_rows else ExitStatus.OK
    return tally.exit_status()


def _current_command() -> str:
    context = click.get_current_context(silent=True)
    return context.info_name if context is not None and context.info_name else "vobiz-async"


async def _run(
    target_type: type[Target] | None,
    rows: Rows | InputSource,
    options: Options,
    make_client: Callable[[], AsyncVobiz] | None,
    tally: Tally,
    plan: ReportPlan | None,
    err: Console,
) -> None:
    unit = Unit.LINE
    reader_state: Callable[[], ReaderState] | None = None
    items: AsyncGenerator[Row | BadRow]
    if isinstance(rows, InputSource):
        source = rows
        assert target_type is not None
        unit = source.unit
        if source.is_terminal():
            err.print(
                "reading targets from the terminal: one per line, then Ctrl-D "
                "(Ctrl-Z Enter on Windows)",
                highlight=False,
            )
        if tally.rows is None:
            size = source.size()
            if size >= COUNT_NOTICE_BYTES and not options.quiet:
                err.print(
                    f"counting the rows of {escape(source.name)} ({size / 1e6:.0f} MB); "
                    "Ctrl-C stops",
                    highlight=False,
                )
            try:
                tally.rows = await in_thread(lambda stop: source.count(target_type, stop))
            except InputError as exc:
                raise CommandError(str(exc)) from None
            if tally.rows == 0:
                raise CommandError(
                    f"no targets in {source.name}: it is empty, or holds only a header"
                )
        reader = source.reader(target_type)
        reader_state = lambda: reader.state  # noqa: E731
        items = reader.items()
    else:
        items = _as_async(rows)
    finished: set[ReportKey] = set()
    if options.resume is not None:
        resume = options.resume
        finished = await in_thread(lambda _: load_resume(resume, err))
    with open_report(plan, dry_run=options.dry_run) as report:
        if plan is not None and plan.chosen and report is not None and not options.quiet:
            err.print(f"report: {escape(plan.name)}", highlight=False)
        kind = target_type.kind if target_type is not None else "unknown"
        feed = Feed(tally, Reporter(kind, tally, report, err, unit), finished, err)
        try:
            if options.dry_run or make_client is None:
                async with contextlib.aclosing(feed.targets(items, track=False)) as targets:
                    async for _ in targets:
                        tally.planned += 1
            else:
                async with make_client() as vobiz:
                    feed.base_url = vobiz.base_url
                    with batch_events(tally):
                        await _send(vobiz, feed, items, options, tally, err, reader_state)
        finally:
            # Cancelled by Ctrl-C: what was in flight gets its line, honestly named.
            if tally.interrupted:
                for target, _ in list(tally.in_flight.values()):
                    feed.reporter.interrupted(target)
                tally.in_flight.clear()
                # Never sent: not attempted, and no report line (--resume sends them).
                tally.queued_interrupted += len(tally.queued)
                tally.queued.clear()
    if tally.input_error is not None and tally.read == 0:
        raise CommandError(tally.input_error)  # nothing was read, nothing sent: a usage error


async def _send(
    vobiz: AsyncVobiz,
    feed: Feed,
    items: AsyncGenerator[Row | BadRow],
    options: Options,
    tally: Tally,
    err: Console,
    reader_state: Callable[[], ReaderState] | None,
) -> None:
    async with (
        progress_display(
            tally,
            err,
            quiet=options.quiet,
            reader=reader_state,
            attempt_timeout=options.timeout,
        ),
        contextlib.aclosing(feed.targets(items, track=True)) as targets,
        vobiz.iter_stop_many(
            targets,
            concurrency=options.concurrency,
            rate_limit=options.rate,
            on_result=feed.on_result,
            on_sent=feed.on_sent,
        ) as results,
    ):
        async for _ in results:
            pass


async def _as_async(rows: Rows) -> AsyncGenerator[Row | BadRow]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


class Feed:
    """
    The batch's input and its results: the bookkeeping between rows and the report.

    Hands over each new target (bad rows, duplicates and those --resume shows
    done go to the report instead), keeps what is in flight, and stops the
    input when a brake says the rest would fail.
    """

    def __init__(
        self, tally: Tally, reporter: Reporter, finished: set[ReportKey], err: Console
    ) -> None:
        self.tally = tally
        self.reporter = reporter
        self.finished = finished
        self.err = err
        self.base_url = ""

    async def targets(
        self, rows: AsyncGenerator[Row | BadRow], *, track: bool
    ) -> AsyncGenerator[Target]:
        """
        The targets to send, until the input ends or a brake stops the batch.
        """
        tally, reporter, finished = self.tally, self.reporter, self.finished
        seen: set[ReportKey] = set()
        async with contextlib.aclosing(rows):
            while tally.halt is None:
                try:
                    row = await anext(rows, None)
                except InputError as exc:
                    # The input broke off: what came before it is sent and reported.
                    tally.input_error = str(exc)
                    tally.end = RunEnd.INPUT_ERROR
                    return
                if row is None:
                    tally.input = InputState.COMPLETE
                    return
                tally.read += 1
                if isinstance(row, BadRow):
                    reporter.bad_row(row)
                    continue
                key = report_key(target_fields(row.target))
                if key in finished:
                    reporter.skip()
                elif key in seen:
                    reporter.duplicate()
                else:
                    seen.add(key)
                    if track:
                        tally.queued[key] = row.target
                    yield row.target

    def on_sent(self, target: Target) -> None:
        """
        A target's first request left for the server: in flight, it may be applied.
        """
        self.tally.sending(report_key(target_fields(target)))

    def on_result(self, result: StopResult) -> None:
        """
        A target's answer: out of flight, into the tally and the report; a brake stops the input.
        """
        tally = self.tally
        key = report_key(target_fields(result.target))
        tally.in_flight.pop(key, None)
        tally.queued.pop(key, None)
        tally.last_answer = time.monotonic()
        self.reporter.result(result)
        halt_on(result.error, tally, base_url=self.base_url, err=self.err)


def halt_on(error: VobizError | None, tally: Tally, *, base_url: str, err: Console) -> None:
    """
    Stop the run's input when an error says the rest would fail: a 401, or a batch's brake.

    Said on screen once, with what to check; the exit status is the halt's.
    """
    if tally.halt is not None or error is None:
        return
    if isinstance(error, AuthenticationError):
        halt = Halt(AUTHENTICATION_FAILED, ExitStatus.USAGE)
    elif error.brake is None:
        return
    elif isinstance(error, APIConnectError):
        why = failure_reason(error).removeprefix("cannot connect: ")
        halt = Halt(
            f"cannot connect to {base_url} ({why}): check the base URL "
            "(--base-url or VOBIZ_BASE_URL), DNS, and any proxy or VPN",
            ExitStatus.USAGE,
        )
    else:
        halt = Halt(f"the batch stopped: {error.brake}", ExitStatus.FAILED)
    tally.halt = halt
    tally.end = RunEnd.HALTED
    err.print(
        f"[red]vobiz-async: {escape(halt.reason)}[/red]; "
        "targets not sent yet are counted as not attempted",
        highlight=False,
    )


class _BatchEvents(logging.Handler):
    """
    The library's INFO records, as the display needs them: 429 pauses and retries.
    """

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.INFO)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "vobiz_event", None)
        if event == "throttled":
            wait = float(getattr(record, "vobiz_wait", 0.0))
            self.tally.throttled += 1
            self.tally.paused_until = max(self.tally.paused_until, time.monotonic() + wait)
        elif event == "retry":
            self.tally.retries += 1


@contextlib.contextmanager
def batch_events(tally: Tally) -> Iterator[None]:
    """
    While a batch runs, its 429 pauses and retries are counted on ``tally``.
    """
    logger = logging.getLogger("vobiz_async")
    handler = _BatchEvents(tally)
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.asynccontextmanager
async def interrupted_by_signals(tally: Tally) -> AsyncIterator[None]:
    """
    SIGINT or SIGTERM stop the run, wherever it is: it ends interrupted, its summary still printed.
    """
    work = asyncio.current_task()
    assert work is not None
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        tally.end = RunEnd.INTERRUPTED
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
    The run's exit status (see ExitStatus).
    """
    return tally.exit_status()
