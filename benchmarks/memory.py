"""
Peak RSS of iter_stop_many over N targets, in a fresh process.

python -m benchmarks.memory --targets 500000 prints one JSON line. The
targets are generated lazily and the transport answers in process, so what
grows, if anything, is the library's own bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Iterator

import httpx

from vobiz_async import AsyncVobiz, Outcome, Stream


def generated(count: int) -> Iterator[Stream]:
    return (Stream(f"call-{i:09d}", f"stream-{i:09d}") for i in range(count))


async def run(count: int, concurrency: int) -> int:
    transport = httpx.MockTransport(lambda _: httpx.Response(204))
    stopped = 0
    async with AsyncVobiz("MA_BENCH", "bench-token", transport=transport) as vobiz:
        async for result in vobiz.iter_stop_many(generated(count), concurrency=concurrency):
            stopped += result.outcome is Outcome.STOPPED
    return stopped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    started = time.perf_counter()
    stopped = asyncio.run(run(args.targets, args.concurrency))
    assert stopped == args.targets, (stopped, args.targets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    wall = time.perf_counter() - started
    print(json.dumps({"targets": args.targets, "peak_rss": peak, "wall": wall}))


if __name__ == "__main__":
    main()
