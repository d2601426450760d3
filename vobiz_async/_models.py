"""
Targets to stop, and what stopping them gave.

Targets are plain frozen values that hold whatever they are given: a batch
read from a file must be able to carry a bad row as far as its result, so
validation happens in the client, just before a request would be built.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import attrs

from ._exceptions import InvalidTargetError, VobizError

__all__ = [
    "AllStreams",
    "BulkReport",
    "Outcome",
    "Recording",
    "StopResult",
    "Stream",
    "Target",
]


class Outcome(enum.StrEnum):
    """
    How one stop ended.
    """

    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@attrs.frozen
class Stream:
    """
    One audio stream on a call.
    """

    call_uuid: str
    stream_id: str

    kind: ClassVar[Literal["stream"]] = "stream"


@attrs.frozen
class AllStreams:
    """
    Every stream on a call.
    """

    call_uuid: str

    kind: ClassVar[Literal["all_streams"]] = "all_streams"


@attrs.frozen
class Recording:
    """
    One recording on a call when ``url`` is given, else every recording on it.
    """

    call_uuid: str
    url: str | None = None

    kind: ClassVar[Literal["recording"]] = "recording"


Target = Stream | AllStreams | Recording


@attrs.frozen
class StopResult:
    """
    What one stop did. ``ok`` is true for STOPPED and NOT_FOUND: both leave nothing running.
    """

    target: Target
    outcome: Outcome
    status_code: int | None = None
    attempts: int = 0
    elapsed: float = 0.0
    api_id: str | None = None
    error: VobizError | None = None

    @property
    def ok(self) -> bool:
        """
        True unless the stop failed.
        """
        return self.outcome is not Outcome.FAILED


@attrs.frozen
class BulkReport:
    """
    One StopResult per input target, in input order.
    """

    results: list[StopResult]
    counts: dict[Outcome, int] = attrs.field(init=False)

    @counts.default
    def _count(self) -> dict[Outcome, int]:
        tally = Counter(result.outcome for result in self.results)
        return {outcome: tally[outcome] for outcome in Outcome}

    @property
    def ok(self) -> bool:
        """
        True when no target failed.
        """
        return self.counts[Outcome.FAILED] == 0

    @property
    def failed(self) -> list[StopResult]:
        """
        The results that failed, in input order.
        """
        return [result for result in self.results if result.outcome is Outcome.FAILED]

    def __iter__(self) -> Iterator[StopResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


# Characters that would change which resource a path names, or need escaping
# that some proxy in between might undo.
_FORBIDDEN = frozenset("/\\?#% ")


def check_identifier(name: str, value: object) -> str:
    """
    Return ``value`` if it is safe as one path segment, else raise InvalidTargetError.
    """
    if not isinstance(value, str):
        raise InvalidTargetError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidTargetError(f"{name} must not be empty")
    if not (value.isascii() and value.isprintable()):
        raise InvalidTargetError(f"{name} must be printable ASCII: {value[:80]!r}")
    if value in (".", ".."):
        raise InvalidTargetError(f"{name} must not be {value!r}")
    if not _FORBIDDEN.isdisjoint(value):
        bad = "".join(sorted(_FORBIDDEN.intersection(value)))
        raise InvalidTargetError(f"{name} must not contain any of {bad!r}: {value[:80]!r}")
    return value


def check_recording_url(value: object) -> str:
    """
    Return ``value`` if it is a non-empty http(s) URL, else raise InvalidTargetError.
    """
    if not isinstance(value, str):
        raise InvalidTargetError(f"url must be a str, not {type(value).__name__}")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise InvalidTargetError(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidTargetError(f"url must be an http(s) URL with a host: {value[:200]!r}")
    return value


def check_target(target: object) -> Target:
    """
    Validate every field of a target before anything is sent for it.
    """
    if isinstance(target, Stream):
        check_identifier("call_uuid", target.call_uuid)
        check_identifier("stream_id", target.stream_id)
    elif isinstance(target, AllStreams):
        check_identifier("call_uuid", target.call_uuid)
    elif isinstance(target, Recording):
        check_identifier("call_uuid", target.call_uuid)
        if target.url is not None:
            check_recording_url(target.url)
    else:
        raise InvalidTargetError(
            f"expected a Stream, AllStreams or Recording, not {type(target).__name__}"
        )
    return target
