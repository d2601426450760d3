"""
OpenTelemetry: spans and metrics for stops, batches and requests, from in-memory exporters.

The SDK's InMemorySpanExporter and InMemoryMetricReader read back what the
client emits against the fake Vobiz (or a raw server) on real loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import attrs
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from vobiz_async import (
    AllStreams,
    APITimeoutError,
    AsyncVobiz,
    ConfigurationError,
    Outcome,
    Recording,
    RetryPolicy,
    Stream,
)
from vobiz_async.testing import FakeVobiz, Faults

from .conftest import AUTH_ID, AUTH_TOKEN, Behaviour, FakeTime

STREAM_TEMPLATE = "/api/v1/Account/{auth_id}/Call/{call_uuid}/Stream/{stream_id}/"
ALL_STREAMS_TEMPLATE = "/api/v1/Account/{auth_id}/Call/{call_uuid}/Stream/"


@attrs.define
class Otel:
    """An SDK tracer and meter provider whose spans and metrics stay in memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.kind is SpanKind.CLIENT]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            if scope.scope.name == "vobiz_async"
            for metric in scope.metrics
        }

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Each data point of a metric: its attributes, and its value (a sum) or count."""
        points = self.metrics()[name].data.data_points
        return [
            (dict(p.attributes or {}), getattr(p, "value", None) or getattr(p, "count", None))
            for p in points
        ]


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Fresh in-memory providers per test, passed to the client (never set globally)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
async def fake_url() -> AsyncIterator[tuple[FakeVobiz, str]]:
    """The fake Vobiz on a loopback socket, every stream existing until stopped."""
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        yield fake, base_url


def traced(otel: Otel, base_url: str | None, *, auth: tuple[str, str], **kwargs: Any) -> AsyncVobiz:
    return AsyncVobiz(
        *auth,
        base_url=base_url,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        **kwargs,
    )


async def test_a_stop_is_a_span_with_a_client_span_per_request(
    otel: Otel, fake_url: tuple[FakeVobiz, str]
) -> None:
    """One INTERNAL span for the stop, a CLIENT child per request, in the HTTP conventions."""
    fake, base_url = fake_url
    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        await vobiz.stop_stream("call-1", "stream-1")

    (stop,) = otel.named("vobiz.stop_stream")
    (request,) = otel.client_spans()
    port = int(base_url.split(":")[2].split("/")[0])
    assert stop.kind is SpanKind.INTERNAL
    assert dict(stop.attributes or {}) == {
        "vobiz.target.kind": "stream",
        "vobiz.call_uuid": "call-1",
        "vobiz.stream_id": "stream-1",
        "vobiz.outcome": "stopped",
        "vobiz.attempts": 1,
    }
    assert stop.status.status_code is StatusCode.UNSET
    assert request.name == f"DELETE {STREAM_TEMPLATE}"
    assert request.parent is not None
    assert request.parent.span_id == stop.context.span_id
    assert dict(request.attributes or {}) == {
        "http.request.method": "DELETE",
        "url.template": STREAM_TEMPLATE,
        "url.full": f"{base_url}/Account/{fake.auth_id}/Call/call-1/Stream/stream-1/",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 204,
    }
    assert request.status.status_code is StatusCode.UNSET


async def test_a_404_stop_is_not_an_error(otel: Otel, fake_url: tuple[FakeVobiz, str]) -> None:
    """Stopping what is already stopped: a 404 with no error.type and the status left unset."""
    fake, base_url = fake_url
    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        await vobiz.stop_stream("call-1", "stream-1")
        result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.NOT_FOUND
    second_request = otel.client_spans()[1]
    second_stop = otel.named("vobiz.stop_stream")[1]
    assert second_request.attributes is not None
    assert second_request.attributes["http.response.status_code"] == 404
    assert "error.type" not in second_request.attributes
    assert second_request.status.status_code is StatusCode.UNSET
    assert second_stop.attributes is not None
    assert second_stop.attributes["vobiz.outcome"] == "not_found"
    assert second_stop.status.status_code is StatusCode.UNSET


def flaky(failures: int) -> Behaviour:
    """Answer the first `failures` requests 503, then 204."""

    async def reply(count: int, _: bytes, writer: asyncio.StreamWriter) -> None:
        status = b"503 Service Unavailable" if count <= failures else b"204 No Content"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    return reply


async def test_retries_are_resends_with_their_reason(
    otel: Otel, raw_server: Callable[[Behaviour], Awaitable[str]], fake_time: FakeTime
) -> None:
    """Two 503s then a stop: resend_count 1 and 2, error.type "503", and two retries counted."""
    base_url = await raw_server(flaky(2))
    async with traced(
        otel, base_url, auth=(AUTH_ID, AUTH_TOKEN), sleep=fake_time.sleep, clock=fake_time.clock
    ) as vobiz:
        result = await vobiz.stop_all_streams("call-1")

    assert result.attempts == 3
    requests = otel.client_spans()
    assert [span.name for span in requests] == [f"DELETE {ALL_STREAMS_TEMPLATE}"] * 3
    attributes = [dict(span.attributes or {}) for span in requests]
    assert [a.get("http.request.resend_count") for a in attributes] == [None, 1, 2]
    assert [a.get("error.type") for a in attributes] == ["503", "503", None]
    assert [a["http.response.status_code"] for a in attributes] == [503, 503, 204]
    assert [span.status.status_code for span in requests] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    # The status code says why: no description repeats it.
    assert requests[0].status.description is None
    (stop,) = otel.named("vobiz.stop_all_streams")
    assert all(span.parent and span.parent.span_id == stop.context.span_id for span in requests)

    assert otel.points("vobiz.retries") == [
        ({"vobiz.retry.reason": "503", "vobiz.target.kind": "all_streams"}, 2)
    ]
    assert otel.points("vobiz.stops") == [
        ({"vobiz.outcome": "stopped", "vobiz.target.kind": "all_streams"}, 1)
    ]
    durations = otel.metrics()["http.client.request.duration"]
    assert durations.unit == "s"
    counted = {
        (p["http.response.status_code"], p.get("error.type")): n
        for p, n in otel.points("http.client.request.duration")
    }
    assert counted == {(503, "503"): 2, (204, None): 1}
    for point, _ in otel.points("http.client.request.duration"):
        assert point["url.template"] == ALL_STREAMS_TEMPLATE
        assert point["http.request.method"] == "DELETE"
        assert point["server.address"] == "127.0.0.1"
        assert "url.full" not in point  # high cardinality: spans only


async def test_a_timeout_is_an_error_named_by_its_class(
    otel: Otel, raw_server: Callable[[Behaviour], Awaitable[str]]
) -> None:
    """No answer: no status code, error.type the error's class, the stop's span FAILED."""

    async def silent(_: int, __: bytes, ___: asyncio.StreamWriter) -> None:
        return None

    base_url = await raw_server(silent)
    async with traced(otel, base_url, auth=(AUTH_ID, AUTH_TOKEN)) as vobiz:
        with pytest.raises(APITimeoutError):
            await vobiz.stop_recording("call-1", timeout=0.05, retry=RetryPolicy(max_attempts=1))

    (request,) = otel.client_spans()
    assert request.attributes is not None
    assert request.attributes["error.type"] == "vobiz_async.APITimeoutError"
    assert "http.response.status_code" not in request.attributes
    assert request.status.status_code is StatusCode.ERROR
    assert request.status.description is not None
    assert "no response within 0.05s" in request.status.description
    (stop,) = otel.named("vobiz.stop_recording")
    assert stop.attributes is not None
    assert stop.attributes["vobiz.outcome"] == "failed"
    assert stop.attributes["error.type"] == "vobiz_async.APITimeoutError"
    assert stop.status.status_code is StatusCode.ERROR
    assert otel.points("vobiz.stops") == [
        (
            {
                "vobiz.outcome": "failed",
                "vobiz.target.kind": "recording",
                "error.type": "vobiz_async.APITimeoutError",
            },
            1,
        )
    ]


@pytest.mark.parametrize("entry", ["stop_many", "iter_stop_many"])
async def test_a_batch_is_a_span_over_its_stops(
    otel: Otel, fake_url: tuple[FakeVobiz, str], entry: str
) -> None:
    """stop_many and iter_stop_many: one span each, the parent of every stop, with the tally."""
    fake, base_url = fake_url
    targets = [Stream("call-1", "s-1"), AllStreams("call-2"), Recording("call-3"), "bad"]
    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        if entry == "stop_many":
            await vobiz.stop_many(targets, concurrency=2)  # type: ignore[arg-type]
        else:
            async with vobiz.iter_stop_many(targets, concurrency=2) as results:  # type: ignore[arg-type]
                async for _ in results:
                    pass

    (batch,) = otel.named(f"vobiz.{entry}")
    assert dict(batch.attributes or {}) == {
        "vobiz.batch.concurrency": 2,
        "vobiz.batch.targets": 4,
        "vobiz.batch.stopped": 3,
        "vobiz.batch.not_found": 0,
        "vobiz.batch.failed": 1,
    }
    stops = [s for s in otel.finished() if s.kind is SpanKind.INTERNAL and s is not batch]
    assert sorted(span.name for span in stops) == [
        "vobiz.stop",  # the invalid target: no kind, no request
        "vobiz.stop_all_streams",
        "vobiz.stop_recording",
        "vobiz.stop_stream",
    ]
    assert all(span.parent and span.parent.span_id == batch.context.span_id for span in stops)
    assert len(otel.client_spans()) == 3


async def test_stops_nest_in_the_callers_span(otel: Otel, fake_url: tuple[FakeVobiz, str]) -> None:
    """A stop inside the caller's own span (a web request, a bot turn) is its child."""
    fake, base_url = fake_url
    tracer = otel.tracer_provider.get_tracer("app")
    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        with tracer.start_as_current_span("hang up"):
            await vobiz.stop_stream("call-1", "stream-1")

    (handler,) = otel.named("hang up")
    (stop,) = otel.named("vobiz.stop_stream")
    assert stop.parent is not None
    assert stop.parent.span_id == handler.context.span_id


class SpyTransport(httpx.AsyncBaseTransport):
    """The fake's in-process transport, noting the current span at each request."""

    def __init__(self, fake: FakeVobiz) -> None:
        self.inner = fake.transport()
        self.current: list[trace.Span] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.current.append(trace.get_current_span())
        return await self.inner.handle_async_request(request)


async def test_the_request_span_is_current_while_the_transport_sends(otel: Otel) -> None:
    """What the transport does (an aiohttp instrumentor's span) nests under our request span."""
    fake = FakeVobiz(open_world=True)
    spy = SpyTransport(fake)
    async with traced(otel, None, auth=(fake.auth_id, fake.auth_token), transport=spy) as vobiz:
        await vobiz.stop_stream("call-1", "stream-1")

    (request,) = otel.client_spans()
    assert [span.get_span_context().span_id for span in spy.current] == [request.context.span_id]


async def test_a_cancelled_stop_ends_its_spans(
    otel: Otel,
) -> None:
    """A stop cancelled mid-request leaves no span open: both end, saying it was cancelled."""
    fake = FakeVobiz(open_world=True, faults=Faults(hang=1.0))
    async with (
        fake.serve() as base_url,
        traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz,
    ):
        task = asyncio.create_task(vobiz.stop_stream("call-1", "stream-1"))
        await fake.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    (request,) = otel.client_spans()
    (stop,) = otel.named("vobiz.stop_stream")
    for span in (request, stop):
        assert span.attributes is not None
        assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"


async def test_the_token_is_never_an_attribute(
    otel: Otel, raw_server: Callable[[Behaviour], Awaitable[str]], fake_time: FakeTime
) -> None:
    """A server echoing our request headers: nothing exported holds the token, in any form."""

    async def echo(_: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
        body = b" ".join(line for line in head if line.lower().startswith(b"x-auth-token"))
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()

    base_url = await raw_server(echo)
    async with traced(
        otel, base_url, auth=(AUTH_ID, AUTH_TOKEN), sleep=fake_time.sleep, clock=fake_time.clock
    ) as vobiz:
        report = await vobiz.stop_many([Stream("call-1", "s-1"), AllStreams("call-2")])

    assert report.counts[Outcome.FAILED] == 2
    exported = [span.to_json() for span in otel.finished()]
    data = otel.reader.get_metrics_data()
    assert data is not None
    exported.append(data.to_json())
    pieces = {AUTH_TOKEN[i : i + 8] for i in range(len(AUTH_TOKEN) - 7)}
    for text in exported:
        for piece in pieces:
            assert piece not in text
    assert any("***" in text for text in exported)  # the echo was there, masked


def test_providers_must_be_opentelemetry_providers() -> None:
    """A provider of the wrong kind is refused at construction."""
    with pytest.raises(ConfigurationError, match="tracer_provider must be"):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, tracer_provider=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="meter_provider must be"):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, meter_provider=object())  # type: ignore[arg-type]


WITHOUT_OTEL = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed

    from vobiz_async import AllStreams, AsyncVobiz, ConfigurationError
    from vobiz_async.testing import FakeVobiz

    async def main():
        fake = FakeVobiz(open_world=True)
        seen = []
        async with AsyncVobiz(
            fake.auth_id, fake.auth_token, transport=fake.transport(), on_attempt=seen.append
        ) as vobiz:
            result = await vobiz.stop_stream("call-1", "stream-1")
        # Nothing watching at all: the clean path.
        async with AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport()) as vobiz:
            report = await vobiz.stop_many(["bad", AllStreams("call-2")])
        try:
            AsyncVobiz(fake.auth_id, fake.auth_token, tracer_provider=object())
        except ConfigurationError as exc:
            refused = str(exc)
        print(json.dumps({
            "outcome": result.outcome,
            "attempts": len(seen),
            "batch": [r.outcome for r in report],
            "refused": refused,
            "otel": [name for name in sys.modules if name.startswith("opentelemetry.")],
        }))

    asyncio.run(main())
    """
)


def test_without_the_opentelemetry_api_nothing_is_traced_and_stops_work() -> None:
    """No API installed: the import is guarded, stops and on_attempt work, providers refused."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["outcome"] == "stopped"
    assert out["attempts"] == 1
    assert out["batch"] == ["failed", "stopped"]
    assert "pip install 'vobiz-async[otel]'" in out["refused"]
    assert out["otel"] == []


async def test_an_unsampled_stop_records_metrics_and_no_spans(
    fake_url: tuple[FakeVobiz, str],
) -> None:
    """With spans sampled out, nothing is traced (no request spans either) but metrics count."""
    fake, base_url = fake_url
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    otel = Otel(spans, reader, tracer_provider, MeterProvider(metric_readers=[reader]))
    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        await vobiz.stop_many([Stream("call-1", "s-1"), AllStreams("call-2")])

    assert otel.finished() == []
    assert sorted(n for _, n in otel.points("vobiz.stops")) == [1, 1]
    assert sum(n for _, n in otel.points("http.client.request.duration")) == 2


async def test_a_stream_left_early_is_not_an_error(
    otel: Otel, fake_url: tuple[FakeVobiz, str]
) -> None:
    """Leaving iter_stop_many's block early cancels the batch: its span says so, without ERROR."""
    fake, base_url = fake_url
    targets = [AllStreams(f"call-{i}") for i in range(50)]
    async with (
        traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz,
        vobiz.iter_stop_many(targets, concurrency=2) as results,
    ):
        async for _ in results:
            break

    (batch,) = otel.named("vobiz.iter_stop_many")
    assert batch.attributes is not None
    assert batch.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    done = batch.attributes["vobiz.batch.targets"]
    assert isinstance(done, int)
    assert done < 50
    assert batch.status.status_code is StatusCode.UNSET


async def test_a_batch_stopped_by_its_input_is_an_error(
    otel: Otel, fake_url: tuple[FakeVobiz, str]
) -> None:
    """An input that raises stops the batch: its span ends ERROR, naming the exception."""
    fake, base_url = fake_url

    def targets() -> Iterator[AllStreams]:
        yield AllStreams("call-1")
        raise OSError("the input file went away")

    async with traced(otel, base_url, auth=(fake.auth_id, fake.auth_token)) as vobiz:
        with pytest.raises(ExceptionGroup):
            await vobiz.stop_many(targets())

    (batch,) = otel.named("vobiz.stop_many")
    assert batch.status.status_code is StatusCode.ERROR
    assert batch.attributes is not None
    assert batch.attributes["error.type"] == "builtins.OSError"
