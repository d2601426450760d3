"""
The socket front end: an aiohttp server on a real loopback port.

For the CLI, the demo, the soak suite and the benchmarks, which need real
connections: keep-alive, hang-ups and timeouts as a client meets them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .._checks import is_loopback
from ._wire import API_PREFIX, Handler

__all__ = ["STATS_PATH", "serve_on_loopback"]

#: Where the server answers with the fake's counters as JSON.
STATS_PATH = "/_fake/stats"


@contextlib.asynccontextmanager
async def serve_on_loopback(
    handle: Handler,
    *,
    stats: Callable[[], dict[str, Any]],
    keepalive_requests: Callable[[], int | None],
    host: str,
    port: int,
    idle_timeout: float,
) -> AsyncIterator[str]:
    """
    Serve ``handle`` on a loopback socket; yields the base URL, ending in the API prefix.

    ``stats`` answers ``STATS_PATH``; ``keepalive_requests`` is read per request,
    so a change of faults applies at once.
    """
    if not is_loopback(host):
        raise ValueError(f"the fake Vobiz listens on loopback only, not {host!r}")
    served_on: dict[int, int] = {}

    async def respond(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(stats())
        body = await request.read()
        answer = await handle(request.method, request.raw_path, request.headers, body)
        if answer is None:
            # Drop the connection with no response at all.
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        limit = keepalive_requests()
        if limit is not None:
            key = id(request.transport)
            served_on[key] = served_on.get(key, 0) + 1
            if served_on[key] >= limit:
                served_on.pop(key)
                response.force_close()
        return response

    # handler_cancellation: a request whose client hung up is dropped, as a
    # real server would; hung requests would otherwise pile up here.
    server = web.Server(
        respond, access_log=None, keepalive_timeout=idle_timeout, handler_cancellation=True
    )
    runner = web.ServerRunner(server, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound_port = _sockets(site)[0].getsockname()[1]
    netloc = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{netloc}:{bound_port}{API_PREFIX}"
    finally:
        await runner.cleanup()


def _sockets(site: web.TCPSite) -> list[Any]:
    """
    The listening sockets of a started site.
    """
    server = site._server  # aiohttp offers no public accessor for the bound port
    assert server is not None
    return list(server.sockets)  # type: ignore[attr-defined]
