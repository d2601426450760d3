"""
The teardown command: find what runs (the live calls, the streams on each) and stop it.

Glue over ``AsyncVobiz.iter_teardown``: the calls come from ``--live`` or from
files and arguments; the report, --resume, progress, summary and exit status
are the stop commands' own, plus one report line per call listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
from rich.console import Console

from .._checks import check_identifier
from .._client import AsyncVobiz
from .._discovery import ListStreams, StreamListing
from .._exceptions import InvalidTargetError, VobizError
from .._models import Outcome, StopResult
from .._targets import AllStreams, Recording, Stream, Target
from .config import ConfigurationProblem, client_factory
from .display import consoles, print_summary, progress_display
from .exits import ENVIRONMENT_HELP, EXIT_STATUS_HELP, CommandError
from .input import BadRow, InputError, decoded_lines, read_rows
from .nextstep import NextStep, next_step, sending_arguments
from .options import TeardownOptions, with_options
from .report import (
    Reporter,
    ReportPlan,
    load_resume,
    open_report,
    plan_report,
    report_key,
    target_fields,
)
from .run import EXIT_FAILED, EXIT_OK, exit_status, halt_on, interrupted_by_signals
from .source import ThreadedReader, read_chunks, split_lines
from .tally import InputState, RunEnd, Tally

__all__ = ["TeardownTally", "run_teardown", "teardown"]

#: An argument with one of these names a file, never a call: Vobiz call UUIDs have
#: none, and a file name with a typo must not become a call UUID.
FILE_MARKS = frozenset("./\\")
#: Targets of each kind the dry run shows as examples.
EXAMPLES = 3
#: What a file of calls must hold: the call_uuid column, as for stop-all-streams.
CALL_ROWS = AllStreams


@attrs.define
class TeardownTally(Tally):
    """
    The stop commands' tally, and what was listed: calls, streams, matches.
    """

    calls: int = 0
    streams_listed: int = 0
    streams_matched: int = 0
    #: Calls whose streams could not be listed (FAILED), or had ended (NOT_FOUND).
    listing_failed: int = 0
    listing_ended: int = 0
    #: --dry-run: the targets that would be sent, by kind, and a few of each.
    by_kind: Counter[str] = attrs.Factory(Counter)
    examples: dict[str, list[str]] = attrs.Factory(dict)
    #: Whether each call's streams were listed (--streams-to), not stopped all at once.
    listing: bool = False
    #: The live-call list failed part way: the calls after it were never found.
    live_list_failed: bool = False

    @property
    def unlisted(self) -> bool:
        """
        True when a listing failed: only the teardown, run again, can finish the job.
        """
        return self.live_list_failed or self.listing_failed > 0

    def as_json(self) -> dict[str, Any]:
        """
        The summary --json prints: the stop commands' keys, and what was listed.
        """
        return {**super().as_json(), **self.listed_json()}

    def listed_json(self) -> dict[str, Any]:
        """
        What was listed, as JSON: the stream counts are null when no stream was listed.
        """
        listing = self.listing
        return {
            "calls": self.calls,
            "streams_listed": self.streams_listed if listing else None,
            "streams_matched": self.streams_matched if listing else None,
            "listing_failed": self.listing_failed if listing else None,
            "listing_ended": self.listing_ended if listing else None,
        }


class Census:
    """
    The hooks of one teardown run: they count, report and (for --resume, --dry-run) skip.
    """

    def __init__(
        self,
        options: TeardownOptions,
        tally: TeardownTally,
        reporter: Reporter,
        finished: set[tuple[object, ...]],
    ) -> None:
        self.options = options
        self.tally = tally
        self.reporter = reporter
        self.finished = finished
        #: The client's base URL, for what a connection brake says.
        self.base_url = ""
        # service_url of the first matched streams, for the dry run's examples.
        self._urls: dict[Target, str] = {}

    def skip(self, target: Target) -> bool:
        """
        Asked about each target before it is sent: True leaves it unsent.
        """
        tally = self.tally
        if isinstance(target, AllStreams):
            tally.calls += 1  # one per call, when all its streams go with one request
        if self.finished and report_key(target_fields(target)) in self.finished:
            self.reporter.skip()
            return True
        if not self.options.dry_run:
            return False
        tally.planned += 1
        tally.by_kind[target.kind] += 1
        examples = tally.examples.setdefault(target.kind, [])
        if len(examples) < EXAMPLES:
            url = self._urls.get(target)
            examples.append(target.describe() + (f" -> {url}" if url else ""))
        return True

    def listed(self, listing: StreamListing) -> None:
        """
        A call's streams were listed (--streams-to): counted, and one report line.
        """
        tally = self.tally
        tally.calls += 1
        tally.streams_listed += len(listing.streams)
        tally.streams_matched += len(listing.matched)
        if len(self._urls) < EXAMPLES:
            for info in listing.matched[:EXAMPLES]:
                self._urls[Stream(listing.call_uuid, info.stream_id)] = info.service_url or ""
        matched = {info.stream_id for info in listing.matched}
        self.reporter.write(
            {
                **target_fields(AllStreams(listing.call_uuid)),
                "kind": "list_streams",
                "outcome": "listed",
                "status_code": 200,
                "attempts": None,
                "elapsed": None,
                "error": None,
                "listed": len(listing.streams),
                "matched": len(listing.matched),
                "streams": [
                    {
                        "stream_id": info.stream_id,
                        "service_url": info.service_url,
                        "status": info.status,
                        "matched": info.stream_id in matched,
                    }
                    for info in listing.streams
                ],
            }
        )

    def result(self, result: StopResult) -> None:
        """
        A result: a stop's, or a call's whose streams could not be listed.
        """
        if self.options.streams_to is not None and isinstance(result.target, AllStreams):
            # With --streams-to no AllStreams is ever sent: this is a listing that
            # failed, and it is reported as one. As a failed all_streams stop,
            # retry-failed would stop every stream on the call, matching or not.
            self.tally.calls += 1
            if result.outcome is Outcome.NOT_FOUND:
                self.tally.listing_ended += 1
            else:
                self.tally.listing_failed += 1
            self.reporter.result(result, kind=ListStreams.kind)
        else:
            self.reporter.result(result)
        halt_on(result.error, self.tally, base_url=self.base_url, err=self.reporter.err)


# -- where the calls come from ---------------------------------------------------------


@attrs.frozen
class CallFile:
    """
    A CSV or JSON Lines file with a call_uuid column; None is standard input.
    """

    path: Path | None


def call_inputs(arguments: tuple[str, ...], *, live: bool) -> list[CallFile | str] | None:
    """
    What the arguments name, in order: files, - (standard input) and call UUIDs; None for --live.
    """
    if live:
        if arguments:
            raise click.UsageError(
                "--live tears down every live call: give it no FILE or call UUID as well"
            )
        return None
    if not arguments:
        raise click.UsageError(
            "give call UUIDs, a FILE of them (or - for standard input), or --live"
        )
    inputs: list[CallFile | str] = []
    for argument in arguments:
        path = Path(argument)
        if argument == "-":
            inputs.append(CallFile(None))
        elif path.is_file():
            inputs.append(CallFile(path))
        elif not FILE_MARKS.isdisjoint(argument):
            raise click.UsageError(f"no such file: {argument}")
        else:
            try:
                inputs.append(check_identifier("call UUID", argument))
            except InvalidTargetError as exc:
                raise click.UsageError(
                    f"{argument!r} is neither a file nor a call UUID: {exc}"
                ) from None
    return inputs


@contextlib.contextmanager
def read_calls(
    inputs: list[CallFile | str], reporter: Reporter, tally: Tally
) -> Iterator[AsyncIterator[str]]:
    """
    The call UUIDs of ``inputs``, read in a thread as they come; files open until the block ends.

    Reading never blocks the event loop: a pipe fed slowly holds back only
    the calls not yet written, never the requests in flight. A line that is
    not UTF-8, or a file with no call_uuid column, ends the input there, as
    the stop commands' inputs do: what came before it is torn down and
    reported, then the run exits 2.
    """
    with contextlib.ExitStack() as files:
        sources: list[str | tuple[int, str]] = []
        for item in inputs:
            if isinstance(item, str):
                sources.append(item)
            elif item.path is None:
                sources.append((sys.stdin.fileno(), "standard input"))
            else:
                try:
                    opened = files.enter_context(item.path.open("rb"))
                except OSError as exc:
                    raise click.UsageError(f"cannot read {item.path}: {exc.strerror}") from None
                sources.append((opened.fileno(), str(item.path)))

        def produce(hand_over: Callable[[], None]) -> Iterator[str | BadRow]:
            for source in sources:
                if isinstance(source, str):
                    yield source
                    continue
                fd, name = source
                lines = decoded_lines(split_lines(read_chunks(fd, hand_over)), name)
                for row in read_rows(CALL_ROWS, lines):
                    yield row if isinstance(row, BadRow) else row.target.call_uuid

        yield _calls_of(ThreadedReader(produce), reporter, tally)


async def _calls_of(
    reader: ThreadedReader[str | BadRow], reporter: Reporter, tally: Tally
) -> AsyncIterator[str]:
    seen: set[str] = set()  # as the stop commands: a call pasted twice is torn down once
    try:
        async for item in reader.items():
            if tally.halt is not None:
                return  # a 401 or a brake: the rest would fail unsent
            tally.read += 1
            if isinstance(item, BadRow):
                reporter.bad_row(item)
            elif item in seen:
                reporter.duplicate()
            else:
                seen.add(item)
                yield item
    except InputError as exc:
        # The input broke off: what came before it is torn down and reported.
        tally.input_error = str(exc)
        tally.end = RunEnd.INPUT_ERROR


# -- the command ------------------------------------------------------------------------


TEARDOWN_HELP = "\n\n".join(
    [
        "\b\nCalls:\n"
        "  --live  every live call on the account, read a page at a time.\n"
        "  FILE    CSV with a call_uuid column (any case), or one call UUID per\n"
        '          line with no header; or JSON Lines, {"call_uuid": "..."}.\n'
        "          UTF-8 (a BOM is fine). Duplicates are torn down once.\n"
        "  -       the same, from standard input, read as it arrives.\n"
        "  ID      call UUIDs as arguments.",
        "Report: one JSON line per stop, and one per call listed. An existing "
        "report is never overwritten (--resume it, or --append to it). Without "
        "--report, a new vobiz-async-teardown-TIME.jsonl in the current directory; "
        "the summary names it and prints the command that finishes the job (the "
        "teardown again with --resume when a listing failed).",
        ENVIRONMENT_HELP,
        EXIT_STATUS_HELP,
        "\b\nExamples:\n"
        "  vobiz-async teardown --live --dry-run\n"
        "  vobiz-async teardown --live --streams-to wss://bot-3.example.com/ \\\n"
        "      --no-recordings --report incident-42.jsonl",
    ]
)


@click.command("teardown", epilog=TEARDOWN_HELP)
@click.argument("calls", nargs=-1, metavar="[FILE | - | CALL_UUID]...")
@with_options(TeardownOptions)
def teardown(options: TeardownOptions, calls: tuple[str, ...]) -> NoReturn:
    """
    Stop every stream and recording on each call: the live ones, or those given.

    With --live, the calls are every live call on the account. Otherwise they
    are the call UUIDs given as arguments, or read from FILE (CSV with a
    call_uuid column, or JSON Lines; - for standard input). Each call's
    streams stop with one request, or, with --streams-to, only its running
    streams that go to that URL prefix (its streams are listed first); then
    its recordings stop, unless --no-recordings. Run --dry-run first: it
    lists what would stop and stops nothing.
    """
    inputs = call_inputs(calls, live=options.live)
    try:
        # Checked now, dry run included (what the real run would refuse, it
        # says), so that missing credentials fail before any file is read.
        make_client: Callable[[], AsyncVobiz] | None = client_factory(options)
    except ConfigurationProblem as exc:
        raise CommandError(str(exc)) from None
    # A dry run on calls given, with every stream going, needs no listing: it sends nothing.
    if options.dry_run and inputs is not None and options.streams_to is None:
        make_client = None
    sys.exit(asyncio.run(run_teardown(inputs, options, make_client)))


async def run_teardown(
    inputs: list[CallFile | str] | None,
    options: TeardownOptions,
    make_client: Callable[[], AsyncVobiz] | None,
) -> int:
    """
    Run one teardown (or its plan) and print its summary; return the exit status.

    ``inputs`` None means every live call. Without ``make_client`` the plan is
    made without the API (calls given, every stream going).
    """
    out, err = consoles()
    finished = load_resume(options.resume, err) if options.resume else set()
    tally = TeardownTally(listing=options.streams_to is not None)
    # Never truncated; kept by every real run (a new file when --report names none);
    # never one of the input files.
    files: list[Path | None] = [
        item.path for item in inputs or [] if isinstance(item, CallFile) and item.path
    ]
    for input_path in files or [None]:
        plan = plan_report(
            report=options.report,
            resume=options.resume,
            append=options.append,
            command="teardown",
            input_path=input_path,
        )
    with open_report(plan, dry_run=options.dry_run) as report:
        if plan.chosen and report is not None and not options.quiet:
            err.print(f"report: {plan.name}", highlight=False)
        reporter = Reporter(CALL_ROWS.kind, tally, report, err)
        census = Census(options, tally, reporter, finished)
        with contextlib.ExitStack() as stack:
            calls: AsyncIterator[str] | None = None
            if inputs is not None:
                calls = stack.enter_context(read_calls(inputs, reporter, tally))
            if make_client is None:
                assert calls is not None
                async for call in calls:
                    census.skip(AllStreams(call))
                    if not options.no_recordings:
                        census.skip(Recording(call))
                if tally.input_error is None:
                    tally.input = InputState.COMPLETE
            else:
                await _run(calls, options, make_client, census, err)
    if (
        inputs is not None
        and tally.read == 0
        and tally.input is InputState.COMPLETE
        and tally.input_error is None
    ):
        raise CommandError("no calls in the input: it is empty, or holds only a header")
    if options.dry_run:
        print_plan(tally, options, out, err)
        return EXIT_OK if not (tally.failed or tally.bad_rows) else EXIT_FAILED
    kept = plan if plan.path.exists() else None
    if (tally.unlisted or tally.halt is not None) and kept is not None:
        # Calls never read or listed: only the teardown itself finds them again.
        step: NextStep | None = teardown_again(inputs, options, kept, tally)
    else:
        step = next_step(tally, command="teardown", source=None, options=options, report=kept)
    report_name = kept.name if kept is not None else None
    print_summary(tally, options, out, err, report=report_name, next_step=step)
    if not options.quiet:
        (err if options.json else out).print(_listed_text(tally, options), highlight=False)
    return exit_status(tally)


async def _run(
    calls: AsyncIterator[str] | None,
    options: TeardownOptions,
    make_client: Callable[[], AsyncVobiz],
    census: Census,
    err: Console,
) -> None:
    tally = census.tally
    async with (
        make_client() as vobiz,
        interrupted_by_signals(tally),
        progress_display(
            tally, err, quiet=options.quiet or options.dry_run, attempt_timeout=options.timeout
        ),
    ):
        census.base_url = vobiz.base_url
        results = vobiz.iter_teardown(
            calls,
            streams_to=options.streams_to,
            recordings=not options.no_recordings,
            concurrency=options.concurrency,
            rate_limit=options.rate,
            on_result=census.result,
            on_listing=census.listed,
            skip=census.skip,
        )
        try:
            async with results:
                async for _ in results:
                    pass
            tally.input = InputState.COMPLETE
        except VobizError as exc:
            # The live-call list could not be read: everything found before it was stopped.
            tally.failed += 1
            tally.live_list_failed = True
            census.reporter.write(
                {
                    **target_fields(AllStreams("")),
                    "kind": "list_live_calls",
                    "call_uuid": None,
                    "outcome": Outcome.FAILED.value,
                    "status_code": getattr(exc, "status_code", None),
                    "attempts": exc.attempts,
                    "elapsed": 0.0,
                    "error": str(exc),
                }
            )
            err.print(f"[red]could not list the live calls:[/red] {exc}", highlight=False)
            halt_on(exc, tally, base_url=census.base_url, err=err)


def teardown_again(
    inputs: list[CallFile | str] | None,
    options: TeardownOptions,
    report: ReportPlan,
    tally: TeardownTally,
) -> NextStep:
    """
    The next step when a listing failed: the same teardown with --resume, which lists again.

    Never retry-failed: a listing that failed found nothing to stop, and
    stopping "every stream on the call" instead would stop the streams
    --streams-to left alone.
    """
    fix_first = "once that is fixed, " if tally.halt is not None else ""
    why = f"{fix_first}to list again what could not be listed and stop what it finds"
    what: list[str] = ["--live"] if inputs is None else []
    for item in inputs or []:
        if isinstance(item, str):
            what.append(item)
        else:
            what.append("-" if item.path is None else str(item.path))
    selection = [] if options.streams_to is None else ["--streams-to", options.streams_to]
    if options.no_recordings:
        selection.append("--no-recordings")
    argv = ("teardown", *what, *selection, *sending_arguments(options), "--resume", report.name)
    why += " (what the report shows done is skipped)"
    if "-" in what:
        shown = "<the same input> | vobiz-async " + shlex.join(argv)
        return NextStep(why + ", fed the same input again", None, shown)
    return NextStep(why, argv)


def _listed_text(tally: TeardownTally, options: TeardownOptions) -> str:
    live = "live " if options.live else ""
    calls = f"{tally.calls} {live}call{'' if tally.calls == 1 else 's'}"
    recordings = "every recording" if not options.no_recordings else "recordings left alone"
    if options.streams_to is None:
        return f"{calls}: every stream, {recordings}"
    text = (
        f"{calls}: {tally.streams_listed} streams listed, {tally.streams_matched} running "
        f"to {options.streams_to}; {recordings}"
    )
    if tally.listing_failed or tally.listing_ended:
        text += (
            f"; {tally.listing_failed} could not be listed (see the report), "
            f"{tally.listing_ended} had ended"
        )
    return text


def print_plan(tally: TeardownTally, options: TeardownOptions, out: Console, err: Console) -> None:
    """
    The dry run's plan: what was listed, what would be sent, a few examples.
    """
    data = {
        "dry_run": True,
        **tally.listed_json(),
        "would_send": tally.planned,
        "by_kind": dict(tally.by_kind),
        "bad_rows": tally.bad_rows,
        "duplicates": tally.duplicates,
        "skipped": tally.skipped,
        "examples": tally.examples,
    }
    if options.json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    if options.quiet:
        return
    console = err if options.json else out
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.by_kind.items())) or "none"
    lines = [
        "dry run: nothing was stopped (no DELETE sent)",
        f"  {_listed_text(tally, options)}",
        f"  would send {tally.planned} stop requests ({kinds})",
    ]
    if tally.duplicates:
        lines.append(f"  {tally.duplicates} duplicate calls skipped: each is torn down once")
    if tally.skipped:
        lines.append(f"  {tally.skipped} skipped: done per --resume")
    if tally.bad_rows:
        lines.append(f"  {tally.bad_rows} bad input rows")
    if tally.examples:
        lines.append("  for example:")
        # The streams first: with --streams-to they are what the plan is about.
        for kind in sorted(tally.examples, key=lambda kind: kind != "stream"):
            lines += [f"    {example}" for example in tally.examples[kind]]
    console.print("\n".join(lines), highlight=False, markup=False)
