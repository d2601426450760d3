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


async def peak_traced_bytes(count: int) -> int:
    """Stream `count` targets through an in-process transport; return the traced peak."""
    transport = httpx.MockTransport(lambda _: httpx.Response(204))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, transport=transport) as vobiz:
        gc.collect()
        tracemalloc.start()
        try:
            stopped = 0
            async for result in vobiz.iter_stop_many(generated(count), concurrency=100):
                stopped += result.outcome is Outcome.STOPPED
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert stopped == count
    return peak


@pytest.mark.slow
async def test_peak_memory_does_not_grow_with_target_count() -> None:
    """200,000 targets peak no higher than 20,000 do, give or take allocator noise."""
    small = await peak_traced_bytes(20_000)
    large = await peak_traced_bytes(200_000)
    print(f"peak traced memory: 20k={small / 2**20:.2f} MiB, 200k={large / 2**20:.2f} MiB")
    # Anything that kept one object per target would add >= 200,000 objects,
    # tens of MiB; noise between runs is well under one MiB.
    assert large < small + 2 * 2**20


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


async def teardown_peak(calls: int, *, live_page: int | None) -> int:
    """Tear down every live call, bot-3's streams and the recordings; the traced peak."""
    transport = stateless_api(calls, live_page=live_page)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, transport=transport) as vobiz:
        gc.collect()
        tracemalloc.start()
        try:
            stopped = 0
            async for result in vobiz.iter_teardown(streams_to=BOT_3, concurrency=100):
                stopped += result.outcome is Outcome.STOPPED
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert stopped == 2 * calls  # bot-3's stream and the recordings, on every call
    return peak


@pytest.mark.slow
async def test_teardown_memory_is_flat_in_the_number_of_calls() -> None:
    """
    10,000 live calls, each listed and torn down, peak no higher than 1,000 do.

    With a paged live list nothing is held per call: every listing, stop and
    result is let go as it completes. An unpaged live list (as documented) is
    one answer of every call: what it costs is that answer, nothing more.
    """
    small = await teardown_peak(1_000, live_page=500)
    large = await teardown_peak(10_000, live_page=500)
    unpaged = await teardown_peak(10_000, live_page=None)
    print(
        f"peak traced memory: 1k calls={small / 2**20:.2f} MiB, 10k={large / 2**20:.2f} MiB, "
        f"10k unpaged={unpaged / 2**20:.2f} MiB"
    )
    # One object kept per call would be >= 56 bytes, 500 KiB over 9,000 calls.
    assert large < small + 384 * 2**10
    # The one answer: its bytes, the parsed list and its de-duplication, ~210 bytes a call.
    assert unpaged < small + 10_000 * 256
