"""
The vobiz-async command: bulk teardown from a file, for people mid-incident.

Everything here is glue: click parses, rich draws, stop_many does the work.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

import click

from .._client import AsyncVobiz
from .._exceptions import ConfigurationError, InvalidTargetError
from .._retry import RetryPolicy
from .._targets import AllStreams, Recording, Stream, Target
from .demo import run_demo
from .input import InputError, count_rows, read_rows
from .options import DemoOptions, Options, with_options
from .run import execute
from .teardown import teardown

__all__ = ["cli"]

FILE = click.argument("file", type=click.File("r", encoding="utf-8"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vobiz-async")
def cli() -> None:
    """
    Stop Vobiz streams and recordings in bulk, from a CSV or JSON Lines file.

    Credentials come from VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN only, never from an
    option, so they stay out of shell history. FILE may be - for standard input.
    """


@cli.command("stop-streams")
@FILE
@with_options(Options)
def stop_streams(options: Options, file: TextIO) -> None:
    """
    Stop one stream per row: columns call_uuid,stream_id.
    """
    stop_from_file(Stream, file, options)


@cli.command("stop-all-streams")
@FILE
@with_options(Options)
def stop_all_streams(options: Options, file: TextIO) -> None:
    """
    Stop every stream on each call: column call_uuid.
    """
    stop_from_file(AllStreams, file, options)


@cli.command("stop-recordings")
@FILE
@with_options(Options)
def stop_recordings(options: Options, file: TextIO) -> None:
    """
    Stop recordings per row: call_uuid, and url to stop only that one.
    """
    stop_from_file(Recording, file, options)


cli.add_command(teardown)


@cli.command()
@with_options(DemoOptions)
def demo(options: DemoOptions) -> None:
    """
    The whole job against a built-in fake Vobiz on loopback: no credentials, no network.

    The fake answers with a realistic latency and a few injected faults (503s,
    429s with Retry-After, dropped connections), and afterwards says, from its
    own counters, whether any target was stopped twice.
    """
    sys.exit(asyncio.run(run_demo(options)))


def stop_from_file(target_type: type[Target], source: TextIO, options: Options) -> NoReturn:
    """
    Run a stop command on the rows of ``source`` and exit with the batch's status.
    """
    make_client: Callable[[], AsyncVobiz] | None = None
    if not options.dry_run:
        try:
            # Built once here so missing credentials fail before any file is read.
            client = AsyncVobiz(
                base_url=options.base_url,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=options.max_attempts),
                proxy=options.proxy,
                verify=options.ca_bundle if options.ca_bundle is not None else True,
            )
        except (ConfigurationError, InvalidTargetError) as exc:
            raise click.UsageError(str(exc)) from None
        make_client = lambda: client  # noqa: E731
    try:
        total = count_rows(target_type, source)
        status = asyncio.run(
            execute(target_type, read_rows(target_type, source), total, options, make_client)
        )
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(status)
