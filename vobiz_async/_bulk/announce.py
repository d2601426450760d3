"""
A batch's gate that also says when a target's first request is actually sent.

A target handed to a batch may wait a long while in the client (the rate
limit's pacing, a free worker, a pool slot) before anything leaves for the
server. Only once its first request is handed to the transport can the stop
have been applied: what a caller counting "in flight" needs to know.
"""

from __future__ import annotations

from collections.abc import Callable

from .._exceptions import VobizError
from .._retry import Gate
from .._targets import Target

__all__ = ["Announcing", "SentHook"]

#: Called with a target when its first request is handed to the transport.
SentHook = Callable[[Target], object]


class Announcing:
    """
    ``gate``, for one target: the first ``sent`` also calls ``on_sent(target)``.
    """

    __slots__ = ("_announced", "_gate", "_on_sent", "_target")

    def __init__(self, gate: Gate, target: Target, on_sent: SentHook) -> None:
        self._gate = gate
        self._target = target
        self._on_sent = on_sent
        self._announced = False

    async def before_attempt(self, *, first: bool) -> None:
        """
        As the batch's gate.
        """
        await self._gate.before_attempt(first=first)

    def sent(self, at: float) -> None:
        """
        As the batch's gate; the first time, the target is announced sent.
        """
        self._gate.sent(at)
        if not self._announced:
            self._announced = True
            self._on_sent(self._target)

    def after_attempt(self, sent_at: float, error: VobizError | None) -> None:
        """
        As the batch's gate.
        """
        self._gate.after_attempt(sent_at, error)

    def absorbs(self, error: VobizError) -> bool:
        """
        As the batch's gate.
        """
        return self._gate.absorbs(error)
