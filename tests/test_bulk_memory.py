"""
iter_stop_many keeps memory flat however many targets flow through it.
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
