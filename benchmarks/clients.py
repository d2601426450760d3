"""
One benchmark client, run in a fresh process: python -m benchmarks.clients KIND ...

Each client sends N stop-stream DELETEs to the fake Vobiz with at most C in
flight and prints one JSON line: wall time, client CPU and peak RSS. Every
client must get a 2xx for every request, or the run is refused as invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

AUTH_ID = "MA_FAKEVOBIZ"
AUTH_TOKEN = "fake-vobiz-token"
HEADERS = {"X-Auth-ID": AUTH_ID, "X-Auth-Token": AUTH_TOKEN, "Accept": "application/json"}


def paths(base_url: str, tag: str, count: int) -> list[str]:
    return [
        f"{base_url}/Account/{AUTH_ID}/Call/{tag}-call-{i}/Stream/{tag}-stream-{i}/"
        for i in range(count)
    ]


async def run_stop_many(base_url: str, tag: str, count: int, concurrency: int) -> int:
    from vobiz_async import AsyncVobiz, Outcome, Stream

    targets = [Stream(f"{tag}-call-{i}", f"{tag}-stream-{i}") for i in range(count)]
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url) as vobiz:
        report = await vobiz.stop_many(targets, concurrency=concurrency)
    return report.counts[Outcome.STOPPED]


async def _gather_bounded(send: Callable[[str], object], urls: list[str], concurrency: int) -> int:
    """The way a user bounds a plain client: a semaphore around each request."""
    gate = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(url: str) -> None:
        nonlocal ok
        async with gate:
            status = await send(url)  # type: ignore[misc]
        ok += 200 <= status < 300

    await asyncio.gather(*(one(url) for url in urls))
    return ok


async def run_httpx(base_url: str, tag: str, count: int, concurrency: int) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=60) as client:

        async def send(url: str) -> int:
            return (await client.delete(url)).status_code

        return await _gather_bounded(send, paths(base_url, tag, count), concurrency)


async def run_httpx_aiohttp(base_url: str, tag: str, count: int, concurrency: int) -> int:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(headers=HEADERS, transport=transport, timeout=60) as client:

        async def send(url: str) -> int:
            return (await client.delete(url)).status_code

        return await _gather_bounded(send, paths(base_url, tag, count), concurrency)


async def run_aiohttp(base_url: str, tag: str, count: int, concurrency: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as session:

        async def send(url: str) -> int:
            async with session.delete(url) as response:
                await response.read()
                return response.status

        return await _gather_bounded(send, paths(base_url, tag, count), concurrency)


def run_vobiz_python(base_url: str, tag: str, count: int, concurrency: int) -> int:
    """The PyPI SDK has no stream stop: use its generic request, as its stop_recording does."""
    import vobiz

    client = vobiz.RestClient(AUTH_ID, AUTH_TOKEN)
    client.base_uri = f"{base_url}/Account"

    def one(i: int) -> int:
        client.request("DELETE", ("Call", f"{tag}-call-{i}", "Stream", f"{tag}-stream-{i}"))
        return 1  # the SDK raises on any non-2xx

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return sum(pool.map(one, range(count)))


ASYNC_CLIENTS = {
    "stop_many": run_stop_many,
    "httpx": run_httpx,
    "httpx_aiohttp": run_httpx_aiohttp,
    "aiohttp": run_aiohttp,
}
CLIENTS = [*ASYNC_CLIENTS, "vobiz_python"]
# Imported before the clock starts: import time is not what is being compared.
MODULES = {
    "stop_many": ["vobiz_async"],
    "httpx": ["httpx"],
    "httpx_aiohttp": ["httpx", "httpx_aiohttp"],
    "aiohttp": ["aiohttp"],
    "vobiz_python": ["vobiz"],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=CLIENTS)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tag", default="run")
    args = parser.parse_args()

    tag = f"{args.tag}-{args.kind}"
    for module in MODULES[args.kind]:
        importlib.import_module(module)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.kind == "vobiz_python":
        ok = run_vobiz_python(args.base_url, tag, args.requests, args.concurrency)
    else:
        runner = ASYNC_CLIENTS[args.kind]
        ok = asyncio.run(runner(args.base_url, tag, args.requests, args.concurrency))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if ok != args.requests:
        print(f"{args.kind}: only {ok} of {args.requests} succeeded", file=sys.stderr)
        return 1
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"kind": args.kind, "wall": wall, "cpu": cpu, "peak_rss": peak_rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
