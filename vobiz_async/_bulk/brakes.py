"""
Batch-wide pacing and brakes: the Gate every attempt of a batch passes through.
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

from .._exceptions import AuthenticationError, RateLimitError, VobizError
from .._retry import Clock, Sleep

__all__ = ["Brakes"]


class Brakes:
    """
    Batch-wide reactions to errors that concern every target, not just one.

    Pacing is a leaky bucket of capacity one (aiolimiter), so requests are
    spaced evenly at ``1 / rate_limit`` seconds and no burst ever exceeds the
    rate. A 429 with Retry-After pauses every worker, so a rate-limit storm
    slows the batch down instead of burning each target's attempts. A 401
    means every later request would fail too: the rest of the batch is failed
    with that same error instead of sending thousands of doomed requests.
    """

    def __init__(
        self, *, rate_limit: float | None, max_pause: float, clock: Clock, sleep: Sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._limiter: AsyncLimiter | None = None
        if rate_limit is not None and math.isfinite(rate_limit):  # inf: no pacing at all
            self._limiter = AsyncLimiter(1, 1 / rate_limit)
        self._max_pause = max_pause
        self._resume_at = 0.0
        #: The first 401 of the batch; every target after it fails with it, unsent.
        self.auth_failure: AuthenticationError | None = None

    def unsent_failure(self) -> VobizError | None:
        """
        The error for a target the batch will not send, once a brake is on; else None.
        """
        if self.auth_failure is None:
            return None
        return self.auth_failure.not_sent(
            "an earlier request of this batch was refused; check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN"
        )

    async def before_attempt(self) -> None:
        """
        Wait out a batch pause, then for the rate limiter.
        """
        while (wait := self._resume_at - self._clock()) > 0:
            await self._sleep(wait)
        if self._limiter is not None:
            await self._limiter.acquire()

    def on_error(self, error: VobizError) -> None:
        """
        Pause the batch for a 429's Retry-After; remember the first 401.
        """
        if isinstance(error, AuthenticationError):
            self.auth_failure = self.auth_failure or error
        elif (
            isinstance(error, RateLimitError)
            and error.retry_after is not None
            and error.retry_after <= self._max_pause
        ):
            self._resume_at = max(self._resume_at, self._clock() + error.retry_after)
