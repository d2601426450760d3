"""
When to try a request again, how long to wait first, and the loop that does it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import attrs
import tenacity

from ._checks import at_least_one, non_negative, optional_positive, positive
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    TLSCertificateError,
    VobizError,
)

if TYPE_CHECKING:
    from ._observe import Watch

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

#: With ``deadline=None``, a throttled request is sent again at most this many
#: times per attempt the policy allows.
THROTTLED_RESENDS_WITHOUT_DEADLINE = 20

#: Statuses worth another try: the request did not happen, or may succeed later.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    How hard one stop tries before it reports failure.

    The wait before retry ``n`` (1, 2, ...) is::

        backoff(n) = min(wait_initial * wait_exp_base ** (n - 1)
                         + uniform(0, wait_jitter), wait_max)
        wait(n)    = max(retry_after, backoff(n))    when the server sent Retry-After

    so Retry-After is a floor, never a reason to hurry (0, negative or past
    values wait the backoff). One longer than ``max_retry_after`` fails the
    stop at once rather than sleeping for minutes. ``deadline`` bounds one stop
    from its first request to its last answer, sleeps included (time queued in
    the client before the first request is not counted); ``None`` leaves only
    ``max_attempts``. ``RetryPolicy(max_attempts=1)`` turns retries off.
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
            wait = min(float(backoff(state)), self.wait_max)
            if isinstance(exc, APIStatusError) and exc.retry_after is not None:
                # A floor, never a reason to hurry: Retry-After 0 waits the backoff.
                return max(exc.retry_after, wait)
            return wait

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

    def wait_floor(self, exc: BaseException) -> float:
        """
        The least wait before sending again after ``exc``: Retry-After, at least ``wait_initial``.
        """
        retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
        return max(retry_after or 0.0, self.wait_initial)

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

    Never for an error a batch brake made (the batch stopped), nor for a
    certificate that failed verification (it will fail the same way again).
    """
    if isinstance(exc, VobizError) and exc.brake is not None:
        return False
    if isinstance(exc, TLSCertificateError):
        return False
    if isinstance(exc, APIConnectionError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES


class Gate(Protocol):
    """
    What a batch does around every attempt of each of its targets: pacing and brakes.
    """

    async def before_attempt(self, *, first: bool) -> None:
        """
        Wait until the batch may send another request; raise the brake's error once it is on.

        ``first``: this target has sent nothing yet.
        """

    def sent(self, at: float) -> None:
        """
        A request of this batch was handed to the transport at ``at``.
        """

    def after_attempt(self, sent_at: float, error: VobizError | None) -> None:
        """
        See how every sent request went (``error`` None for an answer), from its send time.
        """

    def absorbs(self, error: VobizError) -> bool:
        """
        True when the batch takes this failure on itself: re-send without spending an attempt.
        """


class _Ungated:
    async def before_attempt(self, *, first: bool) -> None:
        return None

    def sent(self, at: float) -> None:
        return None

    def after_attempt(self, sent_at: float, error: VobizError | None) -> None:
        return None

    def absorbs(self, error: VobizError) -> bool:
        return False


#: The gate of a stop outside any batch: nothing to wait for, nobody to tell.
UNGATED: Gate = _Ungated()


class Attempts:
    """
    One operation's attempts, waits and deadline under a RetryPolicy.

    ``run(send)`` calls ``send()`` once per attempt; ``send`` calls ``begin()``
    at the moment it hands the request to the transport. ``begin`` counts the
    request, starts the deadline on the first one and gives the attempt's
    timeout, shrunk to what is left of the deadline. So time spent queued in
    the client (the batch's pacing, a pool slot) before the first request is
    not charged to the deadline, and ``count`` counts requests sent.
    ``preflight`` runs before each attempt, to refuse one that must not be
    sent (the client was closed).

    ``watch`` hears of every request: sent (``begin``), answered
    (``answered``, which ``send`` calls once it has judged the answer), and
    whether another follows (decided here, where the retry decision is made).
    That one stream feeds ``on_attempt`` and the telemetry.

    A batch's gate may absorb a failure (a 429): the request is sent again
    after the server's Retry-After, without spending an attempt, for as long
    as the deadline has room.

    The common case is one attempt that succeeds, so the first runs without
    tenacity, whose per-operation setup costs more than the request's own
    client-side work (measured: ~33 us). Only a retryable failure builds a
    retrier, and that first failure is replayed into it, so tenacity counts it
    and waits after it exactly as if it had made that call.
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
        watch: Watch,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.gate = gate
        self.preflight = preflight
        self.label = label
        self.watch = watch
        #: Requests sent so far.
        self.count = 0
        #: When the first request was handed to the transport; None before.
        self.started: float | None = None
        self._sent_at = 0.0
        self._sent_perf = 0.0

    def begin(self) -> float:
        """
        Count a request handed to the transport now; the timeout it may take.
        """
        now = self.clock()
        if self.started is None:
            self.started = now
        timeout = self.timeout
        deadline = self.policy.deadline
        if deadline is not None:
            left = deadline - (now - self.started)
            if left <= 0:
                raise APITimeoutError(f"deadline of {deadline}s reached before {self.label}")
            timeout = min(timeout, left)
        self.count += 1
        self._sent_at = now
        self.gate.sent(now)
        self.watch.sending(self.count)
        # Durations are real time, whatever the injected clock says.
        self._sent_perf = time.perf_counter()
        return timeout

    def answered(self, status_code: int | None, error: VobizError | None) -> float:
        """
        The request sent last got this answer (``error`` None: it is a stop); its seconds.
        """
        seconds = time.perf_counter() - self._sent_perf
        self.watch.answered(status_code, error, seconds)
        return seconds

    async def run(self, send: Callable[[], Awaitable[R]]) -> R:
        """
        The first successful answer; else the last error, carrying ``attempts``.
        """
        try:
            try:
                return await self._attempt(send)
            except VobizError as first_error:
                if self.policy.max_attempts <= 1 or not self.policy.should_retry(first_error):
                    raise
                return await self._retry_after(first_error, send)
        except VobizError as exc:
            self.watch.decided(will_retry=False, wait=0.0)
            exc.attempts = self.count
            raise

    async def _retry_after(self, first_error: VobizError, send: Callable[[], Awaitable[R]]) -> R:
        pending: VobizError | None = first_error
        retrying = self.policy.retrying(
            started=self.started if self.started is not None else self.clock(),
            clock=self.clock,
            sleep=self.sleep,
            before_sleep=self._before_retry,
        )
        async for try_ in retrying:
            with try_:
                if pending is not None:
                    error, pending = pending, None
                    raise error
                return await self._attempt(send)
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        _log_retry(state)
        self.watch.decided(will_retry=True, wait=state.upcoming_sleep)

    async def _attempt(self, send: Callable[[], Awaitable[R]]) -> R:
        """
        One attempt, with the re-sends of failures the gate absorbs.
        """
        while True:
            await self.gate.before_attempt(first=self.count == 0)
            self.preflight()
            sent = self.count
            try:
                answer = await send()
            except VobizError as exc:
                if self.count > sent:
                    self.gate.after_attempt(self._sent_at, exc)
                wait = self.policy.wait_floor(exc)
                if not (self.gate.absorbs(exc) and self._has_room(wait)):
                    raise
                _log_throttled(exc, wait, self.count)
                self.watch.decided(will_retry=True, wait=wait)
                await self.sleep(wait)
                continue
            self.gate.after_attempt(self._sent_at, None)
            self.watch.decided(will_retry=False, wait=0.0)
            return answer

    def _has_room(self, wait: float) -> bool:
        deadline = self.policy.deadline
        if deadline is None or self.started is None:
            # No deadline to end it: a bound on re-sends instead, so that a
            # server that throttles forever cannot hold a target forever.
            return self.count < self.policy.max_attempts * THROTTLED_RESENDS_WITHOUT_DEADLINE
        return self.clock() + wait - self.started < deadline


def _log_throttled(exc: VobizError, wait: float, count: int) -> None:
    logger.info(
        "throttled; sending again in %.2fs (request %d): %s",
        wait,
        count,
        exc,
        extra={"vobiz_attempt": count, "vobiz_wait": wait, "vobiz_event": "throttled"},
    )


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.info(
        "retrying in %.2fs after attempt %d: %s",
        state.upcoming_sleep,
        state.attempt_number,
        exc,
        extra={
            "vobiz_attempt": state.attempt_number,
            "vobiz_wait": state.upcoming_sleep,
            "vobiz_event": "retry",
        },
    )
