"""
Batch flow control: the adaptive rate, Retry-After as a floor, and the brakes.

The brakes stop a batch from hammering an API that has said no. The rate
arithmetic runs on an injected clock; the brakes run against respx or raw
loopback sockets. The rate control against a real token bucket is in
test_rate_limit.py.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
import respx
import trustme

from vobiz_async import (
    APIConnectError,
    AsyncVobiz,
    AuthenticationError,
    Outcome,
    RateLimitError,
    RetryPolicy,
    Stream,
    TLSCertificateError,
)
from vobiz_async._bulk.flow import (
    BETA,
    DOUBLING,
    GRACE,
    MIN_RATE,
    MIN_THROTTLES,
    NAP,
    WINDOW,
    K,
    Pacer,
    Phase,
    SendRate,
)

from .conftest import AUTH_ID, AUTH_TOKEN, NO_CONTENT, Behaviour, FakeTime, make_client


def streams(count: int, prefix: str = "c") -> list[Stream]:
    return [Stream(f"{prefix}{i}", f"s{i}") for i in range(count)]


# -- the adaptive rate ----------------------------------------------------------------


def sending_at(rate: SendRate, clock: FakeTime, per_second: float, seconds: float) -> None:
    """Note sends at `per_second` for `seconds`, moving the clock."""
    for _ in range(round(per_second * seconds)):
        clock.now += 1 / per_second
        rate.sent(clock.now)


def test_no_limit_until_the_server_pushes_back() -> None:
    """Before the first 429 the batch is not paced at all: the clean path pays nothing."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    assert rate.allowed() is None


def test_a_throttle_cuts_the_rate_to_beta_of_what_was_sent() -> None:
    """The cut is multiplicative, from the rate actually measured when it hit the wall."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    rate.answered(clock.now, throttled=True)
    allowed = rate.allowed()
    assert allowed is not None
    assert allowed == pytest.approx(BETA * 400, rel=0.02)


def test_the_old_rates_echo_cuts_nothing() -> None:
    """429s for requests sent before the cut (plus GRACE) are one wall, one cut."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    cut_at = clock.now
    rate.answered(cut_at, throttled=True)
    first = rate.allowed()
    for late in range(10):
        rate.answered(cut_at - 0.01 * late, throttled=True)
        rate.answered(cut_at + GRACE / 2, throttled=True)
    assert rate.allowed() == first
    for _ in range(MIN_THROTTLES):
        rate.answered(cut_at + GRACE * 2, throttled=True)
    second = rate.allowed()
    assert first is not None
    assert second is not None
    assert second < first


def test_refusals_at_random_are_not_a_wall() -> None:
    """After a cut, 5% of answers refused at random cuts nothing more; a real wall does."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    rate.answered(clock.now, throttled=True)
    cuts = rate.cuts
    sent_after = clock.now + GRACE * 2
    for i in range(400):
        rate.answered(sent_after, throttled=i % 20 == 19)
    assert rate.cuts == cuts
    clock.now += WINDOW * 2  # later, a real wall: most answers are 429s
    for i in range(10):
        rate.answered(sent_after, throttled=i % 2 == 0)
    assert rate.cuts > cuts


def test_the_rate_grows_back_to_the_old_one_in_k_seconds_then_probes_past() -> None:
    """Concave up to the rate that hit the wall, flat there, then convex beyond it."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    rate.answered(clock.now, throttled=True)
    seen: list[float] = []
    for _ in range(6):
        sending_at(rate, clock, 400, 0.5)  # keep the measured rate up: growth is capped at 2x
        allowed = rate.allowed()
        assert allowed is not None
        seen.append(allowed)
    assert seen == sorted(seen)
    at_k = seen[3]  # 2.0 s after the cut
    assert at_k == pytest.approx(400, rel=0.02)
    assert seen[1] - seen[0] > seen[3] - seen[2]  # fast while far below
    assert seen[5] > 400  # then probing past it


def test_growth_is_capped_at_twice_the_measured_rate() -> None:
    """A batch held back by something else does not run up a rate it never uses."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    rate.answered(clock.now, throttled=True)
    cut_to = rate.allowed()
    sending_at(rate, clock, 10, 5 * K)
    assert rate.allowed() == cut_to  # not the cubic's 5 K seconds of growth


def test_a_batch_wide_pause_does_not_collapse_the_rate() -> None:
    """
    Every request waiting out a Retry-After sends nothing for a second.

    The rate the cut chose still holds when they come back; it used to fall
    to twice "nothing" and take seconds to climb back.
    """
    clock = FakeTime()
    rate = SendRate(clock.clock)
    sending_at(rate, clock, 400, 1.0)
    rate.answered(clock.now, throttled=True)
    cut_to = rate.allowed()
    clock.now += WINDOW * 1.5
    assert cut_to == pytest.approx(BETA * 400, rel=0.02)
    assert rate.allowed() == cut_to


def test_a_wall_hit_at_the_start_is_found_by_doubling_not_guessed() -> None:
    """
    A 429 in the batch's first milliseconds has no rate to trust.

    The batch's first 100 requests go out in 10 ms into a bucket that holds 5.
    Slow start then begins at what the server accepted (BETA times 5 a
    second; the answers come in any order, some accepted after the first
    429), not at the 10,000/s the burst was sent at, which took a cascade of
    cuts and half of a batch's 429s to come down. The rate doubles every
    DOUBLING seconds, and the next wall is taken as the limit: the rate the
    doubling had reached, at most twice what was being sent.
    """
    clock = FakeTime()
    rate = SendRate(clock.clock)
    began = clock.now
    sending_at(rate, clock, 10_000, 0.01)  # the blind burst
    for _ in range(3):
        rate.answered(began, throttled=False)
    rate.answered(began, throttled=True)  # the first 429, then the rest of the burst
    phases = [rate.phase]
    assert rate.allowed() == pytest.approx(BETA * 3)
    for _ in range(2):
        rate.answered(began, throttled=False)
    for _ in range(95):
        rate.answered(began, throttled=True)
    start = rate.allowed()
    assert start is not None
    assert start == pytest.approx(BETA * 5)
    seen = [start]
    for _ in range(100):  # keeping up with the allowed rate, every send accepted
        allowed = rate.allowed()
        assert allowed is not None
        seen.append(allowed)
        if allowed >= 400:
            break
        sends = max(1, round(allowed * DOUBLING / 2))
        sending_at(rate, clock, sends / (DOUBLING / 2), DOUBLING / 2)
        for _ in range(sends):
            rate.answered(clock.now, throttled=False)
    assert seen == sorted(seen)
    assert clock.now - began < 1.5  # 400/s reached within a second or so
    reached = rate.allowed()
    assert reached is not None
    for _ in range(10):  # the wall: answers refused, past DENSITY of them
        rate.answered(clock.now, throttled=True)
        if rate.phase is not Phase.SLOW_START:
            break
    phases.append(rate.phase)
    assert phases == [Phase.SLOW_START, Phase.CUBIC]
    cut_to = rate.allowed()
    assert cut_to is not None
    assert BETA * reached / 2 < cut_to <= BETA * reached


async def test_a_wait_booked_at_a_low_rate_shortens_as_the_rate_grows() -> None:
    """
    Slow start opens at half a request a second when nothing was accepted.

    The third request's turn is booked 2 s ahead at that rate. Answers
    accepted meanwhile raise the rate, and the request goes out at the
    pacer's next look (NAP), not 2 s later with every other request queued
    behind it.
    """
    clock = FakeTime()
    rate = SendRate(clock.clock)
    pacer = Pacer(rate, clock=clock.clock, sleep=clock.sleep)
    rate.sent(clock.now)
    rate.answered(clock.now, throttled=True)
    assert rate.phase is Phase.SLOW_START
    assert rate.allowed() == pytest.approx(MIN_RATE)
    start = clock.now
    await pacer.wait()
    await pacer.wait()
    third = asyncio.create_task(pacer.wait())
    await asyncio.sleep(0)  # it is napping, its turn booked at 1 / MIN_RATE
    for _ in range(20):
        rate.answered(clock.now, throttled=False)
    await third
    assert clock.now - start == pytest.approx(NAP)


async def test_the_pacer_spaces_sends_at_the_rate_and_rebooks_after_a_cut() -> None:
    """Sends go out 1/rate apart; a cut makes sends booked at the old rate wait again."""
    clock = FakeTime()
    rate = SendRate(clock.clock)
    pacer = Pacer(rate, clock=clock.clock, sleep=clock.sleep)
    sending_at(rate, clock, 100, 1.0)
    rate.answered(clock.now, throttled=True)
    start = clock.now
    for _ in range(10):
        await pacer.wait()
    allowed = rate.allowed()
    assert allowed is not None
    assert clock.now - start == pytest.approx(9 / allowed, rel=0.1)


# -- Retry-After is a floor -----------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("0", id="zero"),
        pytest.param("-5", id="negative"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", id="date-in-the-past"),
    ],
)
async def test_retry_after_that_says_hurry_waits_the_backoff(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime, retry_after: str
) -> None:
    """Retry-After 0, negative or past is never a reason to retry at once."""
    route = router.delete("/Call/c/Stream/s/")
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": retry_after}),
        httpx.Response(204),
    ]
    await vobiz.stop_stream("c", "s")
    (slept,) = fake_time.sleeps
    assert slept >= 0.1


async def test_zero_retry_after_storm_does_not_burn_the_batch(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """200 targets against a second of 429 Retry-After: 0 all end stopped, without a flood."""

    def handler(request: httpx.Request) -> httpx.Response:
        if fake_time.now < start + 1.0:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(204)

    route = router.route(method="DELETE").mock(side_effect=handler)
    start = fake_time.now
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.stop_many(streams(200), concurrency=50)
    assert report.counts[Outcome.STOPPED] == 200
    assert route.call_count < 200 + 2 * 50


# -- brakes -------------------------------------------------------------------------


async def test_retry_after_past_the_cap_stops_the_batch_unsent(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """A Retry-After longer than max_retry_after fails the rest unsent with a RateLimitError."""
    route = router.route(method="DELETE").respond(429, headers={"Retry-After": "600"})
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.stop_many(streams(200), concurrency=10)
    assert route.call_count <= 10
    assert report.counts[Outcome.FAILED] == 200
    unsent = [r for r in report if r.attempts == 0]
    assert len(unsent) >= 190
    for result in unsent:
        assert isinstance(result.error, RateLimitError)
        assert result.error.brake is not None
        assert "max_retry_after" in result.error.brake
        assert str(result.error).startswith("not sent:")


async def test_a_brake_also_stops_retries_under_way(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """A target backing off after a 503 is not sent again once a 401 stopped the batch."""
    slow = router.delete("/Call/slow/Stream/s/")
    slow.side_effect = [httpx.Response(503), httpx.Response(204)]
    gate = asyncio.Event()

    async def refuse(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(401, json={"error": "Authentication failed"})

    router.delete("/Call/bad/Stream/s/").mock(side_effect=refuse)

    async def open_gate_then_sleep(seconds: float) -> None:
        gate.set()
        await asyncio.sleep(0.01)  # let the 401 land while this target backs off
        await fake_time.sleep(seconds)

    async with make_client(router, fake_time, sleep=open_gate_then_sleep) as vobiz:
        report = await vobiz.stop_many([Stream("slow", "s"), Stream("bad", "s")], concurrency=2)

    retried, refused = report.results
    assert slow.call_count == 1
    assert isinstance(retried.error, AuthenticationError)
    assert str(retried.error).startswith("not retried:")
    assert retried.attempts == 1
    assert isinstance(refused.error, AuthenticationError)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_wrong_base_url_ends_the_batch_in_seconds(fake_time: FakeTime) -> None:
    """Nothing listening: a few connect failures stop the batch; nobody grinds through it."""
    base_url = f"http://127.0.0.1:{closed_port()}/api/v1"
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=base_url, sleep=fake_time.sleep, clock=fake_time.clock
    ) as vobiz:
        started = time.monotonic()
        report = await vobiz.stop_many(streams(2000), concurrency=20)
        took = time.monotonic() - started
    assert report.counts[Outcome.FAILED] == 2000
    assert sum(r.attempts for r in report) <= 20 + 5
    assert all(isinstance(r.error, APIConnectError) for r in report)
    assert sum(1 for r in report if r.error is not None and r.error.brake) >= 1980
    assert took < 10


async def test_a_brake_keeps_the_operating_systems_reason(fake_time: FakeTime) -> None:
    """Targets a no-connection brake failed still say why nothing connected: refused."""
    base_url = f"http://127.0.0.1:{closed_port()}/api/v1"
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=base_url, sleep=fake_time.sleep, clock=fake_time.clock
    ) as vobiz:
        report = await vobiz.stop_many(streams(50), concurrency=5)
    braked = [r.error for r in report if r.error is not None and r.error.brake]
    assert braked
    assert all(isinstance(error.__cause__, ConnectionRefusedError) for error in braked)


async def test_once_anything_was_answered_an_outage_is_retried(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """After a first answer, connect failures are an outage to ride out, not a wrong address."""
    answered = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        answered += 1
        if 2 <= answered <= 7:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(204)

    router.route(method="DELETE").mock(side_effect=handler)
    policy = RetryPolicy(max_attempts=10)
    async with make_client(router, fake_time, retry=policy) as vobiz:
        report = await vobiz.stop_many(streams(5), concurrency=1)
    assert report.ok
    assert [r.attempts for r in report] == [1, 7, 1, 1, 1]


async def test_untrusted_certificate_is_never_retried_and_brakes_the_batch(
    raw_tls_server: Callable[[ssl.SSLContext], Awaitable[str]], fake_time: FakeTime
) -> None:
    """A certificate that fails verification fails the same way again: one request, no more."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    base_url = await raw_tls_server(server_context)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, sleep=fake_time.sleep) as vobiz:
        with pytest.raises(TLSCertificateError) as info:
            await vobiz.stop_stream("c", "s")
        report = await vobiz.stop_many(streams(50), concurrency=5)
    assert info.value.attempts == 1
    assert fake_time.sleeps == []
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert sum(r.attempts for r in report) <= 5
    assert all(isinstance(r.error, TLSCertificateError) for r in report)


# -- time queued in the client is not the server's fault -----------------------------


async def test_time_waiting_for_the_rate_limit_is_not_charged_to_the_deadline(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """rate_limit=20 for 30 targets takes 1.5 s; a 0.5 s deadline fails none of them."""

    async def ok(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(ok)
    policy = RetryPolicy(deadline=0.5)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, retry=policy) as vobiz:
        report = await vobiz.stop_many(streams(30), concurrency=30, rate_limit=20)
    assert report.ok, report.failed[:1]
    assert all(r.attempts == 1 for r in report)


async def test_time_waiting_for_a_pool_slot_is_not_charged_to_the_timeout(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """
    Eight stops on a pool of two against a server taking 0.3 s: none times out at 1 s.

    The last pair waits 0.9 s for its slots and takes 1.2 s in all: charged
    from the call rather than from the hand-off, it would time out. The 0.7 s
    between the server's latency and the timeout absorbs a loaded machine.
    """

    async def slow(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)  # the server's own latency, not a wait for the test
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(slow)
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=base_url,
        timeout=1.0,
        max_connections=2,
        retry=RetryPolicy(max_attempts=1),
    ) as vobiz:
        results = await asyncio.gather(*(vobiz.stop_stream(f"c{i}", "s") for i in range(8)))
    assert all(r.outcome is Outcome.STOPPED for r in results)
    assert all(r.attempts == 1 for r in results)
