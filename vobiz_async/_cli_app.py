"""
The vobiz-async command: bulk teardown from a file, for people mid-incident.

Everything here is glue: click parses, rich draws, stop_many does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

import attrs
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ._cli_input import BadRow, InputError, Kind, Row, read_rows, report_key
from ._client import AsyncVobiz
from ._exceptions import ConfigurationError, InvalidTargetError
from ._models import Outcome, StopResult
from ._retry import RetryPolicy
from ._targets import Recording, Stream, Target

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines when stderr is not a terminal


@attrs.define
class Tally:
    """
    What the run did so far; the summary and the progress line read it.
    """

    rows: int | None = None  # input rows, when known up front
    stopped: int = 0
    not_found: int = 0
    failed: int = 0
    bad_rows: int = 0
    skipped: int = 0
    planned: int = 0  # --dry-run: valid targets that would have been sent
    started: float = attrs.Factory(time.monotonic)
    interrupted: bool = False

    @property
    def done(self) -> int:
        return self.stopped + self.not_found + self.failed + self.bad_rows

    @property
    def accounted(self) -> int:
        """
        Rows dealt with one way or another, skipped ones included: the bar's progress.
        """
        return self.done + self.skipped

    @property
    def total(self) -> int | None:
        """
        Targets this run was to handle: the rows less those --resume skipped.
        """
        return None if self.rows is None else self.rows - self.skipped

    @property
    def not_attempted(self) -> int | None:
        if self.rows is None:
            return None if self.interrupted else 0
        return max(self.rows - self.accounted, 0)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def counts_text(self) -> str:
        return (
            f"stopped {self.stopped}, not found {self.not_found}, "
            f"failed {self.failed + self.bad_rows}"
        )

    def as_json(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "total": self.total,
            "stopped": self.stopped,
            "not_found": self.not_found,
            "failed": self.failed + self.bad_rows,
            "bad_rows": self.bad_rows,
            "skipped": self.skipped,
            "not_attempted": self.not_attempted,
            "interrupted": self.interrupted,
            "elapsed": round(elapsed, 3),
            "requests_per_second": round(self.rate(), 1),
        }


@attrs.frozen
class Options:
    concurrency: int
    rate: float | None
    report: Path | None
    resume: Path | None
    dry_run: bool
    base_url: str | None
    timeout: float
    max_attempts: int
    quiet: bool
    json: bool


def target_fields(target: Target) -> dict[str, Any]:
    """
    A target as the four report columns every line has.
    """
    return {
        "kind": target.kind,
        "call_uuid": target.call_uuid,
        "stream_id": target.stream_id if isinstance(target, Stream) else None,
        "url": target.url if isinstance(target, Recording) else None,
    }


def result_line(result: StopResult) -> dict[str, Any]:
    return {
        **target_fields(result.target),
        "outcome": result.outcome.value,
        "status_code": result.status_code,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "error": str(result.error) if result.error is not None else None,
    }


def bad_row_line(kind: Kind, bad: BadRow) -> dict[str, Any]:
    def field(name: str) -> Any:
        value = bad.fields.get(name)
        return value if isinstance(value, str | int | float) else None

    return {
        "kind": kind,
        "call_uuid": field("call_uuid"),
        "stream_id": field("stream_id"),
        "url": field("url"),
        "outcome": Outcome.FAILED.value,
        "status_code": None,
        "attempts": 0,
        "elapsed": 0.0,
        "error": bad.error,
        "line": bad.line,
    }


def load_resume(path: Path, err: Console) -> set[tuple[str, str | None, str | None, str | None]]:
    """
    Targets an earlier report shows as finished: stopped or not found.
    """
    finished = set()
    with path.open(encoding="utf-8") as report:
        for number, text in enumerate(report, start=1):
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except ValueError:
                # A line cut short by a crash mid-write: that target is simply redone.
                err.print(f"[yellow]resume: line {number} of {path} is not JSON; ignored")
                continue
            if isinstance(fields, dict) and fields.get("outcome") in ("stopped", "not_found"):
                finished.add(report_key(fields))
    return finished


class Reporter:
    """
    Writes report lines as results arrive and keeps the tally and progress current.
    """

    def __init__(self, kind: Kind, tally: Tally, out: IO[str] | None, err: Console) -> None:
        self.kind = kind
        self.tally = tally
        self.out = out
        self.err = err
        self.advance: Callable[[], None] = lambda: None

    def write(self, fields: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(json.dumps(fields) + "\n")
            # Flushed per line: after a crash or Ctrl-C the report is --resume material.
            self.out.flush()

    def result(self, result: StopResult) -> None:
        if result.outcome is Outcome.STOPPED:
            self.tally.stopped += 1
        elif result.outcome is Outcome.NOT_FOUND:
            self.tally.not_found += 1
        else:
            self.tally.failed += 1
        self.write(result_line(result))
        self.advance()

    def skip(self) -> None:
        self.tally.skipped += 1
        self.advance()

    def bad_row(self, bad: BadRow) -> None:
        self.tally.bad_rows += 1
        self.err.print(f"[red]line {bad.line}:[/red] {bad.error}", highlight=False, markup=True)
        self.write(bad_row_line(self.kind, bad))
        self.advance()


def targets_from(
    rows: Iterator[Row | BadRow],
    reporter: Reporter,
    finished: set[tuple[str, str | None, str | None, str | None]],
) -> Iterator[Target]:
    """
    The targets to send: bad rows are reported here, finished ones skipped.
    """
    for row in rows:
        if isinstance(row, BadRow):
            reporter.bad_row(row)
        elif finished and report_key(target_fields(row.target)) in finished:
            reporter.skip()
        else:
            yield row.target


@contextlib.asynccontextmanager
async def progress_display(
    tally: Tally, options: Options, err: Console, reporter: Reporter
) -> AsyncIterator[None]:
    """
    A live bar on a terminal, plain periodic lines elsewhere, nothing with --quiet.
    """
    if options.quiet:
        yield
        return
    if err.is_terminal:
        progress = Progress(
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
        task: TaskID = progress.add_task(
            "stopping", total=tally.rows, rate=0.0, counts=tally.counts_text()
        )

        def advance() -> None:
            progress.update(task, advance=1, rate=tally.rate(), counts=tally.counts_text())

        reporter.advance = advance
        with progress:
            yield
        return

    async def plain_lines() -> None:
        while True:
            await asyncio.sleep(PLAIN_PROGRESS_EVERY)
            out_of = f"/{tally.rows}" if tally.rows is not None else ""
            err.print(
                f"progress: {tally.accounted}{out_of} done ({tally.counts_text()}), "
                f"{tally.rate():.1f}/s",
                highlight=False,
            )

    ticker = asyncio.create_task(plain_lines())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def print_summary(tally: Tally, options: Options, out: Console, err: Console) -> None:
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


async def run_batch(
    vobiz: AsyncVobiz | None,
    targets: Iterator[Target],
    tally: Tally,
    reporter: Reporter,
    options: Options,
    err: Console,
) -> None:
    """
    Send every target (or, with --dry-run, only validate and count them).
    """
    if vobiz is None:  # --dry-run: read and validate everything, send nothing
        for _ in targets:
            tally.planned += 1
        return
    work = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        tally.interrupted = True
        assert work is not None
        work.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        async with progress_display(tally, options, err, reporter):
            async for _ in vobiz.iter_stop_many(
                targets,
                concurrency=options.concurrency,
                rate_limit=options.rate,
                on_result=reporter.result,
            ):
                pass
    except asyncio.CancelledError:
        if not tally.interrupted:
            raise
        work.uncancel()  # type: ignore[union-attr]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def exit_status(tally: Tally) -> int:
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed or tally.bad_rows else EXIT_OK


def count_rows(kind: Kind, source: TextIO) -> int | None:
    """
    Rows in a seekable file, read once up front so the bar can show done/total.
    """
    if source is sys.stdin or not source.seekable():
        return None
    total = sum(1 for _ in read_rows(kind, source))
    source.seek(0)
    return total


async def execute(
    kind: Kind,
    rows: Iterator[Row | BadRow],
    total: int | None,
    options: Options,
    make_client: Callable[[], AsyncVobiz] | None,
) -> int:
    out, err = Console(), Console(stderr=True)
    finished = load_resume(options.resume, err) if options.resume else set()
    tally = Tally(rows=total)
    report: IO[str] | None = None
    if options.report is not None:
        same = options.resume is not None and options.report.resolve() == options.resume.resolve()
        # Resuming into the same report appends to it, so it stays the whole record.
        report = options.report.open("a" if same else "w", encoding="utf-8")
    try:
        reporter = Reporter(kind, tally, report, err)
        targets = targets_from(rows, reporter, finished)
        if options.dry_run or make_client is None:
            await run_batch(None, targets, tally, reporter, options, err)
        else:
            async with make_client() as vobiz:
                await run_batch(vobiz, targets, tally, reporter, options, err)
    finally:
        if report is not None:
            report.close()
    print_summary(tally, options, out, err)
    return EXIT_OK if options.dry_run and not tally.bad_rows else exit_status(tally)


RATE = click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests per second at most, retries included.",
)
REPORT = click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON line per target as it completes.",
)
QUIET = click.option("--quiet", is_flag=True, help="No progress and no summary table.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")


def concurrency_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help="Requests in flight at once.",
    )


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        concurrency_option(50),
        RATE,
        REPORT,
        click.option(
            "--resume",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Skip targets an earlier report shows as stopped or not found.",
        ),
        click.option("--dry-run", is_flag=True, help="Validate and count; send nothing."),
        click.option(
            "--base-url",
            default=None,
            help="API base URL [default: $VOBIZ_BASE_URL or the production API].",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Seconds per attempt.",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(min=1),
            default=5,
            show_default=True,
            help="Attempts per target; 1 turns retries off.",
        ),
        QUIET,
        JSON,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def build_options(values: dict[str, Any]) -> Options:
    return Options(
        concurrency=values["concurrency"],
        rate=values["rate"],
        report=values["report"],
        resume=values["resume"],
        dry_run=values["dry_run"],
        base_url=values["base_url"],
        timeout=values["timeout"],
        max_attempts=values["max_attempts"],
        quiet=values["quiet"],
        json=values["as_json"],
    )


def run_file_command(kind: Kind, source: TextIO, values: dict[str, Any]) -> None:
    options = build_options(values)
    make_client: Callable[[], AsyncVobiz] | None = None
    if not options.dry_run:
        try:
            # Built once here so missing credentials fail before any file is read.
            client = AsyncVobiz(
                base_url=options.base_url,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=options.max_attempts),
            )
        except (ConfigurationError, InvalidTargetError) as exc:
            raise click.UsageError(str(exc)) from None
        make_client = lambda: client  # noqa: E731
    try:
        total = count_rows(kind, source)
        status = asyncio.run(execute(kind, read_rows(kind, source), total, options, make_client))
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vobiz-async")
def cli() -> None:
    """
    Stop Vobiz streams and recordings in bulk, from a CSV or JSON Lines file.

    Credentials come from VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN only, never from an
    option, so they stay out of shell history. FILE may be - for standard input.
    """


@cli.command("stop-streams")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@common_options
def stop_streams(file: TextIO, **values: Any) -> None:
    """
    Stop one stream per row: columns call_uuid,stream_id.
    """
    run_file_command("stream", file, values)


@cli.command("stop-all-streams")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@common_options
def stop_all_streams(file: TextIO, **values: Any) -> None:
    """
    Stop every stream on each call: column call_uuid.
    """
    run_file_command("all_streams", file, values)


@cli.command("stop-recordings")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@common_options
def stop_recordings(file: TextIO, **values: Any) -> None:
    """
    Stop recordings per row: call_uuid, and url to stop only that one.
    """
    run_file_command("recording", file, values)


@cli.command()
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Streams to tear down (plus one recording stop per ten calls).",
)
@concurrency_option(100)
@RATE
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.02,
    show_default=True,
    help="Seconds the fake Vobiz takes per answer.",
)
@REPORT
@QUIET
@JSON
def demo(
    count: int,
    concurrency: int,
    rate: float | None,
    latency: float,
    report: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """
    The whole job against a built-in fake Vobiz on loopback: no credentials, no network.

    The fake answers with a realistic latency and a few injected faults (503s,
    429s with Retry-After, dropped connections), and afterwards says, from its
    own counters, whether any target was stopped twice.
    """
    options = Options(
        concurrency=concurrency,
        rate=rate,
        report=report,
        resume=None,
        dry_run=False,
        base_url=None,
        timeout=5.0,
        max_attempts=8,
        quiet=quiet,
        json=as_json,
    )
    sys.exit(asyncio.run(run_demo(count, latency, options)))


async def run_demo(count: int, latency: float, options: Options) -> int:
    from .testing import FakeVobiz, Faults

    fake = FakeVobiz(
        open_world=True,
        seed=2026,
        record_requests=False,
        faults=Faults(
            latency=latency,
            error_503=0.02,
            # Each 429 pauses the whole batch for its Retry-After, as an account
            # limit should: a handful shows that without stalling the demo.
            rate_limit_429=0.003,
            retry_after=0.1,
            drop_before=0.005,
            drop_after=0.005,
        ),
    )
    rows: list[Row | BadRow] = [
        Row(i + 1, Stream(f"demo-call-{i:05d}", f"stream-{i:05d}")) for i in range(count)
    ]
    rows += [Row(count + i + 1, Recording(f"demo-call-{i:05d}")) for i in range(0, count, 10)]
    err = Console(stderr=True)
    async with fake.serve() as base_url:
        if not options.quiet:
            err.print(
                f"fake Vobiz on {base_url}: {latency * 1000:.0f} ms latency, "
                "2% 503, 0.3% 429, 1% dropped connections",
                highlight=False,
            )
        status = await execute(
            "stream",
            iter(rows),
            len(rows),
            options,
            lambda: AsyncVobiz(
                fake.auth_id,
                fake.auth_token,
                base_url=base_url,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=options.max_attempts),
            ),
        )
    twice = fake.stopped_more_than_once()
    if not options.quiet:
        err.print(
            f"fake Vobiz's own count: {len(fake.stop_counts)} targets stopped, "
            f"{len(twice)} stopped more than once, {fake.request_count} requests in all",
            highlight=False,
        )
    return EXIT_FAILED if twice else status
