"""
The vobiz-async command: bulk teardown from what people paste, for people mid-incident.

Everything here is glue: click parses, source reads, run.execute does the
batch, display draws. Each stop command's --help is complete on its own:
what it reads, where the report goes, the environment, the exit statuses,
an example.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click

from .._client import AsyncVobiz
from .._targets import AllStreams, Recording, Stream, Target
from .config import ConfigurationProblem, client_factory
from .demo import run_demo
from .display import consoles
from .exits import ENVIRONMENT_HELP, EXIT_STATUS_HELP, CommandError, ExitStatus
from .input import columns_of
from .options import DemoOptions, Options, RetryOptions, with_options
from .report import pending_rows
from .run import execute
from .source import ARGUMENTS_HELP, input_source
from .teardown import teardown

__all__ = ["cli", "configured", "stop_from_input"]

INPUTS = click.argument("inputs", nargs=-1, metavar="FILE | - | ID...")


def stop_help(command: str, target_type: type[Target], example: str) -> str:
    """
    The part of a stop command's --help after its options: input, report, environment, exits.
    """
    columns = columns_of(target_type)
    usage = columns.usage
    json_example = ", ".join(f'"{name}": "..."' for name in columns.names)
    return "\n\n".join(
        [
            "\b\nInput, one target per line:\n"
            "  FILE  CSV or JSON Lines, told apart by content; UTF-8 (a BOM is fine).\n"
            f"        CSV: a header naming the columns ({', '.join(columns.names)}, any\n"
            f"        case), or no header: then each line is {usage}.\n"
            f"        JSON Lines: {{{json_example}}},\n"
            "        keys in any case.\n"
            "  -     the same, from standard input, read as it arrives.\n"
            f"  ID    identifiers as arguments, each one row: {usage}.",
            ARGUMENTS_HELP + " Blank lines are skipped; duplicates are sent once.",
            "Report: one JSON line per target, as it completes. An existing report "
            "is never overwritten (--resume it, or --append to it). Without --report, "
            f"a new vobiz-async-{command}-TIME.jsonl in the current directory; the "
            "summary names it, and prints the command that retries what failed.",
            ENVIRONMENT_HELP,
            EXIT_STATUS_HELP,
            f"\b\nExample:\n  {example}",
        ]
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 80})
@click.version_option(package_name="vobiz-async")
def cli() -> None:
    """
    Stop Vobiz streams and recordings in bulk: from a file, standard input or arguments.

    Credentials come from VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN only, never from an
    option, so they stay out of shell history. Each command's --help says what it
    reads, where its report goes and what its exit status means.
    """


@cli.command(
    "stop-streams",
    epilog=stop_help(
        "stop-streams",
        Stream,
        "vobiz-async stop-streams streams.csv --rate 50 --report streams.jsonl",
    ),
)
@INPUTS
@with_options(Options)
def stop_streams(options: Options, inputs: tuple[str, ...]) -> None:
    """
    Stop one stream per row: call_uuid,stream_id.
    """
    stop_from_input(Stream, inputs, options)


@cli.command(
    "stop-all-streams",
    epilog=stop_help(
        "stop-all-streams",
        AllStreams,
        "vobiz-async stop-all-streams calls.txt --rate 50 --report run1.jsonl",
    ),
)
@INPUTS
@with_options(Options)
def stop_all_streams(options: Options, inputs: tuple[str, ...]) -> None:
    """
    Stop every stream on each call: call_uuid.
    """
    stop_from_input(AllStreams, inputs, options)


@cli.command(
    "stop-recordings",
    epilog=stop_help(
        "stop-recordings",
        Recording,
        "vobiz-async stop-recordings calls.txt --rate 50 --report recordings.jsonl",
    ),
)
@INPUTS
@with_options(Options)
def stop_recordings(options: Options, inputs: tuple[str, ...]) -> None:
    """
    Stop recordings per row: call_uuid, and url to stop only that one.
    """
    stop_from_input(Recording, inputs, options)


@cli.command(
    "retry-failed",
    epilog="\n\n".join(
        [
            ENVIRONMENT_HELP,
            EXIT_STATUS_HELP,
            "\b\nExample:\n  vobiz-async retry-failed run1.jsonl --rate 20",
        ]
    ),
)
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_options(RetryOptions)
def retry_failed(options: RetryOptions, report: Path) -> None:
    """
    Send again what REPORT shows did not finish, and add the results to REPORT.

    REPORT is the report of any stop command. Each target whose latest line
    is failed, not_sent or interrupted is sent again, whatever its kind; those
    stopped or not found are left alone. Bad input rows cannot be retried from
    a report: fix them in the input, and run the stop command with --resume REPORT.
    """
    _, err = consoles()
    pending = pending_rows(report, err)
    if pending.bad_lines:
        lines = ", ".join(map(str, pending.bad_lines[:10]))
        more = "..." if len(pending.bad_lines) > 10 else ""
        err.print(
            f"{len(pending.bad_lines)} bad input rows in {report} cannot be retried "
            f"(input lines {lines}{more}): fix them in the input, then run the stop "
            f"command with --resume {report}",
            highlight=False,
        )
    if pending.unlisted:
        # A listing that failed found nothing to stop: stopping "everything on
        # the call" instead would stop streams --streams-to left alone.
        err.print(
            f"{pending.unlisted} listings in {report} never completed (the live calls, or "
            "a call's streams): what they would have found was never stopped, and only "
            f"the teardown can list it again: run the teardown command with --resume {report}",
            highlight=False,
        )
    if not pending.rows:
        if not pending.unlisted:
            click.echo(f"nothing to retry: every target in {report} is stopped or not found")
        failed = pending.bad_lines or pending.unlisted
        sys.exit(ExitStatus.FAILED if failed else ExitStatus.OK)
    stop_options = options.for_report(report)
    make_client, refused = configured(stop_options)
    sys.exit(
        asyncio.run(
            execute(
                None,
                pending.rows,
                len(pending.rows),
                stop_options,
                make_client,
                refused=refused,
            )
        )
    )


cli.add_command(teardown)


@cli.command(
    epilog="\b\nExit status:\n"
    "  0    every target stopped or found already gone, none stopped twice\n"
    "       (with --teardown: and nothing left running on the fake)\n"
    "  1    otherwise: the summary says what\n"
    "  130  interrupted (Ctrl-C)\n\n"
    "\b\nExample:\n  vobiz-async demo --teardown --count 300"
)
@with_options(DemoOptions)
def demo(options: DemoOptions) -> None:
    """
    The whole job against a built-in fake Vobiz on loopback: no credentials, no network.

    The fake answers with a realistic latency and a few injected faults (503s,
    429s with Retry-After, dropped connections), and afterwards says, from its
    own counters, whether any target was stopped twice.
    """
    sys.exit(asyncio.run(run_demo(options)))


def configured(options: Options) -> tuple[Callable[[], AsyncVobiz] | None, str | None]:
    """
    The run's client maker, and for --dry-run what the real run would refuse instead.

    A configuration problem ends a real run here, before anything is read or
    sent; a dry run reads and checks the input all the same, then says it.
    """
    try:
        make_client = client_factory(options)
    except ConfigurationProblem as exc:
        if not options.dry_run:
            raise CommandError(str(exc)) from None
        return None, str(exc)
    return (None if options.dry_run else make_client), None


def stop_from_input(
    target_type: type[Target], inputs: tuple[str, ...], options: Options
) -> NoReturn:
    """
    Run a stop command on the rows its arguments name, and exit with the batch's status.
    """
    source = input_source(inputs)
    make_client, refused = configured(options)
    sys.exit(asyncio.run(execute(target_type, source, None, options, make_client, refused=refused)))
