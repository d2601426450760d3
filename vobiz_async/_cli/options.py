"""
The commands' options, each declared once: an attrs field that is also a click option.

``with_options(Options)`` gives a command one click option per field, named
after it (``dry_run`` is ``--dry-run``), in field order, and hands the command
one typed ``Options`` instead of loose keyword arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, TypeVar

import attrs
import click

__all__ = ["SENDING", "DemoOptions", "Options", "RetryOptions", "TeardownOptions", "with_options"]

# Field metadata key: the keyword arguments of the field's click.option, but its default.
CLICK = "vobiz_cli_option"


def click_option(*, help: str, **settings: Any) -> dict[str, Any]:
    """
    Field metadata that makes the field a click option too; its default is the field's.
    """
    return {CLICK: {"help": help, **settings}}


# Shared by the stop commands and the demo (whose --concurrency default is higher).
CONCURRENCY = click_option(
    type=click.IntRange(min=1), show_default=True, help="Requests in flight at once."
)


def _a_number(_: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets NaN through: no comparison with it is ever false.
    if value is not None and math.isnan(value):
        raise click.BadParameter("must be a number (inf for no limit)", param=param)
    return value


RATE = click_option(
    type=click.FloatRange(min=0, min_open=True),
    callback=_a_number,
    help="Requests per second at most, retries included (inf: no limit).",
)
REPORT = click_option(
    type=click.Path(dir_okay=False, path_type=Path),
    help="One JSON line per target as it completes [default: a new "
    "vobiz-async-COMMAND-TIME.jsonl here]. Never overwritten.",
)
DRY_RUN = click_option(
    is_flag=True,
    help="Read and check everything (input, credentials, base URL, report); send nothing.",
)
BASE_URL = click_option(help="API base URL [default: $VOBIZ_BASE_URL or the production API].")
TIMEOUT = click_option(
    type=click.FloatRange(min=0, min_open=True), show_default=True, help="Seconds per attempt."
)
MAX_ATTEMPTS = click_option(
    type=click.IntRange(min=1),
    show_default=True,
    help="Attempts per target; 1 turns retries off.",
)
PROXY = click_option(
    metavar="URL",
    help="HTTP proxy for every request [default: $HTTPS_PROXY or $ALL_PROXY, "
    "unless $NO_PROXY names the host]. A password is better kept in the variable.",
)
CA_BUNDLE = click_option(
    type=click.Path(exists=True, path_type=Path),
    help="CA certificates (PEM file or hashed directory) to trust instead "
    "[default: $SSL_CERT_FILE, $SSL_CERT_DIR or certifi's].",
)
QUIET = click_option(is_flag=True, help="No progress and no summary table.")
JSON = click_option(is_flag=True, help="Print the summary as JSON on stdout.")


@attrs.frozen
class Options:
    """
    The options of the stop commands, in --help order.
    """

    concurrency: int = attrs.field(default=50, metadata=CONCURRENCY)
    rate: float | None = attrs.field(default=None, metadata=RATE)
    report: Path | None = attrs.field(default=None, metadata=REPORT)
    resume: Path | None = attrs.field(
        default=None,
        metadata=click_option(
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Skip targets this earlier report shows as stopped or not found, and add "
            "this run's lines to it (unless --report names another).",
        ),
    )
    append: bool = attrs.field(
        default=False,
        metadata=click_option(
            is_flag=True, help="Add to an existing --report rather than refuse it."
        ),
    )
    dry_run: bool = attrs.field(default=False, metadata=DRY_RUN)
    base_url: str | None = attrs.field(default=None, metadata=BASE_URL)
    timeout: float = attrs.field(default=10.0, metadata=TIMEOUT)
    max_attempts: int = attrs.field(default=5, metadata=MAX_ATTEMPTS)
    proxy: str | None = attrs.field(default=None, metadata=PROXY)
    ca_bundle: Path | None = attrs.field(default=None, metadata=CA_BUNDLE)
    quiet: bool = attrs.field(default=False, metadata=QUIET)
    json: bool = attrs.field(default=False, metadata=JSON)


#: The options that say how to send, which a printed retry command repeats.
SENDING = ("concurrency", "rate", "base_url", "timeout", "max_attempts", "proxy", "ca_bundle")


@attrs.frozen
class RetryOptions:
    """
    The options of retry-failed, in --help order: those of a stop command that apply.
    """

    concurrency: int = attrs.field(default=50, metadata=CONCURRENCY)
    rate: float | None = attrs.field(default=None, metadata=RATE)
    dry_run: bool = attrs.field(default=False, metadata=DRY_RUN)
    base_url: str | None = attrs.field(default=None, metadata=BASE_URL)
    timeout: float = attrs.field(default=10.0, metadata=TIMEOUT)
    max_attempts: int = attrs.field(default=5, metadata=MAX_ATTEMPTS)
    proxy: str | None = attrs.field(default=None, metadata=PROXY)
    ca_bundle: Path | None = attrs.field(default=None, metadata=CA_BUNDLE)
    quiet: bool = attrs.field(default=False, metadata=QUIET)
    json: bool = attrs.field(default=False, metadata=JSON)

    def for_report(self, report: Path) -> Options:
        """
        The stop options of a run that adds its lines to ``report``.
        """
        return Options(
            **{field.name: getattr(self, field.name) for field in attrs.fields(RetryOptions)},
            report=report,
            append=True,
        )


@attrs.frozen
class DemoOptions:
    """
    The options of the demo command, in --help order.
    """

    count: int = attrs.field(
        default=3000,
        metadata=click_option(
            type=click.IntRange(min=1),
            show_default=True,
            help="Streams to tear down (plus one recording stop per ten calls); "
            "with --teardown, live calls (one to three streams and a recording each).",
        ),
    )
    concurrency: int = attrs.field(default=100, metadata=CONCURRENCY)
    rate: float | None = attrs.field(default=None, metadata=RATE)
    latency: float = attrs.field(
        default=0.02,
        metadata=click_option(
            type=click.FloatRange(min=0),
            show_default=True,
            help="Seconds the fake Vobiz takes per answer.",
        ),
    )
    report: Path | None = attrs.field(
        default=None,
        metadata=click_option(
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write one JSON line per target as it completes (never overwritten).",
        ),
    )
    quiet: bool = attrs.field(default=False, metadata=QUIET)
    json: bool = attrs.field(default=False, metadata=JSON)
    teardown: bool = attrs.field(
        default=False,
        metadata=click_option(
            is_flag=True,
            help="Seed the fake with live calls and run `teardown --live` against it instead.",
        ),
    )


def _a_prefix(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must be a URL prefix, such as wss://bot-3.example.com/")
    return value


@attrs.frozen
class TeardownOptions(Options):
    """
    The options of the teardown command: the stop commands', and what to tear down.
    """

    live: bool = attrs.field(
        default=False,
        metadata=click_option(
            is_flag=True, help="Every live call on the account (GET Call/?status=live)."
        ),
    )
    streams_to: str | None = attrs.field(
        default=None,
        metadata=click_option(
            metavar="URL_PREFIX",
            callback=_a_prefix,
            help="List each call's streams; stop only the running ones whose service_url "
            "starts with this. Default: every stream, one request per call.",
        ),
    )
    no_recordings: bool = attrs.field(
        default=False,
        metadata=click_option(is_flag=True, help="Leave recordings alone."),
    )
    dry_run: bool = attrs.field(
        default=False,
        metadata=click_option(
            is_flag=True,
            help="Print the plan: list what would stop (GETs only) and send no DELETE.",
        ),
    )


AnyOptions = TypeVar("AnyOptions", Options, RetryOptions, DemoOptions, TeardownOptions)


def with_options(
    cls: type[AnyOptions],
) -> Callable[[Callable[Concatenate[AnyOptions, ...], None]], Callable[..., None]]:
    """
    Decorator: a click option per field of ``cls``, and the command given one ``cls``.

    The command's other parameters (its FILE argument) are passed on by name.
    """
    fields = attrs.fields(cls)

    def decorate(command: Callable[Concatenate[AnyOptions, ...], None]) -> Callable[..., None]:
        @functools.wraps(command)
        def parse_options(**params: Any) -> None:
            options = cls(**{field.name: params.pop(field.name) for field in fields})
            command(options, **params)

        decorated: Callable[..., None] = parse_options
        for field in reversed(fields):
            flag = "--" + field.name.replace("_", "-")
            settings = {"default": field.default, **field.metadata[CLICK]}
            decorated = click.option(flag, field.name, **settings)(decorated)
        return decorated

    return decorate
