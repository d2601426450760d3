"""
The Gate every attempt of a batch passes through: brakes, adaptive pacing, the ceiling.
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

from .._exceptions import APIStatusError, RateLimitError, VobizError
from .._retry import Clock, Sleep
from .brakes import Brakes
from .flow import Pacer, SendRate

__all__ = ["BatchGate", "ceiling"]

#: Seconds of requests the ceiling's bucket holds: what a late wake-up can make up.
SLACK = 0.01


def ceiling(rate_limit: float) -> AsyncLimiter:
    """
    ``rate_limit`` as a leaky bucket that holds SLACK seconds of requests, leaking a little slower.

    A bucket of capacity one spaces requests exactly ``1 / rate_limit``
    apart, and every waiter the event loop wakes late loses that lateness
    for good: told an 800/s limit, a batch sent 65-69% of it. Holding SLACK
    seconds' worth (``capacity = rate_limit * SLACK``, at least one), a late
    waiter is made up for by the next (93-95%). It leaks ``capacity - 1``
    requests a second slower, so no second ever holds more than capacity one
    let through (``rate_limit + 1``): still a hard ceiling for a server
    counting per second; only within 10 ms can ``capacity`` go together.
    """
    capacity = max(1.0, rate_limit * SLACK)
    leak = rate_limit - (capacity - 1.0)
    return AsyncLimiter(capacity, capacity / leak)


class BatchGate:
    """
    Brakes, then the adaptive rate (flow.SendRate), then ``rate_limit`` as a hard ceiling.

    A 429 is the batch's problem, not the target's: it cuts the batch's rate
    and is absorbed (sent again after its Retry-After without spending an
    attempt), unless its Retry-After is longer than ``max_retry_after``, which
    is a brake. The ceiling is aiolimiter's leaky bucket (see ``ceiling``).
    """

    def __init__(
        self, *, rate_limit: float | None, max_retry_after: float, clock: Clock, sleep: Sleep
    ) -> None:
        self.brakes = Brakes(max_retry_after=max_retry_after)
        self.rate = SendRate(clock)
        self._pacer = Pacer(self.rate, clock=clock, sleep=sleep)
        self._max_retry_after = max_retry_after
        self._ceiling: AsyncLimiter | None = None
        if rate_limit is not None and math.isfinite(rate_limit):  # inf: no ceiling at all
            self._ceiling = ceiling(rate_limit)

    async def before_attempt(self, *, first: bool) -> None:
        """
        Raise if a brake is on; else wait for this request's turn.
        """
        self._check_brakes(first=first)
        if not (self.rate.engaged or self._ceiling):
            return  # the clean path: nothing to wait for, nothing more to check
        await self._pacer.wait()
        if self._ceiling is not None:
            await self._ceiling.acquire()
        self._check_brakes(first=first)  # it may have come on while this one waited

    def _check_brakes(self, *, first: bool) -> None:
        stopped = self.brakes.stopped(sent=not first)
        if stopped is not None:
            raise stopped

    def sent(self, at: float) -> None:
        """
        A request was handed to the transport at ``at``: the send rate is measured from these.
        """
        self.rate.sent(at)

    def after_attempt(self, sent_at: float, error: VobizError | None) -> None:
        """
        Feed the brakes and the rate: every answer (or failure) with its request's send time.
        """
        self.brakes.saw(error)
        if error is None or isinstance(error, APIStatusError):
            self.rate.answered(sent_at, throttled=isinstance(error, RateLimitError))

    def absorbs(self, error: VobizError) -> bool:
        """
        A 429 the policy would wait for: the batch sends it again, no attempt spent.
        """
        return (
            isinstance(error, RateLimitError)
            and error.brake is None
            and (error.retry_after is None or error.retry_after <= self._max_retry_after)
        )
