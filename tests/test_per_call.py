"""
Limits per call: timeout= and retry= on every stop and batch override the client's for that call.

A web handler and an incident run want different deadlines. With the defaults
a stop against a hung server holds its caller for about 52 s (five attempts
of 10 s, plus backoff); these tests run the same stops with a tight per-call
limit, on real loopback sockets, and check they give up within it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import respx

from vobiz_async import (
    AllStreams,
    APITimeoutError,
    AsyncVobiz,
    ConfigurationError,
    Outcome,
    RateLimitError,
    Recording,
    RetryPolicy,
    ServerError,
    Stream,
)
from vobiz_async.testing import FakeVobiz, Faults

from .conftest import AUTH_ID, AUTH_TOKEN, Behaviour, FakeTime, make_client

#: Far beyond any of these tests' limits, far below the 52 s the defaults allow.
GENEROUS = 10.0


async def silent(_: int, __: bytes, ___: asyncio.StreamWriter) -> None:
    """Accept the request and never answer it: a hung server."""


@pytest.fixture
async def hung(raw_server: Callable[[Behaviour], Awaitable[str]]) -> str:
    """The base URL of a server on 127.0.0.1 that accepts requests and never answers."""
    return await raw_server(silent)


def client(base_url: str, **kwargs: Any) -> AsyncVobiz:
    """The default client (own pool on aiohttp, default timeout and retry) on `base_url`."""
    return AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, **kwargs)


async def test_retry_deadline_bounds_a_stop_against_a_hung_server(hung: str) -> None:
    """A per-call deadline ends a stop that the client's defaults would hold for ~52 s."""
    async with client(hung) as vobiz:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as caught:
            await vobiz.stop_stream("call-1", "stream-1", retry=RetryPolicy(deadline=0.3))
        held = time.perf_counter() - started

    # The attempt's timeout shrank to the deadline; no second attempt fits in it.
    assert caught.value.attempts == 1
    assert "no response within 0.3s" in str(caught.value)
    assert held < GENEROUS
    assert vobiz.timeout == 10.0
    assert vobiz.retry.deadline == 60.0


async def test_timeout_bounds_each_attempt_of_one_call(hung: str) -> None:
    """timeout= is seconds per attempt for this call; retry= how many attempts it gets."""
    policy = RetryPolicy(max_attempts=2, wait_initial=0.01, wait_jitter=0)
    async with client(hung) as vobiz:
        started = time.perf_counter()
        with pytest.raises(APITimeoutError) as caught:
            await vobiz.stop_all_streams("call-1", timeout=0.1, retry=policy)
        held = time.perf_counter() - started

    assert caught.value.attempts == 2
    assert "no response within 0.1s" in str(caught.value)
    assert held < GENEROUS


async def test_stop_many_per_call_limits_fail_every_target_in_time(hung: str) -> None:
    """A batch against a hung server ends FAILED within its per-call limits, target by target."""
    targets = [Stream("call-1", f"s-{i}") for i in range(5)] + [Recording("call-2")]
    policy = RetryPolicy(max_attempts=2, wait_initial=0.01, wait_jitter=0)
    async with client(hung) as vobiz:
        started = time.perf_counter()
        report = await vobiz.stop_many(targets, timeout=0.1, retry=policy)
        held = time.perf_counter() - started

    assert report.counts[Outcome.FAILED] == len(targets)
    for result in report:
        assert isinstance(result.error, APITimeoutError)
        assert result.attempts == 2
    assert held < GENEROUS


async def test_iter_stop_many_per_call_limits(hung: str) -> None:
    """iter_stop_many takes the same per-call limits and streams the failures in time."""
    policy = RetryPolicy(max_attempts=1)
    async with client(hung) as vobiz:
        started = time.perf_counter()
        async with vobiz.iter_stop_many(
            [AllStreams(f"call-{i}") for i in range(3)], timeout=0.1, retry=policy
        ) as results:
            failed = [result async for result in results]
        held = time.perf_counter() - started

    assert [result.outcome for result in failed] == [Outcome.FAILED] * 3
    assert all(isinstance(result.error, APITimeoutError) for result in failed)
    assert held < GENEROUS


async def test_timeout_longer_than_the_clients_is_honoured_by_the_transport() -> None:
    """A call may allow more than the client's timeout: aiohttp's own read timeout follows it."""
    fake = FakeVobiz(open_world=True, faults=Faults(delay=1.0, delay_seconds=0.3))
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url, timeout=0.1) as vobiz,
    ):
        with pytest.raises(APITimeoutError):
            await vobiz.stop_stream("call-1", "s-1", retry=RetryPolicy(max_attempts=1))
        result = await vobiz.stop_stream(
            "call-1", "s-2", timeout=5.0, retry=RetryPolicy(max_attempts=1)
        )

    assert result.outcome is Outcome.STOPPED
    assert result.attempts == 1


# -- which stops take them, and that they do not stick ------------------------------


STOPS: list[tuple[str, Callable[..., Awaitable[Any]]]] = [
    ("stop_stream", lambda vobiz, **kw: vobiz.stop_stream("call-1", "stream-1", **kw)),
    ("stop_all_streams", lambda vobiz, **kw: vobiz.stop_all_streams("call-1", **kw)),
    ("stop_recording", lambda vobiz, **kw: vobiz.stop_recording("call-1", **kw)),
    ("stop", lambda vobiz, **kw: vobiz.stop(AllStreams("call-1"), **kw)),
]


@pytest.mark.parametrize("call", [stop for _, stop in STOPS], ids=[name for name, _ in STOPS])
async def test_every_stop_method_takes_retry_for_one_call_only(
    vobiz: AsyncVobiz,
    router: respx.Router,
    fake_time: FakeTime,
    call: Callable[..., Awaitable[Any]],
) -> None:
    """retry= changes the attempts of that call only; the next call has the client's policy."""
    route = router.route(method="DELETE").respond(503)

    with pytest.raises(ServerError) as once:
        await call(vobiz, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ServerError) as default:
        await call(vobiz)

    assert once.value.attempts == 2
    assert default.value.attempts == 5
    assert route.call_count == 7


async def test_stop_many_retry_for_one_batch_only(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime
) -> None:
    """A batch's retry= applies to each of its stops, and not to the next batch."""
    router.route(method="DELETE").respond(503)
    targets = [AllStreams("call-1"), AllStreams("call-2")]

    once = await vobiz.stop_many(targets, retry=RetryPolicy(max_attempts=1))
    default = await vobiz.stop_many(targets)

    assert [result.attempts for result in once] == [1, 1]
    assert [result.attempts for result in default] == [5, 5]


async def test_per_call_max_retry_after_fails_a_stop_at_once(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime
) -> None:
    """The call's policy decides what Retry-After is too long: it fails without sleeping."""
    router.route(method="DELETE").respond(429, headers={"Retry-After": "10"})

    with pytest.raises(RateLimitError) as caught:
        await vobiz.stop_stream("call-1", "s-1", retry=RetryPolicy(max_retry_after=5))

    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


async def test_per_call_max_retry_after_brakes_a_batch(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime
) -> None:
    """A batch's own max_retry_after trips its brake, where the client's (30 s) would wait."""
    route = router.route(method="DELETE").respond(429, headers={"Retry-After": "10"})
    targets = [AllStreams(f"call-{i}") for i in range(20)]

    report = await vobiz.stop_many(targets, concurrency=2, retry=RetryPolicy(max_retry_after=5))

    assert report.counts[Outcome.FAILED] == 20
    assert all(isinstance(result.error, RateLimitError) for result in report)
    assert route.call_count <= 2
    assert fake_time.sleeps == []


# -- bad values: the constructor's checks, before anything is sent ------------------

BAD_TIMEOUTS = [0, -1.0, math.nan, True, "5"]
BAD_RETRIES = [5, "fast", {"max_attempts": 1}]


def constructor_error(**kwargs: Any) -> str:
    """What the constructor says about the same bad value."""
    with pytest.raises(ConfigurationError) as caught:
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
@pytest.mark.parametrize("call", [stop for _, stop in STOPS], ids=[name for name, _ in STOPS])
async def test_bad_timeout_is_refused_as_the_constructor_refuses_it(
    router: respx.Router,
    fake_time: FakeTime,
    call: Callable[..., Awaitable[Any]],
    bad: object,
) -> None:
    """A bad per-call timeout raises the constructor's ConfigurationError, and sends nothing."""
    route = router.route(method="DELETE").respond(204)
    async with make_client(router, fake_time) as vobiz:
        with pytest.raises(ConfigurationError) as caught:
            await call(vobiz, timeout=bad)
    assert str(caught.value) == constructor_error(timeout=bad)
    assert route.call_count == 0


@pytest.mark.parametrize("retry", BAD_RETRIES, ids=repr)
async def test_bad_retry_is_refused_by_stops_and_batches(
    router: respx.Router, fake_time: FakeTime, retry: object
) -> None:
    """A per-call retry that is not a RetryPolicy is refused at the call, by every entry point."""
    route = router.route(method="DELETE").respond(204)
    expected = constructor_error(retry=retry)
    async with make_client(router, fake_time) as vobiz:
        with pytest.raises(ConfigurationError) as single:
            await vobiz.stop_stream("call-1", "s-1", retry=retry)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError) as batch:
            await vobiz.stop_many([AllStreams("call-1")], retry=retry)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError) as stream:
            vobiz.iter_stop_many([AllStreams("call-1")], retry=retry)  # type: ignore[arg-type]
    assert str(single.value) == str(batch.value) == str(stream.value) == expected
    assert route.call_count == 0


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
async def test_bad_timeout_is_refused_by_batches(
    router: respx.Router, fake_time: FakeTime, bad: object
) -> None:
    """stop_many and iter_stop_many refuse a bad timeout when called, not at the first result."""
    route = router.route(method="DELETE").respond(204)
    async with make_client(router, fake_time) as vobiz:
        with pytest.raises(ConfigurationError):
            await vobiz.stop_many([AllStreams("call-1")], timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            vobiz.iter_stop_many([AllStreams("call-1")], timeout=bad)  # type: ignore[arg-type]
    assert route.call_count == 0
