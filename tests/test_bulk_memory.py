"""
iter_stop_many and iter_teardown keep memory flat however many targets flow through them.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from vobiz_async import AsyncVobiz, Outcome, Stream

from .conftest import AUTH_ID, AUTH_TOKEN, BASE_URL


def generated(count: int) -> Iterator[Stream]:
    return (Stream(f"call-{i:08d}", f"stream-{i:08d}") for i in range(count))


class PeakTracer:
    """
    tracemalloc's peak, taken in segments: the warm-up's, then the rest's.

    Growth shows within one run: after the warm-up (pools, first pages, caches)
    the steady state's peak must not climb with every target that flows past.
    One run, not a small and a large one: tracemalloc makes each request ~5x
    slower, and the steady state is reached within a few hundred targets.
    """

    def __init__(self, warm_up: int) -> None:
        self.warm_up = warm_up
        self.seen = 0
        self.warm_peak = 0

    def __enter__(self) -> PeakTracer:
        gc.collect()
        tracemalloc.start()
        return self

    def __exit__(self, *_: object) -> None:
        tracemalloc.stop()

    def count(self) -> None:
        """One more result; at the end of the warm-up, note its peak and start afresh."""
        self.seen += 1
        if self.seen == self.warm_up:
            self.warm_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

    @property
    def steady_peak(self) -> int:
        """The peak since the warm-up ended."""
        assert self.seen > self.warm_up, "the run ended inside its warm-up"
        return tracemalloc.get_traced_memory()[1]


async def stream_peaks(count: int, *, warm_up: int) -> tuple[int, int]:
    """Stream `count` targets through an in-process transport: warm-up and steady peaks."""
    transport = httpx.MockTransport(lambda _: httpx.Response(204))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, transport=transport) as vobiz:
        stopped = 0
        with PeakTracer(warm_up) as tracer:
            async for result in vobiz.iter_stop_many(generated(count), concurrency=100):
                stopped += result.outcome is Outcome.STOPPED
                tracer.count()
            peaks = tracer.warm_peak, tracer.steady_peak
    assert stopped == count
    return peaks


@pytest.mark.slow
async def test_peak_memory_does_not_grow_with_target_count() -> None:
    """After 5,000 targets, 45,000 more raise the traced peak by no more than noise."""
    warm, steady = await stream_peaks(50_000, warm_up=5_000)
    print(f"peak traced memory: first 5k={warm / 2**20:.3f} MiB, next 45k={steady / 2**20:.3f} MiB")
    # Anything kept per target, even one 8-byte list slot, would add >= 350 KiB
    # over 45,000 targets; the peak moves by about a KiB between segments.
    assert steady < warm + 128 * 2**10


BOT_3 = "wss://bot-3.example.com/"


def call_uuid(i: int) -> str:
    return f"{i:08d}-0000-4000-8000-000000000000"


def stateless_api(calls: int, *, live_page: int | None) -> httpx.MockTransport:
    """
    A Vobiz that holds nothing: `calls` live calls, two streams each (one to bot-3).

    The live list comes in pages of `live_page` with meta.next, or in one answer.
    """

    def live(offset: int) -> httpx.Response:
        end = min(offset + (live_page or calls), calls)
        body: dict[str, object] = {"calls": [call_uuid(i) for i in range(offset, end)]}
        if live_page is not None:
            more = f"/Call/?status=live&offset={end}" if end < calls else None
            body["meta"] = {"next": more, "limit": live_page}
        return httpx.Response(200, json=body)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/Call/"):
            return live(int(request.url.params.get("offset", "0")))
        call = request.url.path.split("/Call/")[1].split("/")[0]
        objects = [
            {"stream_id": "a", "call_uuid": call, "service_url": "wss://bot-1/x"},
            {"stream_id": "b", "call_uuid": call, "service_url": BOT_3 + "y"},
        ]
        return httpx.Response(200, json={"meta": {"next": None}, "objects": objects})

    return httpx.MockTransport(handle)


async def teardown_peaks(calls: int, *, live_page: int | None, warm_up: int) -> tuple[int, int]:
    """Tear down every live call, bot-3's streams and the recordings: warm-up and steady peaks."""
    transport = stateless_api(calls, live_page=live_page)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, transport=transport) as vobiz:
        stopped = 0
        with PeakTracer(warm_up) as tracer:
            async for result in vobiz.iter_teardown(streams_to=BOT_3, concurrency=100):
                stopped += result.outcome is Outcome.STOPPED
                tracer.count()
            peaks = tracer.warm_peak, tracer.steady_peak
    assert stopped == 2 * calls  # bot-3's stream and the recordings, on every call
    return peaks


@pytest.mark.slow
async def test_teardown_memory_is_flat_in_the_number_of_calls() -> None:
    """
    10,000 live calls, each listed and torn down: the last 9,000 raise the peak by noise only.

    With a paged live list nothing is held per call: every listing, stop and
    result is let go as it completes. An unpaged live list (as documented) is
    one answer of every call: what it costs is that answer, nothing more.
    """
    # Two results a call: the first 1,000 calls are the warm-up.
    warm, steady = await teardown_peaks(10_000, live_page=500, warm_up=2_000)
    _, unpaged = await teardown_peaks(4_000, live_page=None, warm_up=2_000)
    print(
        f"peak traced memory: first 1k calls={warm / 2**20:.3f} MiB, "
        f"next 9k={steady / 2**20:.3f} MiB, 4k unpaged={unpaged / 2**20:.3f} MiB"
    )
    # One object kept per call would be >= 56 bytes, 500 KiB over 9,000 calls.
    # What does climb, ~60 KiB, is bounded: the warm-up has not seen every page
    # size yet, and urllib's urlsplit cache (128 entries) keeps each page's
    # next-URL until it is full.
    assert steady < warm + 128 * 2**10
    # The one answer: its bytes, the parsed list and its de-duplication, ~210 bytes a call.
    assert unpaged < warm + 4_000 * 256
