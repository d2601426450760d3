"""
Who sends the requests: our own pool, or the caller's ``httpx.AsyncClient``.

Both have one interface, so the client never asks which one it has.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from ._exceptions import MAX_BODY

__all__ = ["MAX_BODY", "CallerClient", "OwnPool", "Sender", "default_transport"]


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
        self,
        method: str,
        url: str,
        *,
        headers: httpx.Headers,
        json: dict[str, Any] | None,
        timeout: float,
    ) -> httpx.Request:
        """
        A request ready for ``send``, whose attempts may take ``timeout`` seconds each.
        """

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Hold a place in the pool; ``send`` only inside it.
        """

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        Send one request, never following a redirect.
        """

    def lease(self) -> Lease:
        """
        A claim to a wider pool for one batch, released when the batch ends.
        """

    async def aclose(self) -> None:
        """
        Release the pool, where it is ours.
        """


class Lease(Protocol):
    """
    One batch's claim on the pool: the pool is as wide as its widest open lease.
    """

    def grow_to(self, size: int) -> None:
        """
        Claim room for ``size`` requests in flight.
        """

    def release(self) -> None:
        """
        Give the claim back; the pool narrows as its requests finish.
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
    Our own pool: requests go straight to the transport, at most ``capacity`` at once.

    Our client has no auth, cookies, event hooks or redirects by construction,
    so skipping httpx's client layer loses nothing, and that layer costs more
    CPU than aiohttp's whole request. The pool is bounded here rather than in
    aiohttp's connector because a batch widens it and aiohttp's limit cannot
    change. It is a semaphore whose size can change: a request takes a slot
    while fewer than ``capacity`` are taken, else waits its turn (FIFO).
    """

    def __init__(
        self, transport: httpx.AsyncBaseTransport, *, max_connections: int, timeout: float
    ) -> None:
        self.transport = transport
        self._base = max_connections
        self._capacity = max_connections
        self._leases: list[_PoolLease] = []
        self._in_flight = 0
        # Waiters for a slot, oldest first; each is handed its slot when woken.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._slot = _Slot(self)
        self._timeout = timeout
        self._extensions = _timeout_extension(timeout)

    @property
    def capacity(self) -> int:
        """
        Requests in flight at most: as constructed, or as widened by an open batch.
        """
        return self._capacity

    @property
    def in_flight(self) -> int:
        """
        Requests holding a pool slot right now.
        """
        return self._in_flight

    def build(
        self,
        method: str,
        url: str,
        *,
        headers: httpx.Headers,
        json: dict[str, Any] | None,
        timeout: float,
    ) -> httpx.Request:
        """
        A bare request: our headers, the attempt's timeout, nothing merged in.

        The transport enforces the timeout it finds on the request (aiohttp's
        socket read timeout), so a call that allows more than the client's
        timeout must say so on its request, or the transport cuts it short.
        """
        extensions = self._extensions if timeout == self._timeout else _timeout_extension(timeout)
        return httpx.Request(method, url, headers=headers, json=json, extensions=extensions)

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Wait for a free place in the pool and hold it.
        """
        return self._slot

    async def take_slot(self) -> None:
        """
        Wait for a free place in the pool and take it (``slot()`` does this for you).
        """
        if self._in_flight < self._capacity and not self._waiters:
            self._in_flight += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # _wake counted this request in before waking it
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give_slot()  # woken and cancelled at once: pass the slot on
            else:
                self._waiters.remove(turn)
            raise

    def give_slot(self) -> None:
        """
        Give a place back, to the longest waiter if there is one.
        """
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._capacity:
            turn = self._waiters.popleft()
            if not turn.done():
                self._in_flight += 1
                turn.set_result(None)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        Send through the transport (inside ``slot()``); read at most MAX_BODY.
        """
        response = await self.transport.handle_async_request(request)
        response.request = request
        return await read_capped(response)

    def lease(self) -> Lease:
        """
        A claim to widen the pool for one batch.
        """
        lease = _PoolLease(self)
        self._leases.append(lease)
        return lease

    def resize(self) -> None:
        """
        Make the pool as wide as its widest open lease, and never narrower than built.

        Narrowing takes effect as requests finish: none is cut short.
        """
        self._capacity = max([self._base, *(lease.size for lease in self._leases)])
        self._wake()

    def end_lease(self, lease: _PoolLease) -> None:
        """
        Forget a lease and narrow the pool to what is still claimed.
        """
        self._leases.remove(lease)
        self.resize()

    async def aclose(self) -> None:
        """
        Close the transport and its connections.
        """
        await self.transport.aclose()


def _timeout_extension(timeout: float) -> dict[str, Any]:
    return {"timeout": httpx.Timeout(timeout).as_dict()}


class _Slot:
    """
    ``async with pool.slot():`` as a plain object: no generator per request.
    """

    __slots__ = ("_pool",)

    def __init__(self, pool: OwnPool) -> None:
        self._pool = pool

    async def __aenter__(self) -> None:
        await self._pool.take_slot()

    async def __aexit__(self, *_: object) -> None:
        self._pool.give_slot()


class _PoolLease:
    def __init__(self, pool: OwnPool) -> None:
        self._pool = pool
        self.size = 0

    def grow_to(self, size: int) -> None:
        if size > self.size:
            self.size = size
            self._pool.resize()

    def release(self) -> None:
        self._pool.end_lease(self)


class _NoLease:
    """
    The caller's pool is theirs to size: nothing to claim.
    """

    def grow_to(self, size: int) -> None:
        return None

    def release(self) -> None:
        return None


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
        self,
        method: str,
        url: str,
        *,
        headers: httpx.Headers,
        json: dict[str, Any] | None,
        timeout: float,
    ) -> httpx.Request:
        """
        A request through the caller's client: its own headers, cookies and timeouts merge in.

        ``timeout`` is enforced around ``send`` by the session; the client's
        own timeouts stay the caller's.
        """
        return self.client.build_request(method, url, headers=headers, json=json)

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Nothing to hold: the caller's client queues for its own pool.
        """
        return contextlib.nullcontext()

    async def send(self, request: httpx.Request) -> httpx.Response:
        """
        The client's full ``send()``, hooks included; never following a redirect.
        """
        response = await self.client.send(request, stream=True, follow_redirects=False)
        return await read_capped(response)

    def lease(self) -> Lease:
        """
        Nothing to claim: the caller's pool is theirs.
        """
        return _NoLease()

    async def aclose(self) -> None:
        """
        Nothing: the caller's client is theirs to close.
        """


async def read_capped(response: httpx.Response) -> httpx.Response:
    """
    The response with at most MAX_BODY bytes of its body, as sent (never decompressed).

    The common answer (a 204, or a small Content-Length) with no encoding is
    read as is. Anything else (no length, a large one, an encoding we did not
    ask for) is read raw up to the cap into a new response, and the stream is
    closed there, so a huge answer's connection is dropped rather than drained.
    """
    headers = response.headers
    length = headers.get("content-length", "")
    small = response.status_code == 204 or (length.isdigit() and int(length) <= MAX_BODY)
    if small and "content-encoding" not in headers and not response.is_stream_consumed:
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
    chunks: list[bytes] = []
    size = 0
    try:
        if response.is_stream_consumed:
            # Built in memory already (a mock or in-process transport): nothing to stream.
            chunks.append(response.content)
        else:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY:
                    break
    finally:
        await response.aclose()
    return httpx.Response(
        response.status_code,
        # The body stays as sent: we asked for identity and decode nothing.
        headers=[(k, v) for k, v in headers.multi_items() if k.lower() != "content-encoding"],
        content=b"".join(chunks)[:MAX_BODY],
        request=response.request,
        extensions=response.extensions,
    )
