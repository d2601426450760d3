"""
The flow control against a token bucket, on a simulated clock, 20 to 2,000 requests a second.

The real-socket tests (test_rate_limit.py) cannot go past a few hundred
requests a second on a two-core machine: the client and the fake share the
CPU, so the limit under test would be the machine's. Here the fake runs in
process and the event loop's clock is looptime's, which jumps ahead whenever
every task is waiting: the fake's latency, its token bucket's refill, the
pacer's spacing and each Retry-After all take simulated time and no real time,
and the CPU costs nothing. What is left is the algorithm against the limit,
at any rate, the same on every machine.
"""

from __future__ import annotations

import asyncio

import attrs
import looptime
import pytest

from vobiz_async import AsyncVobiz, Outcome, Stream
from vobiz_async.testing import FakeVobiz, Faults, RateLimit

pytestmark = pytest.mark.slow


@attrs.frozen
class Run:
    goodput: float  # targets stopped (or found gone) per simulated second
    share_429: float  # of all requests the fake saw
    failed: int
    stopped_twice: int

    def __str__(self) -> str:
        return f"goodput {self.goodput:.0f}/s, 429s {self.share_429:.1%}, {self.failed} FAILED"


def simulate(
    limit: float, retry_after: float | None, targets: int, *, latency: float = 0.02
) -> Run:
    """`stop_many` with its defaults over `targets` streams, against a limit it was not told."""
    loop = looptime.new_event_loop(start=0.0, noop_cycles=1)

    async def run() -> Run:
        bucket = RateLimit(rate=limit, burst=max(1, round(limit / 10)), retry_after=retry_after)
        fake = FakeVobiz(
            open_world=True,
            rate_limit=bucket,
            faults=Faults(latency=latency),
            record_requests=False,
            clock=loop.time,
        )
        async with AsyncVobiz(
            fake.auth_id,
            fake.auth_token,
            transport=fake.transport(),
            clock=loop.time,
            sleep=asyncio.sleep,
        ) as vobiz:
            started = loop.time()
            report = await vobiz.stop_many(
                (Stream(f"call-{i}", f"s-{i}") for i in range(targets)), concurrency=100
            )
            elapsed = loop.time() - started
        done = report.counts[Outcome.STOPPED] + report.counts[Outcome.NOT_FOUND]
        return Run(
            goodput=done / elapsed,
            share_429=fake.throttled_count / fake.request_count,
            failed=report.counts[Outcome.FAILED],
            stopped_twice=len(fake.stopped_more_than_once()),
        )

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


@pytest.mark.parametrize("retry_after", [1.0, None], ids=["retry-after", "no-retry-after"])
@pytest.mark.parametrize("limit", [20, 50, 100, 500, 1000, 2000])
def test_an_unknown_limit_is_found_at_any_rate(limit: int, retry_after: float | None) -> None:
    """
    The issue's targets from 20 to 2,000 requests a second, with and without Retry-After.

    Zero FAILED, goodput at least 80% of the limit, 429s at most 10% of the
    requests sent; at least eight seconds' worth of targets (and never fewer
    than 2,000), so the first burst and the last Retry-After are amortised
    as they would be in a real incident.
    """
    run = simulate(limit, retry_after, targets=max(2000, 8 * limit))
    assert run.failed == 0, run
    assert run.goodput >= 0.8 * limit, run
    assert run.share_429 <= 0.10, run
    assert run.stopped_twice == 0, run
