"""
Adaptive, batch-wide flow control: find the server's rate limit and stay just under it.

The algorithm is CUBIC (RFC 9438) applied to a request rate, as in the AWS
SDKs' "adaptive" retry mode. Until the server first pushes back there is no
limit. A throttle (429) cuts the rate multiplicatively::

    W_max = min(rate now, rate sent, rate accepted)   the rate that hit the wall
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
news: it cuts nothing. After the first cut, a further cut needs evidence of a
wall, not of bad luck: at least MIN_THROTTLES 429s, and more than DENSITY of
the last WINDOW seconds' answers to requests sent since the cut. A real limit exceeded
by 10% passes that within a few answers; a server that refuses 5% of
requests at random, whatever the rate, mostly does not, so it cannot grind
the batch down to nothing.

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
#: Accepted answers in the window before the accepted rate is trusted.
MIN_ACCEPTS = 5
#: After the first cut: 429s, and their share of answers since the cut, that make a wall.
MIN_THROTTLES = 1
DENSITY = 0.10
#: Seconds over which the send and accept rates are measured, in SLOTS slices.
WINDOW = 1.0
SLOTS = 10


class RateMeter:
    """
    Events per second over the last WINDOW seconds, kept as SLOTS counters: constant memory.
    """

    def __init__(self) -> None:
        self._counts = [0] * SLOTS
        self._slots = [-SLOTS] * SLOTS  # which time slot each counter holds
        self.first: float | None = None

    def add(self, at: float) -> None:
        """
        Count one event at time ``at``; one older than the window is dropped.
        """
        if self.first is None:
            self.first = at
        slot = int(at * SLOTS / WINDOW)
        i = slot % SLOTS
        if self._slots[i] < slot:
            self._slots[i], self._counts[i] = slot, 0
        if self._slots[i] == slot:
            self._counts[i] += 1

    def count(self, now: float) -> int:
        """
        Events in the last WINDOW seconds.
        """
        oldest = int(now * SLOTS / WINDOW) - SLOTS
        return sum(c for c, slot in zip(self._counts, self._slots, strict=True) if slot > oldest)

    def per_second(self, now: float) -> float:
        """
        The rate over the last WINDOW seconds, or since the first event if that is shorter.
        """
        if self.first is None:
            return 0.0
        # The counters cover the current slot so far and the SLOTS - 1 before it.
        covered = now - (int(now * SLOTS / WINDOW) - SLOTS + 1) * WINDOW / SLOTS
        return self.count(now) / max(min(now - self.first, covered), 0.05)


class SendRate:
    """
    The batch's allowed sending rate, in requests per second; None while unthrottled.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sends = RateMeter()
        self._accepts = RateMeter()
        self._w_max = 0.0
        self._c = 0.0
        self._cut_at: float | None = None
        # (answered at, was it a 429) for requests sent since the last cut, last WINDOW s.
        self._recent: collections.deque[tuple[float, bool]] = collections.deque()
        self._refused = 0  # 429s in _recent
        #: Bumped at every cut, so that sends booked at the old rate can be booked again.
        self.epoch = 0

    def sent(self, at: float) -> None:
        """
        Note a request handed to the transport at ``at``.
        """
        self._sends.add(at)

    def measured(self) -> float:
        """
        Requests sent per second over the last WINDOW seconds (less at the start).
        """
        return self._sends.per_second(self._clock())

    @property
    def engaged(self) -> bool:
        """
        True once the server has pushed back: from then on, every send is paced.
        """
        return self._cut_at is not None

    def accepted(self) -> float | None:
        """
        Answers other than 429 per second over the last WINDOW; None with too few to tell.
        """
        now = self._clock()
        if self._accepts.count(now) < MIN_ACCEPTS:
            return None
        return self._accepts.per_second(now)

    def allowed(self) -> float | None:
        """
        The rate to send at now; None before the first throttle.
        """
        if self._cut_at is None:
            return None
        t = self._clock() - self._cut_at
        cubic = self._c * (t - K) ** 3 + self._w_max
        return max(min(cubic, 2 * max(self.measured(), MIN_RATE)), MIN_RATE)

    def answered(self, sent_at: float, *, throttled: bool) -> None:
        """
        The server answered a request sent at ``sent_at``; cut the rate on a wall.
        """
        if not throttled:
            self._accepts.add(self._clock())
        if self._cut_at is not None:
            if sent_at < self._cut_at + GRACE:
                return  # the old rate's echo
            recent = self._recent
            now = self._clock()
            recent.append((now, throttled))
            self._refused += throttled
            while recent[0][0] < now - WINDOW:
                self._refused -= recent.popleft()[1]
            if not (
                throttled
                and self._refused >= MIN_THROTTLES
                and self._refused > DENSITY * len(recent)
            ):
                return
        elif not throttled:
            return
        self._cut()

    def _cut(self) -> None:
        # A token bucket accepts about its rate however much more is sent, so
        # the accepted rate finds a wall far below the send rate in one cut.
        rates = (self.allowed(), self.measured() or MIN_RATE, self.accepted())
        self._w_max = max(min(r for r in rates if r is not None), MIN_RATE)
        self._c = self._w_max * (1 - BETA) / K**3
        self._cut_at = self._clock()
        self._recent.clear()
        self._refused = 0
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
