"""
When to try a stop again, and how long to wait first.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import tenacity

from ._exceptions import APIConnectionError, APIStatusError

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "is_retryable", "parse_retry_after"]

#: Statuses worth another try: the request did not happen, or may succeed later.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _optional_positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    How hard one stop tries before it reports failure.

    Waits grow as ``wait_initial * wait_exp_base ** (retry - 1)`` plus up to
    ``wait_jitter`` seconds of random jitter, capped at ``wait_max``. A server's
    ``Retry-After`` replaces that wait when present, unless it is longer than
    ``max_retry_after``: then the stop fails at once rather than sleeping for
    minutes. ``deadline`` bounds one stop from its first request to its last
    answer, sleeps included; ``None`` leaves only ``max_attempts``.
    ``RetryPolicy(max_attempts=1)`` turns retries off.
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least_one)
    wait_initial: float = attrs.field(default=0.1, validator=_positive)
    wait_max: float = attrs.field(default=5.0, validator=_positive)
    wait_exp_base: float = attrs.field(default=2.0, validator=_positive)
    wait_jitter: float = attrs.field(default=0.1, validator=_non_negative)
    max_retry_after: float = attrs.field(default=30.0, validator=_non_negative)
    deadline: float | None = attrs.field(default=60.0, validator=_optional_positive)

    def retrying(
        self,
        *,
        started: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        before_sleep: Callable[[tenacity.RetryCallState], None],
    ) -> tenacity.AsyncRetrying:
        """
        A fresh tenacity retrier for one operation.

        Never share one between operations: tenacity keeps the attempt count on
        the retrier's state, so concurrent stops would count each other's tries.
        """
        backoff = tenacity.wait_exponential(
            multiplier=self.wait_initial, max=self.wait_max, exp_base=self.wait_exp_base
        ) + tenacity.wait_random(0, self.wait_jitter)
        deadline = self.deadline

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, APIStatusError) and exc.retry_after is not None:
                return exc.retry_after
            return min(float(backoff(state)), self.wait_max)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            # Give up now rather than sleep into the deadline: the caller gets
            # the real error instead of a timeout that hides it.
            return deadline is not None and clock() - started + state.upcoming_sleep >= deadline

        return tenacity.AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(self.should_retry),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def refuses_wait(self, retry_after: float | None) -> bool:
        """
        True when the server asked for a wait longer than this policy will sleep.
        """
        return retry_after is not None and retry_after > self.max_retry_after

    def should_retry(self, exc: BaseException) -> bool:
        """
        Whether ``exc`` deserves another attempt under this policy, attempts left aside.
        """
        if isinstance(exc, APIStatusError) and self.refuses_wait(exc.retry_after):
            return False
        return is_retryable(exc)


def is_retryable(exc: BaseException) -> bool:
    """
    Whether another attempt could succeed where this one failed.
    """
    if isinstance(exc, APIConnectionError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """
    Seconds to wait from a Retry-After value: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable value, so the caller falls back to
    its own backoff instead of trusting garbage.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)
