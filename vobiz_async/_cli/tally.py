"""
The running count of a batch, which the progress display and the summary read.
"""

from __future__ import annotations

import enum
import errno
import os
import time
from collections import Counter, deque
from http import HTTPStatus
from typing import Any

import attrs

from .._exceptions import (
    APIConnectError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InvalidTargetError,
    UnexpectedResponseError,
    VobizError,
)
from .._targets import Target
from .exits import ExitStatus

__all__ = ["Halt", "InputState", "RunEnd", "Tally", "failure_reason"]

#: Seconds of results the live rate is measured over.
RATE_WINDOW = 5.0


class RunEnd(enum.Enum):
    """
    How the run ended, or is ending.
    """

    #: The input was read to its end and every target sent has its answer.
    FINISHED = "finished"
    #: Ctrl-C or SIGTERM.
    INTERRUPTED = "interrupted"
    #: A batch brake stopped sending (a 401, no connection, a Retry-After too long).
    HALTED = "halted"
    #: The input could not be read further (bytes that are not UTF-8).
    INPUT_ERROR = "input error"


class InputState(enum.Enum):
    """
    How far the input has been read.
    """

    READING = "reading"
    #: Read to its end: every row is accounted for.
    COMPLETE = "complete"


@attrs.frozen
class Halt:
    """
    Why the batch stopped sending, and what exit status that means.
    """

    reason: str
    status: ExitStatus


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
    skipped: int = 0  # finished per --resume
    duplicates: int = 0
    #: Targets a brake failed before anything was sent for them: not attempted.
    not_sent: int = 0
    #: Targets in flight at Ctrl-C: their request may have reached the server.
    in_flight_interrupted: int = 0
    #: Targets handed to the batch but still queued in the client at Ctrl-C: never sent.
    queued_interrupted: int = 0
    planned: int = 0  # --dry-run: valid targets that would have been sent
    #: Rows taken from the input so far, whatever became of them.
    read: int = 0
    input: InputState = InputState.READING
    started: float = attrs.Factory(time.monotonic)
    end: RunEnd = RunEnd.FINISHED
    halt: Halt | None = None
    input_error: str | None = None
    #: Why targets failed, by how many.
    reasons: Counter[str] = attrs.Factory(Counter)
    #: Targets handed to the batch, not sent yet: waiting for the rate limit, a worker, a slot.
    queued: dict[tuple[object, ...], Target] = attrs.Factory(dict)
    #: Targets whose first request was sent and that have no result yet, with when it was sent.
    in_flight: dict[tuple[object, ...], tuple[Target, float]] = attrs.Factory(dict)
    #: 429s the batch absorbed, and until when it is paused for the latest one.
    throttled: int = 0
    paused_until: float = 0.0
    retries: int = 0
    last_answer: float = attrs.Factory(time.monotonic)
    _samples: deque[tuple[float, int]] = attrs.Factory(lambda: deque(maxlen=64))

    @property
    def interrupted(self) -> bool:
        """
        Whether Ctrl-C or SIGTERM ended the run.
        """
        return self.end is RunEnd.INTERRUPTED

    @property
    def done(self) -> int:
        """
        Rows with an outcome: sent and answered, or bad.
        """
        return self.stopped + self.not_found + self.failed + self.bad_rows

    @property
    def accounted(self) -> int:
        """
        Rows dealt with one way or another: the bar's progress.
        """
        return (
            self.done
            + self.skipped
            + self.duplicates
            + self.not_sent
            + self.in_flight_interrupted
            + self.queued_interrupted
        )

    @property
    def total(self) -> int | None:
        """
        Targets this run was to handle: the rows less those --resume skipped.
        """
        return None if self.rows is None else self.rows - self.skipped

    @property
    def unread(self) -> int | None:
        """
        Rows never taken from the input; None when that is unknown (standard input left).
        """
        if self.input is InputState.COMPLETE:
            return 0
        if self.rows is None:
            return None
        return max(self.rows - self.read, 0)

    @property
    def not_attempted(self) -> int | None:
        """
        Targets nothing was sent for (a brake, queued at Ctrl-C, never read); None: unknown.
        """
        unread = self.unread
        return None if unread is None else self.not_sent + self.queued_interrupted + unread

    @property
    def to_retry(self) -> int:
        """
        Targets in the report that a retry would send again: failed, not sent, interrupted.
        """
        return self.failed + self.not_sent + self.in_flight_interrupted

    def rate(self) -> float:
        """
        Rows done per second so far, over the whole run.
        """
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def recent_rate(self, now: float) -> float | None:
        """
        Rows done per second over the last few seconds (0 when nothing comes back); None at first.
        """
        samples = self._samples
        samples.append((now, self.done))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_at, first_done = samples[0]
        if now - first_at <= 0:
            return None  # one look so far: nothing to measure a rate over
        return (self.done - first_done) / (now - first_at)

    def counts_text(self) -> str:
        """
        The outcome counts in one short phrase, for progress.
        """
        return (
            f"stopped {self.stopped}, not found {self.not_found}, "
            f"failed {self.failed + self.bad_rows}"
        )

    def top_reasons(self, count: int = 3) -> list[tuple[str, int]]:
        """
        The commonest failure reasons, most common first.
        """
        return self.reasons.most_common(count)

    def sending(self, key: tuple[object, ...]) -> None:
        """
        The queued target ``key`` has sent its first request: now it is in flight.
        """
        target = self.queued.pop(key, None)
        if target is not None:
            self.in_flight[key] = (target, time.monotonic())

    def exit_status(self) -> ExitStatus:
        """
        What the run amounts to (see ExitStatus): the first that applies of 130, 2, 1, 0.
        """
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if self.input_error is not None:
            return ExitStatus.USAGE
        if self.halt is not None:
            return self.halt.status
        if self.failed or self.bad_rows:
            return ExitStatus.FAILED
        return ExitStatus.OK

    def as_json(self) -> dict[str, Any]:
        """
        The summary --json prints.
        """
        elapsed = time.monotonic() - self.started
        return {
            "total": self.total,
            "stopped": self.stopped,
            "not_found": self.not_found,
            "failed": self.failed + self.bad_rows,
            "bad_rows": self.bad_rows,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "not_attempted": self.not_attempted,
            "interrupted_in_flight": self.in_flight_interrupted,
            "interrupted": self.interrupted,
            "halted": self.halt.reason if self.halt is not None else None,
            "input_error": self.input_error,
            "failure_reasons": dict(self.top_reasons(5)),
            "elapsed": round(elapsed, 3),
            "requests_per_second": round(self.rate(), 1),
        }


def failure_reason(error: VobizError | None) -> str:
    """
    Why a target failed, in a few words that group alike failures together.
    """
    if isinstance(error, UnexpectedResponseError):
        return f"{error.status_code}: not an answer from the Vobiz API (base URL?)"
    if isinstance(error, APIStatusError):
        try:
            phrase = HTTPStatus(error.status_code).phrase
        except ValueError:
            phrase = "error"
        return f"{error.status_code} {phrase}"
    if isinstance(error, APITimeoutError):
        return "timed out"
    if isinstance(error, APIConnectError):
        cause = error.__cause__
        if (
            isinstance(cause, OSError)
            and cause.errno is not None
            and cause.errno in errno.errorcode
        ):
            return f"cannot connect: {os.strerror(cause.errno).lower()}"
        if isinstance(cause, OSError):
            return f"cannot connect: {str(cause)[:60]}"
        return "cannot connect"
    if isinstance(error, APIConnectionError):
        return "connection dropped"
    if isinstance(error, InvalidTargetError):
        return "invalid target"
    return type(error).__name__ if error is not None else "failed"
