"""
When to try a request again, how long to wait first, and the loop that does it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import attrs
import tenacity

from ._checks import at_least_one, non_negative, optional_positive, positive
from ._exceptions import APIConnectionError, APIStatusError, APITimeoutError, VobizError

__all__ = [
    "RETRYABLE_STATUSES",
    "UNGATED",
    "Attempts",
    "Gate",
    "RetryPolicy",
    "is_retryable",
]

logger = logging.getLogger("vobiz_async")

R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

#: Statuses worth another try: the request did not happen, or may succeed later.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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

    max_attempts: int = attrs.field(default=5, validator=at_least_one)
    wait_initial: float = attrs.field(default=0.1, validator=positive)
    wait_max: float = attrs.field(default=5.0, validator=positive)
    wait_exp_base: float = attrs.field(default=2.0, validator=positive)
    wait_jitter: float = attrs.field(default=0.1, validator=non_negative)
    max_retry_after: float = attrs.field(default=30.0, validator=non_negative)
    deadline: float | None = attrs.field(default=60.0, validator=optional_positive)

    def retrying(
        self,
        *,
        started: float,
        clock: Clock,
        sleep: Sleep,
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


class Gate(Protocol):
    """
    What a batch does around every attempt of each of its targets (its brakes and pacing).
    """

    async def before_attempt(self) -> None:
        """
        Wait until the batch may send another request.
        """

    def on_error(self, error: VobizError) -> None:
        """
        See every failed attempt, to brake the whole batch when it concerns all targets.
        """


class _Ungated:
    async def before_attempt(self) -> None:
        return None

    def on_error(self, error: VobizError) -> None:
        return None


#: The gate of a stop outside any batch: nothing to wait for, nobody to tell.
UNGATED: Gate = _Ungated()


class Attempts:
    """
    One operation's attempts, waits and deadline under a RetryPolicy.

    ``run(send)`` calls ``send(timeout)`` once per attempt, with the attempt's
    timeout shrunk to what is left of the deadline; ``preflight`` runs before
    each, to refuse an attempt that must not be sent (the client was closed).
    ``count`` counts requests handed to ``send``, not attempts refused before.

    The common case is one attempt that succeeds, so the first runs without tenacity, whose
    per-operation setup costs more than the request's own client-side work
    (measured: ~33 us). Only a retryable failure builds a retrier, and that
    first failure is replayed into it, so tenacity counts it and waits after it
    exactly as if it had made that call.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        timeout: float,
        clock: Clock,
        sleep: Sleep,
        gate: Gate,
        preflight: Callable[[], None],
        label: str,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.gate = gate
        self.preflight = preflight
        self.label = label
        #: Requests sent so far.
        self.count = 0
        self.started = clock()

    async def run(self, send: Callable[[float], Awaitable[R]]) -> R:
        """
        The first successful answer; else the last error, carrying ``attempts``.
        """
        try:
            try:
                return await self._attempt(send)
            except VobizError as first_error:
                if self.count >= self.policy.max_attempts or not self.policy.should_retry(
                    first_error
                ):
                    raise
                return await self._retry_after(first_error, send)
        except VobizError as exc:
            exc.attempts = self.count
            raise

    async def _retry_after(
        self, first_error: VobizError, send: Callable[[float], Awaitable[R]]
    ) -> R:
        pending: VobizError | None = first_error
        retrying = self.policy.retrying(
            started=self.started, clock=self.clock, sleep=self.sleep, before_sleep=_log_retry
        )
        async for try_ in retrying:
            with try_:
                if pending is not None:
                    error, pending = pending, None
                    raise error
                return await self._attempt(send)
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    async def _attempt(self, send: Callable[[float], Awaitable[R]]) -> R:
        await self.gate.before_attempt()
        try:
            self.preflight()
            timeout = self._attempt_timeout()
            self.count += 1
            return await send(timeout)
        except VobizError as exc:
            self.gate.on_error(exc)
            raise

    def _attempt_timeout(self) -> float:
        deadline = self.policy.deadline
        if deadline is None:
            return self.timeout
        left = deadline - (self.clock() - self.started)
        if left <= 0:
            raise APITimeoutError(f"deadline of {deadline}s reached before {self.label}")
        return min(self.timeout, left)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.info(
        "retrying in %.2fs after attempt %d: %s",
        state.upcoming_sleep,
        state.attempt_number,
        exc,
        extra={"vobiz_attempt": state.attempt_number, "vobiz_wait": state.upcoming_sleep},
    )
