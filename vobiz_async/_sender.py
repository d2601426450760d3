"""
Who sends the requests: our own pool, or the caller's ``httpx.AsyncClient``.

Both have one interface, so the client never asks which one it has.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["CallerClient", "OwnPool", "Sender", "default_transport"]


class Sender(Protocol):
    """
    Builds and sends requests; every response comes back with its whole (small) body read.
    """

    @property
    def capacity(self) -> int:
        """
        Requests in flight at most.
        """

    def build(
        self, method: str, url: str, *, headers: httpx.Headers, json: dict[str, Any] | None
    ) -> httpx.Request:
        """
        A request ready for ``send``.
        """

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        Send one request, never following a redirect.
        """

    def widen(self, size: int) -> None:
        """
        Allow at least ``size`` requests in flight, where the pool is ours to widen.
        """

    async def aclose(self) -> None:
        """
        Release the pool, where it is ours.
        """


def default_transport() -> httpx.AsyncBaseTransport:
    """
    The default: httpx on aiohttp, ten times plain httpx at 100 in flight (see benchmarks).
    """
    # limit=0 in aiohttp means "no limit": OwnPool's semaphore bounds it instead.
    return AiohttpTransport(
        limits=httpx.Limits(max_connections=None, keepalive_expiry=5.0),
        client=lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=5.0),
            timeout=aiohttp.ClientTimeout(total=None),
        ),
    )


class OwnPool:
    """
    Our own pool: requests go straight to the transport, bounded by a semaphore.

    Our client has no auth, cookies, event hooks or redirects by construction,
    so skipping httpx's client layer loses nothing, and that layer costs more
    CPU than aiohttp's whole request. The pool is bounded here rather than in
    aiohttp's connector because a semaphore can be widened for stop_many() and
    aiohttp's limit cannot.
    """

    def __init__(
        self, transport: httpx.AsyncBaseTransport, *, max_connections: int, timeout: float
    ) -> None:
        self.transport = transport
        self._slots = asyncio.Semaphore(max_connections)
        self._capacity = max_connections
        self._in_flight = 0
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}

    @property
    def capacity(self) -> int:
        """
        Requests in flight at most: as constructed, or as widened.
        """
        return self._capacity

    @property
    def in_flight(self) -> int:
        """
        Requests holding a pool slot right now.
        """
        return self._in_flight

    def build(
        self, method: str, url: str, *, headers: httpx.Headers, json: dict[str, Any] | None
    ) -> httpx.Request:
        """
        A bare request: our headers, the per-request timeout, nothing merged in.
        """
        return httpx.Request(method, url, headers=headers, json=json, extensions=self._extensions)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        Send through the transport while holding a pool slot; read the whole body.
        """
        async with self._slots:
            self._in_flight += 1
            try:
                response = await self.transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            finally:
                self._in_flight -= 1
        response.request = request
        return response

    def widen(self, size: int) -> None:
        """
        Grow the pool to ``size`` so that a wide batch never waits on it.
        """
        for _ in range(size - self._capacity):
            self._slots.release()
        self._capacity = max(self._capacity, size)

    async def aclose(self) -> None:
        """
        Close the transport and its connections.
        """
        await self.transport.aclose()


class CallerClient:
    """
    The caller's own ``httpx.AsyncClient``, used as given (hooks included) and never closed.
    """

    def __init__(self, client: httpx.AsyncClient, *, max_connections: int) -> None:
        self.client = client
        self._capacity = max_connections

    @property
    def capacity(self) -> int:
        """
        The ``max_connections`` the client was given: the caller's pool is theirs to size.
        """
        return self._capacity

    def build(
        self, method: str, url: str, *, headers: httpx.Headers, json: dict[str, Any] | None
    ) -> httpx.Request:
        """
        A request through the caller's client: its own headers, cookies and timeouts merge in.
        """
        return self.client.build_request(method, url, headers=headers, json=json)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        The client's full ``send()``, hooks included; never following a redirect.
        """
        return await self.client.send(request, follow_redirects=False)

    def widen(self, size: int) -> None:
        """
        Nothing: the caller's pool is theirs.
        """

    async def aclose(self) -> None:
        """
        Nothing: the caller's client is theirs to close.
        """
