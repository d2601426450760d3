"""
What goes wrong, and the seeded draw that decides it for each request.
"""

from __future__ import annotations

import enum
import random
from typing import Any

import attrs

from .._checks import non_negative, probability

__all__ = ["Action", "FaultDice", "Faults"]


def _optional_positive_int(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """
    What goes wrong, drawn per request from the fake's seeded random generator.

    Probabilities are per request and are tried in the order listed; at most
    one fault hits a request. ``latency`` applies to every answered request.
    """

    latency: float = attrs.field(default=0.0, validator=non_negative)
    #: 503 with an HTML body, as a load balancer sends it.
    error_503: float = attrs.field(default=0.0, validator=probability)
    #: 429 in Vobiz's nested error shape, with ``Retry-After: retry_after``.
    rate_limit_429: float = attrs.field(default=0.0, validator=probability)
    retry_after: float = attrs.field(default=1.0, validator=non_negative)
    #: The connection is dropped before the stop is applied.
    drop_before: float = attrs.field(default=0.0, validator=probability)
    #: The stop is applied, then the connection is dropped: the client never hears.
    drop_after: float = attrs.field(default=0.0, validator=probability)
    #: The stop is applied, and the answer comes ``delay_seconds`` late (past a short
    #: client timeout): the client may give up on a stop that happened.
    delay: float = attrs.field(default=0.0, validator=probability)
    delay_seconds: float = attrs.field(default=5.0, validator=non_negative)
    #: The request is accepted and never answered.
    hang: float = attrs.field(default=0.0, validator=probability)
    #: Socket server only: close each connection after this many requests.
    keepalive_requests: int | None = attrs.field(default=None, validator=_optional_positive_int)


class Action(enum.Enum):
    """
    What the fake does with one request: answer it, or one of the faults.
    """

    ANSWER = enum.auto()
    ERROR_503 = enum.auto()
    RATE_LIMIT = enum.auto()
    DROP_BEFORE = enum.auto()
    DROP_AFTER = enum.auto()
    DELAY = enum.auto()
    HANG = enum.auto()
    #: Refused by the RateLimit's token bucket (not drawn: the bucket decides).
    THROTTLED = enum.auto()

    @property
    def fault(self) -> str | None:
        """
        The fault's name as a request records it, or None for a plain answer.
        """
        return None if self is Action.ANSWER else self.name.lower()


class FaultDice:
    """
    The fake's seeded random generator: one roll per request, the same rolls for a seed.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets

    def roll(self, faults: Faults) -> Action:
        """
        The action for the next request, with ``faults`` as they are now.
        """
        draw = self._random.random()
        for action, chance in (
            (Action.ERROR_503, faults.error_503),
            (Action.RATE_LIMIT, faults.rate_limit_429),
            (Action.DROP_BEFORE, faults.drop_before),
            (Action.DROP_AFTER, faults.drop_after),
            (Action.DELAY, faults.delay),
            (Action.HANG, faults.hang),
        ):
            if draw < chance:
                return action
            draw -= chance
        return Action.ANSWER
