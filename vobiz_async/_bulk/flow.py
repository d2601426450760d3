"""
Adaptive, batch-wide flow control: find the server's rate limit and stay just under it.

The algorithm is CUBIC (RFC 9438) applied to a request rate, as in the AWS
SDKs' "adaptive" retry mode. Until the server first pushes back there is no
limit. A throttle (429) cuts the rate multiplicatively::

    W_max = min(rate now, rate sent, rate accepted)   the rate that hit the wall
    rate  = max(BETA * W_max, MIN_RATE)       BETA = 0.7

(sent and accepted over the last RECENT tenths of a second: a rate still
growing a second ago averages out below the wall) and between throttles the
rate grows back along::

    W(t) = C * (t - K) ** 3 + W_max,   C = W_max * (1 - BETA) / K ** 3,   K = 2 s

t seconds after the cut: fast while far below the last limit, slowly near
it, then probing past it. A cut made before there is a rate to trust (the
first answers of a batch arrive within milliseconds, a burst or a handful)
knows no W_max: the rate then grows as in TCP's slow start, where each
acknowledgement widens the window by one segment. Here each answer accepted
since the cut adds 1 / DOUBLING to the rate, which doubles it every DOUBLING
seconds while the sends keep up, and not at all while nothing is sent (a
batch-wide pause) or answered; the next wall is taken as W_max (the rate
reached)::

    rate  = start + accepted since the cut / DOUBLING
    start = max(BETA * accepted / WINDOW, MIN_RATE)

where ``accepted`` counts the answers without a 429 over the last WINDOW, to
requests sent before the cut: a blind burst's few milliseconds say nothing
of the limit's rate, only that its bucket held that much. (Measured from the
rate sent in those milliseconds, the start was 360/s against a 50/s limit,
and coming down took eight cuts and 146 of the batch's 201 429s.)

Where RFC 9438 fixes C (AWS: 0.4) and lets K grow with W_max, here C scales
with W_max so that the plateau is always K seconds away: measured at 300
requests a second, a fixed C = 0.4 takes 6 s to regain the old rate and 14 s
to find the real one. Growth on the curve is capped at twice the measured
send rate, so a batch slowed by something else does not run up a rate it
never uses (slow start is not: an average lags a doubling far behind; its
wall is taken at no more than twice the rate sent lately instead); the cap
never goes below the rate the cut chose, so a batch-wide pause (every request
waiting out a Retry-After) does not collapse it. A 429 answering a request
sent before the last cut (plus GRACE, for requests already past the pacer) is
the old rate's echo, not news: it cuts nothing. After the first cut, a further
cut needs evidence of a wall, not of bad luck: at least MIN_THROTTLES 429s,
and more than DENSITY of the last WINDOW seconds' answers to requests sent
since the cut. A real limit exceeded by 10% passes that within a few answers;
a server that refuses 5% of requests at random, whatever the rate, mostly does
not, so it cannot grind the batch down to nothing.

The rate is enforced by ``Pacer``: requests take turns, first come first
served, and each is sent ``1 / rate`` after the previous one at the rate of
that moment (GCRA's virtual scheduling with no booking ahead, so a rate that
grows or is cut applies to everyone still waiting). aiolimiter's rate is fixed
at construction and it reads the event loop's clock, not an injected one, so
it keeps the fixed ``rate_limit`` ceiling and this small pacer the moving
rate.
"""

from __future__ import annotations

import asyncio
import collections
import enum

from .._retry import Clock, Sleep

__all__ = ["Pacer", "SendRate"]

BETA = 0.7
#: Seconds from a cut back to the rate that hit the wall.
K = 2.0
MIN_RATE = 0.5
#: A wait shorter than this is no wait (a clock's resolution).
TICK = 1e-6
#: Seconds per doubling of the rate in slow start (a cut with no rate to trust).
DOUBLING = 0.1
#: The longest the pacer sleeps before it reads the rate again.
NAP = DOUBLING
#: Seconds after a cut during which sends still count as the old rate's.
GRACE = 0.05
#: Accepted answers, and seconds since the first, before the accepted rate is trusted.
MIN_ACCEPTS = 5
MIN_SPAN = 0.5
#: After the first cut: 429s, and their share of answers since the cut, that make a wall.
MIN_THROTTLES = 1
DENSITY = 0.10
#: Seconds over which the send and accept rates are measured, in SLOTS slices.
WINDOW = 1.0
SLOTS = 10
#: Slices of the window over which the rates at a wall are measured.
RECENT = 3


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

    def count(self, now: float, slots: int = SLOTS) -> int:
        """
        Events in the last ``slots`` tenths of the window (all of it by default).
        """
        oldest = int(now * SLOTS / WINDOW) - slots
        return sum(c for c, slot in zip(self._counts, self._slots, strict=True) if slot > oldest)

    def per_second(self, now: float, slots: int = SLOTS) -> float:
        """
        The rate over the last ``slots`` slices, or since the first event if that is shorter.
        """
        if self.first is None:
            return 0.0
        # The counters cover the current slot so far and the slots - 1 before it.
        covered = now - (int(now * SLOTS / WINDOW) - slots + 1) * WINDOW / SLOTS
        return self.count(now, slots) / max(min(now - self.first, covered), 0.05)


class Phase(enum.Enum):
    """
    Where the batch's rate control stands.
    """

    #: The server has not pushed back: nothing is paced.
    UNTHROTTLED = enum.auto()
    #: Cut with no rate to trust yet: doubling until the next wall.
    SLOW_START = enum.auto()
    #: Cut from a measured rate: the cubic curve back to it and past.
    CUBIC = enum.auto()


class SendRate:
    """
    The batch's allowed sending rate, in requests per second; None while unthrottled.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sends = RateMeter()
        self._accepts = RateMeter()
        self.phase = Phase.UNTHROTTLED
        self._w_max = 0.0
        self._c = 0.0
        self._floor = MIN_RATE  # the rate the last cut chose
        self._burst = 0  # requests sent in the WINDOW before a cut into slow start
        self._grown = 0  # answers accepted in slow start, to requests sent since the cut
        self._cut_at = 0.0
        # (answered at, was it a 429) for requests sent since the last cut, last WINDOW s.
        self._recent: collections.deque[tuple[float, bool]] = collections.deque()
        self._refused = 0  # 429s in _recent
        #: Cuts so far.
        self.cuts = 0

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
        return self.phase is not Phase.UNTHROTTLED

    def allowed(self) -> float | None:
        """
        The rate to send at now; None before the first throttle.
        """
        if self.phase is Phase.UNTHROTTLED:
            return None
        now = self._clock()
        if self.phase is Phase.SLOW_START:
            # Not capped by the rate measured, which lags a doubling rate far
            # behind (a cap at twice it held the doubling to one per 0.4 s:
            # 6 s to find 500/s); growth needs accepted answers instead.
            return self._doubled()
        curve = self._c * (now - self._cut_at - K) ** 3 + self._w_max
        return max(min(curve, 2 * self.measured()), self._floor)

    def _start(self, now: float) -> float:
        """
        Slow start's first rate: BETA times the answers accepted over the last WINDOW, per WINDOW.

        At most the requests sent before the cut count: those sent after it,
        at the rate it chose, would otherwise raise that rate as they are
        accepted.
        """
        return max(BETA * min(self._accepts.count(now), self._burst) / WINDOW, MIN_RATE)

    def _doubled(self) -> float:
        """
        Slow start's rate: the start, plus 1 / DOUBLING for each answer accepted since the cut.
        """
        return self._floor + self._grown / DOUBLING

    def answered(self, sent_at: float, *, throttled: bool) -> None:
        """
        The server answered a request sent at ``sent_at``; cut the rate on a wall.
        """
        if not throttled:
            self._accepts.add(self._clock())
        if self.phase is Phase.UNTHROTTLED:
            if throttled:
                self._cut()
            return
        if sent_at < self._cut_at + GRACE:
            if self.phase is Phase.SLOW_START and not throttled:
                # The blind burst's answers come in any order: those accepted
                # after its first 429 are part of what its bucket held.
                self._floor = max(self._floor, self._start(self._clock()))
            return  # the old rate's echo
        if self.phase is Phase.SLOW_START and not throttled:
            self._grown += 1
        recent = self._recent
        now = self._clock()
        recent.append((now, throttled))
        self._refused += throttled
        while recent[0][0] < now - WINDOW:
            self._refused -= recent.popleft()[1]
        if throttled and self._refused >= MIN_THROTTLES and self._refused > DENSITY * len(recent):
            self._cut()

    def _cut(self) -> None:
        now = self._clock()
        if self.phase is Phase.SLOW_START:
            # Doubling outruns any average, which finds the wall far too low
            # (measured: 265/s for a 500/s limit): the wall is the rate the
            # doubling had reached, at most twice too high, as in TCP; a
            # further cut, from steady numbers, takes off the excess.
            # Capped at twice the rate sent lately, as the curve is in CUBIC:
            # a rate run up while something else held the batch back was
            # never the wall.
            rates = [self._doubled(), 2 * self._sends.per_second(now, RECENT)]
        else:
            # A token bucket accepts about its rate however much more is
            # sent, so the accepted rate finds a wall far below the send rate
            # in one cut. Over the last RECENT slices only: a rate that was
            # still growing a second ago averages out far below the wall.
            sent = _trusted(self._sends, now, 1)
            accepted = _trusted(self._accepts, now, MIN_ACCEPTS)
            rates = [r for r in (self.allowed(), sent, accepted) if r is not None]
        if rates:
            self.phase = Phase.CUBIC
            self._w_max = max(min(rates), MIN_RATE)
            self._c = self._w_max * (1 - BETA) / K**3
            self._floor = max(BETA * self._w_max, MIN_RATE)
        else:
            self.phase = Phase.SLOW_START
            self._burst = self._sends.count(now)
            self._floor = self._start(now)
            self._grown = 0
        self._cut_at = now
        self._recent.clear()
        self._refused = 0
        self.cuts += 1


def _trusted(meter: RateMeter, now: float, least: int) -> float | None:
    """
    The meter's rate over the last RECENT slices; None before MIN_SPAN seconds and ``least`` events.

    The first answers of a batch arrive together, a burst the server's bucket
    had saved up or the few answered before a 429: a rate over a few
    milliseconds of them is noise, and a cut to it takes seconds of growth
    to undo (measured: a 1,000/s limit found as 420/s).
    """
    if meter.first is None or now - meter.first < MIN_SPAN or meter.count(now, RECENT) < least:
        return None
    return meter.per_second(now, RECENT)


class Pacer:
    """
    Spaces requests at ``SendRate.allowed()``; nothing to wait for while it is None.
    """

    def __init__(self, rate: SendRate, *, clock: Clock, sleep: Sleep) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._turn = asyncio.Lock()  # FIFO: requests go in the order they came
        self._last = float("-inf")  # when the previous request's turn was

    async def wait(self) -> None:
        """
        Wait for this request's turn at the current rate.
        """
        if self._rate.allowed() is None:
            return
        async with self._turn:
            # The rate is read again after each sleep: a cut or growth while
            # this request waited applies to it, not only to later ones.
            while (rate := self._rate.allowed()) is not None:
                now = self._clock()
                at = self._last + 1 / rate
                # A timer may fire a hair before its time on a coarse clock
                # (or a simulated one that only moves when asked): on time.
                if at <= now + TICK:
                    # A late wake-up is made up for by the next request, but
                    # an idle spell does not bank a burst: at most one interval.
                    self._last = max(at, now - 1 / rate)
                    return
                # In naps of at most NAP: a rate that grows meanwhile (slow
                # start can double it every DOUBLING) shortens this wait too,
                # not only later ones (a first turn booked at slow start's
                # opening 0.5/s held every worker for 2 s).
                await self._sleep(min(at - now, NAP))
