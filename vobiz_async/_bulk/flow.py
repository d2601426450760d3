"""
Adaptive, batch-wide flow control: find the server's rate limit and stay just under it.

The algorithm is CUBIC (RFC 9438) applied to a request rate, as in the AWS
SDKs' "adaptive" retry mode. Until the server first pushes back there is no
limit. A throttle (429) cuts the rate multiplicatively::

    W_max = min(rate now, rate measured)      the rate that hit the wall
    rate  = max(BETA * W_max, MIN_RATE)       BETA = 0.7

and between throttles the rate grows back along::

    W(t) = C * (t - K) ** 3 + W_max,   C = W_max * (1 - BETA) / K ** 3,   K = 2 s

t seconds after the cut: fast while far below the last limit, slowly near
it, then probing past it. Where RFC 9438 fixes C (AWS: 0.4) and lets K grow
with W_max, here C scales with W_max so that the plateau is always K seconds
away: measured at 300 requests a second, a fixed C = 0.4 takes 6 s to regain
the old rate and 14 s to find the real one. Growth is capped at twice the
measured send rate, so a batch slowed by something else does not run up a
rate it never uses. A 429 answering a request sent before the last cut (plus
GRACE, for requests already past the pacer) is the old rate's echo, not
news: it cuts nothing, so one wall is one cut, not one per request.

The rate is enforced by ``Pacer``: virtual scheduling (each send booked
``1 / rate`` after the previous one). aiolimiter's rate is fixed at
construction and it reads the event loop's clock, not an injected one, so it
keeps the fixed ``rate_limit`` ceiling and this small pacer the moving rate.
"""

from __future__ import annotations

import collections

from .._retry import Clock, Sleep

__all__ = ["Pacer", "SendRate"]

BETA = 0.7
#: Seconds from a cut back to the rate that hit the wall.
K = 2.0
MIN_RATE = 0.5
#: Seconds after a cut during which sends still count as the old rate's.
GRACE = 0.05
#: Seconds of send times kept to measure the send rate.
WINDOW = 1.0


class SendRate:
    """
    The batch's allowed sending rate, in requests per second; None while unthrottled.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sends: collections.deque[float] = collections.deque()
        self._first_send: float | None = None
        self._w_max = 0.0
        self._c = 0.0
        self._cut_at: float | None = None
        #: Bumped at every cut, so that sends booked at the old rate can be booked again.
        self.epoch = 0

    def sent(self, at: float) -> None:
        """
        Note a request handed to the transport at ``at``.
        """
        if self._first_send is None:
            self._first_send = at
        sends = self._sends
        sends.append(at)
        # Noted as answers arrive, so nearly in order: pruning from the left is enough.
        while sends[0] < at - WINDOW:
            sends.popleft()

    def measured(self) -> float:
        """
        Requests sent per second over the last WINDOW seconds (less at the start).
        """
        if self._first_send is None:
            return 0.0
        now = self._clock()
        sends = self._sends
        while sends and sends[0] < now - WINDOW:
            sends.popleft()
        return len(sends) / min(max(now - self._first_send, 0.05), WINDOW)

    @property
    def engaged(self) -> bool:
        """
        True once the server has pushed back: from then on, every send is paced.
        """
        return self._cut_at is not None

    def allowed(self) -> float | None:
        """
        The rate to send at now; None before the first throttle.
        """
        if self._cut_at is None:
            return None
        t = self._clock() - self._cut_at
        cubic = self._c * (t - K) ** 3 + self._w_max
        return max(min(cubic, 2 * max(self.measured(), MIN_RATE)), MIN_RATE)

    def throttled(self, sent_at: float) -> None:
        """
        The server refused a request sent at ``sent_at``: cut the rate, once per wall.
        """
        if self._cut_at is not None and sent_at < self._cut_at + GRACE:
            return
        now = self._clock()
        allowed = self.allowed()
        measured = self.measured() or MIN_RATE
        self._w_max = min(allowed, measured) if allowed is not None else measured
        self._c = self._w_max * (1 - BETA) / K**3
        self._cut_at = now
        self.epoch += 1


class Pacer:
    """
    Spaces requests at ``SendRate.allowed()``; nothing to wait for while it is None.
    """

    def __init__(self, rate: SendRate, *, clock: Clock, sleep: Sleep) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next_at = 0.0
        self._epoch = rate.epoch

    async def wait(self) -> None:
        """
        Wait for this request's turn at the current rate.
        """
        while (rate := self._rate.allowed()) is not None:
            epoch = self._rate.epoch
            if epoch != self._epoch:
                # A cut: the sends booked at the old rate start again from now.
                self._epoch = epoch
                self._next_at = 0.0
            now = self._clock()
            at = max(now, self._next_at)
            self._next_at = at + 1 / rate
            if at > now:
                await self._sleep(at - now)
            if self._rate.epoch == epoch:
                return
