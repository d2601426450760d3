"""
A true token-bucket rate limit, as an API gateway (or nginx's limit_req) enforces one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from .._checks import at_least_one, non_negative, positive

__all__ = ["RateLimit", "TokenBucket"]


def _seconds_or_none(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        non_negative(_, attribute, value)


@attrs.frozen(kw_only=True)
class RateLimit:
    """
    The fake's account limit: ``rate`` requests a second, bursts of up to ``burst``.

    Over the limit the fake answers 429 in Vobiz's ``body`` shape (``"nested"``
    or ``"flat"``), with ``Retry-After: retry_after`` unless it is None, and
    applies nothing. Requests are refused, never queued (nginx's ``nodelay``).
    """

    rate: float = attrs.field(validator=positive)
    burst: int = attrs.field(default=1, validator=at_least_one)
    retry_after: float | None = attrs.field(default=1.0, validator=_seconds_or_none)
    body: Literal["nested", "flat"] = attrs.field(
        default="nested", validator=attrs.validators.in_(("nested", "flat"))
    )


class TokenBucket:
    """
    ``burst`` tokens, refilled at ``rate`` a second; each request takes one or is refused.
    """

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._last = clock()

    def take(self) -> bool:
        """
        True if a token was free (the request may go on), False if it is over the limit.
        """
        now = self._clock()
        refill = (now - self._last) * self.limit.rate
        self._tokens = min(float(self.limit.burst), self._tokens + refill)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
