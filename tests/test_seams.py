"""
Where per-call limits, listings and telemetry meet.

Each of these failed after the three branches of issues 12 and 13 were merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from vobiz_async import (
    AsyncVobiz,
    ConfigurationError,
    Outcome,
    RetryPolicy,
)
from vobiz_async.testing import FakeVobiz

from .conftest import FakeTime, make_client

STREAMS_PATH = "/Call/call-1/Stream/"


@pytest.fixture
def spans() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    """An SDK tracer provider whose spans stay in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    provider.shutdown()


# -- a teardown's limits reach its listings -----------------------------


async def test_a_teardowns_retry_bounds_its_stream_listings(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """retry=RetryPolicy(max_attempts=1) on teardown: the listing is tried once, not five times."""
    route = router.get(STREAMS_PATH).respond(503, text="down")
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.teardown(
            ["call-1"],
            streams_to="wss://bot-3.example.com/",
            recordings=False,
            retry=RetryPolicy(max_attempts=1),
        )
    (result,) = report.results
    assert result.outcome is Outcome.FAILED
    assert route.call_count == 1
    assert result.attempts == 1


async def test_a_teardowns_timeout_reaches_the_transport_for_its_listings(
    fake_time: FakeTime,
) -> None:
    """teardown(timeout=0.5): the live-call GET goes out with a 0.5 s read timeout, not 10 s."""
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.extensions.get("timeout", {}).get("read")))
        if request.method == "GET":
            return httpx.Response(200, json={"api_id": "a", "calls": ["call-1"]})
        return httpx.Response(204)

    async with AsyncVobiz(
        "MA_TESTACCOUNT",
        "tok",
        base_url="https://api.vobiz.test/api/v1",
        transport=httpx.MockTransport(handler),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    ) as vobiz:
        await vobiz.teardown(timeout=0.5)
    assert seen[0] == ("GET", 0.5)
    assert {read for _, read in seen} == {0.5}


# -- a teardown that raises ends its span as an error ----------------


async def test_a_teardown_that_raises_marks_its_batch_span_as_an_error(
    router: respx.Router,
    fake_time: FakeTime,
    spans: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    """teardown() raises the live list's 503; the vobiz.teardown span must say it failed."""
    exporter, provider = spans
    router.get("/Call/").respond(503, text="down")
    async with make_client(
        router, fake_time, tracer_provider=provider, retry=RetryPolicy(max_attempts=1)
    ) as vobiz:
        with pytest.raises(Exception, match="503"):
            await vobiz.teardown()
    (batch,) = [s for s in exporter.get_finished_spans() if s.name == "vobiz.teardown"]
    assert batch.status.status_code is StatusCode.ERROR
    assert (batch.attributes or {}).get("error.type") == "503"


# -- a timeout no timer can arm is refused --------------------------


@pytest.mark.parametrize("seconds", [float("inf"), float("nan")], ids=["inf", "nan"])
async def test_a_timeout_no_timer_can_arm_is_refused_up_front(seconds: float) -> None:
    """
    timeout=inf or nan is a ConfigurationError, in the constructor and per call.

    It used to pass the checks, then fail every request on aiohttp's timer
    with a bare "OverflowError: cannot convert float infinity to integer".
    """
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        with pytest.raises(ConfigurationError, match="finite"):
            AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url, timeout=seconds)
        async with AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz:
            with pytest.raises(ConfigurationError, match="finite"):
                await vobiz.stop_stream("call-1", "s-1", timeout=seconds)
    assert fake.requests == []
