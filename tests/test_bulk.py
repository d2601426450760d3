"""
stop_many() and iter_stop_many(): order, bounds, pacing, brakes and cancellation.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
import respx

from vobiz_async import (
    AllStreams,
    APIConnectionError,
    AsyncVobiz,
    AuthenticationError,
    BadRequestError,
    InvalidTargetError,
    Outcome,
    Recording,
    RetryPolicy,
    ServerError,
    StopResult,
    Stream,
    Target,
)
from vobiz_async._bulk.gate import SLACK, ceiling

from .conftest import (
    AUTH_ID,
    AUTH_TOKEN,
    NO_CONTENT,
    Behaviour,
    FakeTime,
    SendPath,
    error_chain,
    make_client,
)


class InFlight:
    """
    An async respx side effect that counts concurrent requests and yields a while.
    """

    def __init__(self, *, yields: Callable[[httpx.Request], int] = lambda _: 3) -> None:
        self.now = 0
        self.peak = 0
        self.paths: list[str] = []
        self._yields = yields

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.paths.append(request.url.path)
        try:
            for _ in range(self._yields(request)):
                await asyncio.sleep(0)  # a scheduling point, not a wait: no time passes
        finally:
            self.now -= 1
        return httpx.Response(204)


def streams(count: int, prefix: str = "c") -> list[Stream]:
    return [Stream(f"{prefix}{i}", f"s{i}") for i in range(count)]


async def test_results_keep_input_order_when_completion_is_shuffled(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """report.results[i] belongs to targets[i], whatever order the answers came in."""
    rng = random.Random(7)
    shuffle = InFlight(yields=lambda _: rng.randrange(0, 20))
    router.route(method="DELETE").mock(side_effect=shuffle)
    targets = streams(200)

    report = await vobiz.stop_many(targets, concurrency=25)

    assert [r.target for r in report.results] == targets
    assert [r.target for r in report] == targets
    assert len(report) == 200
    completion = [p.split("/")[-3] for p in shuffle.paths]
    assert completion != [t.call_uuid for t in targets], "completion was not shuffled"


async def test_never_more_than_concurrency_in_flight(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The mock's own counter never sees more than `concurrency` requests at once."""
    counter = InFlight()
    router.route(method="DELETE").mock(side_effect=counter)

    report = await vobiz.stop_many(streams(300), concurrency=17)

    assert report.ok
    assert counter.peak == 17


async def test_input_is_consumed_lazily(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """A generator is read only as workers free up, never drained up front."""
    pulled = 0
    handled = 0
    worst_lead = 0

    def generate() -> Iterator[Stream]:
        nonlocal pulled
        for i in range(500):
            pulled += 1
            yield Stream(f"c{i}", "s")

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal handled, worst_lead
        worst_lead = max(worst_lead, pulled - handled)
        handled += 1
        await asyncio.sleep(0)
        return httpx.Response(204)

    router.route(method="DELETE").mock(side_effect=handler)
    report = await vobiz.stop_many(generate(), concurrency=10)

    assert len(report) == 500
    assert worst_lead <= 10


async def test_async_iterable_input_and_async_hook(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """Targets may come from an async generator; on_result may be a coroutine function."""
    router.route(method="DELETE").respond(204)
    seen: list[StopResult] = []

    async def generate() -> AsyncIterator[AllStreams]:
        for i in range(50):
            await asyncio.sleep(0)
            yield AllStreams(f"call-{i}")

    async def hook(result: StopResult) -> None:
        await asyncio.sleep(0)
        seen.append(result)

    report = await vobiz.stop_many(generate(), concurrency=8, on_result=hook)

    assert len(report) == 50
    assert sorted(seen, key=lambda r: int(r.target.call_uuid.split("-")[1])) == report.results


async def test_mixed_outcomes_are_all_accounted_for(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Every target has exactly one result, counted under its outcome."""
    router.delete("/Call/ok/Stream/s/").respond(204)
    router.delete("/Call/gone/Stream/s/").respond(
        404, json={"api_id": "a-404", "error": "Stream not found"}
    )
    router.delete("/Call/bad/Stream/s/").respond(400, json={"error": "bad"})
    router.delete("/Call/ok/Record/").respond(200)
    targets: list[Target] = [
        Stream("ok", "s"),
        Stream("gone", "s"),
        Stream("bad", "s"),
        Recording("ok"),
        Stream("", "s"),
    ]

    report = await vobiz.stop_many(targets, concurrency=3)

    assert [r.outcome for r in report] == [
        Outcome.STOPPED,
        Outcome.NOT_FOUND,
        Outcome.FAILED,
        Outcome.STOPPED,
        Outcome.FAILED,
    ]
    assert report.counts == {Outcome.STOPPED: 2, Outcome.NOT_FOUND: 1, Outcome.FAILED: 2}
    assert not report.ok
    assert [r.target for r in report.failed] == [Stream("bad", "s"), Stream("", "s")]
    assert isinstance(report.failed[0].error, BadRequestError)


async def test_errors_kept_in_batch_results_hold_no_frames(
    router: respx.Router, send_path: SendPath
) -> None:
    """
    A failed result's error, and the errors it chains to, carry no traceback.

    Thousands of kept tracebacks made full garbage collections stall the loop
    past deadlines; a single stop() still raises with its traceback.
    """
    route = router.delete("/Call/c/Stream/s/")
    route.side_effect = [httpx.RemoteProtocolError("dropped"), httpx.Response(503)]
    policy = RetryPolicy(max_attempts=2, wait_jitter=0)
    async with make_client(router, FakeTime(), path=send_path, retry=policy) as client:
        (kept,) = await client.stop_many([Stream("c", "s")])
        route.side_effect = [httpx.RemoteProtocolError("dropped"), httpx.Response(503)]
        with pytest.raises(ServerError) as raised:
            await client.stop_stream("c", "s")

    chain = error_chain(kept.error)
    assert [type(e) for e in chain][:2] == [ServerError, APIConnectionError]
    assert all(e.__traceback__ is None for e in chain)
    assert raised.value.__traceback__ is not None


async def test_invalid_targets_are_reported_and_never_sent(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Bad rows fail with InvalidTargetError; the good ones around them still go."""
    route = router.route(method="DELETE").respond(204)
    targets: list[object] = [
        Stream("good", "s"),
        Stream("a/b", "s"),
        Recording("c", url="ftp://x/y"),
        None,
        "not-a-target",
        AllStreams("fine"),
    ]

    report = await vobiz.stop_many(targets, concurrency=4)  # type: ignore[arg-type]

    assert route.call_count == 2
    assert [r.outcome for r in report] == [
        Outcome.STOPPED,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.STOPPED,
    ]
    for result in report.failed:
        assert isinstance(result.error, InvalidTargetError)
        assert result.attempts == 0


@pytest.mark.parametrize("rate_limit", [0.5, 50.0, 800.0, 5000.0])
async def test_the_ceiling_makes_up_a_late_wake_up_and_no_second_holds_more(
    rate_limit: float,
) -> None:
    """
    rate_limit holds SLACK seconds of requests: after a stall, that many go at once.

    A bucket of one lost every late wake-up for good (told an 800/s limit, a
    batch sent 65-69% of it). No more than ``rate_limit * SLACK`` (at least
    one) go together, and it leaks slower by as many less one, so no second
    holds more than a bucket of one let through: rate_limit + 1.
    """
    limiter = ceiling(rate_limit)
    together = max(1, round(rate_limit * SLACK))
    for _ in range(together):
        assert limiter.has_capacity()
        await limiter.acquire()  # at once: nothing to wait for
    # No more than that: the bucket's size (a has_capacity() now would race its leak).
    assert limiter.max_rate == together
    leak = limiter.max_rate / limiter.time_period
    assert limiter.max_rate + leak * 1.0 == pytest.approx(rate_limit + 1)


async def test_rate_limit_holds_over_every_sliding_window(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """No one-second window ever holds more than rate_limit requests, retries included."""
    loop = asyncio.get_running_loop()
    stamps: list[float] = []
    rng = random.Random(3)

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(loop.time())
        return httpx.Response(503 if rng.random() < 0.1 else 204)

    router.route(method="DELETE").mock(side_effect=handler)
    rate = 200.0
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.stop_many(streams(300), concurrency=50, rate_limit=rate)

    assert report.ok
    assert len(stamps) > 300, "expected some retries to be paced too"
    stamps.sort()
    worst = max(sum(1 for t in stamps[i:] if t < start + 1.0) for i, start in enumerate(stamps))
    assert worst <= rate
    # Paced, not bursty: the first window is no fuller than any other.
    assert sum(1 for t in stamps if t < stamps[0] + 0.1) <= rate * 0.1 + 1


class YieldingTime(FakeTime):
    """
    Lets the other tasks run before time moves, as a real sleep would.
    """

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)
        self.now += seconds


async def test_a_429_slows_the_whole_batch_and_costs_no_attempt(router: respx.Router) -> None:
    """
    One 429 cuts the batch's rate: sends are spaced after it, with no burst.

    Its target waits out Retry-After and is sent again without spending an
    attempt of its policy.
    """
    fake_time = YieldingTime()
    sent_at: list[tuple[str, float]] = []
    first = True

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal first
        sent_at.append((request.url.path, fake_time.now))
        if first:
            first = False
            return httpx.Response(429, headers={"Retry-After": "5"})
        return httpx.Response(204)

    router.route(method="DELETE").mock(side_effect=handler)
    policy = RetryPolicy(max_attempts=1)  # a spent attempt would fail the throttled target
    async with make_client(router, fake_time, retry=policy) as vobiz:
        report = await vobiz.stop_many(streams(40), concurrency=4)

    assert report.ok
    throttled_path, throttled_at = sent_at[0]
    (again,) = [at for path, at in sent_at[1:] if path == throttled_path]
    assert again >= throttled_at + 5
    assert report.results[0].attempts == 2  # requests sent, both of them
    # Paced after the cut: the sends are spread out in time, not all at once.
    assert len({at for _, at in sent_at}) > 20


async def test_bad_credentials_stop_the_batch_early(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """After a 401 the rest fail with that same error instead of thousands of doomed requests."""
    route = router.route(method="DELETE").respond(401, json={"error": "Invalid auth token"})
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.stop_many([*streams(1000), Stream("x/y", "s")], concurrency=10)

    assert route.call_count <= 10
    assert report.counts[Outcome.FAILED] == 1001
    unsent = [r for r in report.results[:-1] if r.attempts == 0]
    assert len(unsent) >= 990
    for result in unsent:
        # The same kind of error, saying it was never sent, naming no other call.
        assert isinstance(result.error, AuthenticationError)
        assert result.error.status_code == 401
        assert str(result.error).startswith("not sent:")
        assert "Invalid auth token" in str(result.error)
    assert isinstance(report.results[-1].error, InvalidTargetError)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        pytest.param({"concurrency": 0}, "concurrency", id="concurrency-zero"),
        pytest.param({"concurrency": -3}, "concurrency", id="concurrency-negative"),
        pytest.param({"concurrency": True}, "concurrency", id="concurrency-bool"),
        pytest.param({"rate_limit": 0}, "rate_limit", id="rate-zero"),
        pytest.param({"rate_limit": -1.5}, "rate_limit", id="rate-negative"),
    ],
)
async def test_bad_limits_raise_value_error_naming_the_argument(
    vobiz: AsyncVobiz, kwargs: dict[str, float], name: str
) -> None:
    """Both entry points refuse nonsense limits at the call, before any work."""
    with pytest.raises(ValueError, match=name):
        await vobiz.stop_many([], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        vobiz.iter_stop_many([], **kwargs)  # type: ignore[arg-type]


async def test_empty_input_gives_empty_report(vobiz: AsyncVobiz) -> None:
    """Nothing to do is a successful, empty report."""
    report = await vobiz.stop_many([])
    assert report.results == []
    assert report.ok
    assert report.counts == {Outcome.STOPPED: 0, Outcome.NOT_FOUND: 0, Outcome.FAILED: 0}


class Gate:
    """
    A respx side effect that answers the first `free` requests and holds the rest.
    """

    def __init__(self, free: int) -> None:
        self.free = free
        self.started = 0
        self.held = 0
        self.cancelled = 0
        self.release = asyncio.Event()
        self.all_held = asyncio.Event()
        self.expect_held = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.started += 1
        if self.started <= self.free:
            return httpx.Response(204)
        self.held += 1
        if self.held >= self.expect_held:
            self.all_held.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return httpx.Response(204)


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_cancelling_stop_many_cancels_in_flight_and_leaves_no_tasks(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Cancel mid-batch: in-flight requests end, CancelledError propagates, nothing is lost."""
    gate = Gate(free=30)
    gate.expect_held = 10
    router.route(method="DELETE").mock(side_effect=gate)
    delivered: list[StopResult] = []

    task = asyncio.create_task(
        vobiz.stop_many(streams(1000), concurrency=10, on_result=delivered.append)
    )
    await gate.all_held.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert gate.cancelled == 10
    assert len(delivered) == 30
    assert all(r.outcome is Outcome.STOPPED for r in delivered)
    assert other_tasks() == set()


async def test_breaking_out_of_iter_stop_many_closes_cleanly(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Leaving the loop early cancels the workers and their requests."""
    gate = Gate(free=5)
    gate.expect_held = 4
    router.route(method="DELETE").mock(side_effect=gate)

    stream = vobiz.iter_stop_many(streams(100), concurrency=4)
    got = []
    async for result in stream:
        got.append(result)
        if len(got) == 3:
            break
    await stream.aclose()

    assert len(got) == 3
    assert gate.started <= 5 + 4
    assert other_tasks() == set()


async def test_iter_stop_many_as_context_manager_cancels_on_exit(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Leaving `async with` cancels in-flight work at once: no task left, nothing more sent."""
    gate = Gate(free=5)
    gate.expect_held = 4
    router.route(method="DELETE").mock(side_effect=gate)

    got: list[StopResult] = []
    async with vobiz.iter_stop_many(streams(100), concurrency=4) as results:
        async for result in results:
            got.append(result)
            if len(got) == 3:
                break
        await gate.all_held.wait()
    sent_at_exit = gate.started
    assert other_tasks() == set()
    for _ in range(20):
        await asyncio.sleep(0)

    assert len(got) == 3
    assert gate.cancelled == 4
    assert gate.started == sent_at_exit


async def test_dropped_iterator_cancels_its_batch(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """A plain `async for ... break` with nothing holding the iterator: the batch is cancelled."""
    gate = Gate(free=5)
    gate.expect_held = 4
    router.route(method="DELETE").mock(side_effect=gate)

    async for _ in vobiz.iter_stop_many(streams(100), concurrency=4):
        await gate.all_held.wait()
        break
    for _ in range(5):
        await asyncio.sleep(0)

    assert gate.cancelled == 4
    assert other_tasks() == set()


async def test_iter_stop_many_yields_every_result_once(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Streaming gives the same set of results as the report would, each once."""
    router.route(method="DELETE").mock(side_effect=InFlight())
    targets = streams(120)
    hooked: list[StopResult] = []

    got = [r async for r in vobiz.iter_stop_many(targets, concurrency=9, on_result=hooked.append)]

    assert sorted(r.target.call_uuid for r in got) == sorted(t.call_uuid for t in targets)
    assert len(hooked) == 120


async def test_failing_hook_stops_the_batch_and_raises(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A bug in on_result is the caller's to see, not swallowed."""
    router.route(method="DELETE").respond(204)

    def hook(result: StopResult) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(ExceptionGroup) as info:
        await vobiz.stop_many(streams(5), on_result=hook)
    assert info.group_contains(RuntimeError, match="progress bar broke")
    with pytest.raises(ExceptionGroup):
        async for _ in vobiz.iter_stop_many(streams(5), on_result=hook):
            pass
    assert other_tasks() == set()


async def test_stop_many_on_closed_client_raises(router: respx.Router, fake_time: FakeTime) -> None:
    """A closed client refuses a batch up front rather than failing every target."""
    from vobiz_async import ClientClosedError

    client = make_client(router, fake_time)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.stop_many(streams(3))


async def test_own_pool_is_widened_to_the_batch_concurrency(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """A client built with a narrow pool still runs `concurrency` requests at once in a batch."""
    open_now = 0
    peak = 0
    reached = asyncio.Event()
    release = asyncio.Event()

    async def hold(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        if open_now == 12:
            reached.set()
            release.set()
        await release.wait()
        open_now -= 1
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(hold)
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=base_url, max_connections=2, retry=RetryPolicy(max_attempts=1)
    ) as vobiz:
        report = await asyncio.wait_for(vobiz.stop_many(streams(12), concurrency=12), 10)
        # The widening was the batch's: afterwards the pool is as built.
        assert vobiz.max_connections == 2

    assert reached.is_set()
    assert report.ok
    assert peak == 12


async def test_after_a_batch_the_pool_is_as_narrow_as_built(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """A batch widened the pool to 20; afterwards 20 single stops still run 2 at a time."""
    in_flight = 0
    peak = 0

    async def count(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)  # the server's own latency, so that requests overlap
        in_flight -= 1
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(count)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, max_connections=2) as vobiz:
        await vobiz.stop_many(streams(20), concurrency=20)
        peak = 0
        await asyncio.gather(*(vobiz.stop_stream(f"x{i}", "s") for i in range(20)))
    assert peak == 2


async def test_leaving_the_stream_block_raises_what_the_batch_raised(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A hook that failed after the consumer stopped reading: raised on leaving the block."""
    router.route(method="DELETE").respond(204)
    seen = 0

    def hook(_: StopResult) -> None:
        nonlocal seen
        seen += 1
        if seen == 2:
            raise RuntimeError("hook failed")

    async def read_one() -> None:
        async with vobiz.iter_stop_many(streams(10), concurrency=1, on_result=hook) as results:
            async for _ in results:
                await asyncio.sleep(0)  # let the batch run into the failing hook
                await asyncio.sleep(0)
                break

    with pytest.raises(ExceptionGroup) as info:
        await read_one()
    assert info.group_contains(RuntimeError, match="hook failed")


async def test_closing_the_stream_keeps_the_callers_cancellation(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A timeout around the block still fires while aclose() waits for the batch to stop."""
    release = asyncio.Event()

    async def slow_cleanup(_: StopResult) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # cleanup that outlasts the caller's timeout

    router.route(method="DELETE").respond(204)

    async def read_all_within_a_timeout() -> None:
        async with asyncio.timeout(0.05):
            results = vobiz.iter_stop_many(streams(5), concurrency=1, on_result=slow_cleanup)
            async with results:
                asyncio.get_running_loop().call_later(0.2, release.set)
                async for _ in results:
                    pass

    with pytest.raises(TimeoutError):
        await read_all_within_a_timeout()
