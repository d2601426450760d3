"""
Who sends the requests: our own pool, or the caller's ``httpx.AsyncClient``.

Both have one interface, so the client never asks which one it has.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import enum
import ssl
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from ._exceptions import MAX_BODY, ClientClosedError, EventLoopError
from ._network import Network, ProxyRoute, cached_ssl_context, ssl_context

__all__ = [
    "MAX_BODY",
    "CallerClient",
    "DefaultTransports",
    "GivenTransport",
    "LoopPool",
    "OwnPool",
    "PoolState",
    "Sender",
    "Stage",
    "Transports",
    "default_transport",
]


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

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Hold a place in the pool; ``send`` only inside it.
        """

    async def send(self, request: httpx.Request, *, limit: int = MAX_BODY) -> httpx.Response:
        """
        Send one request, never following a redirect; read a success answer to ``limit`` bytes.
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


class Transports(Protocol):
    """
    Where our pool gets its transport on each event loop, and what becomes of it.
    """

    async def prepare(self) -> None:
        """
        Do the slow part of opening (reading CA files) without blocking the loop.
        """

    def open(self) -> httpx.AsyncBaseTransport:
        """
        A transport for the running loop, at once (after ``prepare``).
        """

    async def release(self, transport: httpx.AsyncBaseTransport) -> None:
        """
        The loop ``transport`` was opened on is ending: close what belongs to that loop.
        """

    async def aclose(self) -> None:
        """
        The client is closing: close what outlives loops.
        """


class DefaultTransports:
    """
    httpx on aiohttp: one per event loop, opened by its first request, closed when its loop ends.

    Nothing is built with the client: the SSL context is built when the first
    request needs it (in a worker thread, since reading a CA bundle blocks for
    tens of milliseconds) and kept for the life of the process.
    """

    def __init__(self, network: Network) -> None:
        self.network = network

    async def prepare(self) -> None:
        """
        Build the SSL context in a worker thread, unless this process has built it already.
        """
        if cached_ssl_context(self.network.trust) is None:
            await asyncio.to_thread(ssl_context, self.network.trust)

    def open(self) -> httpx.AsyncBaseTransport:
        """
        A new transport on the client's proxy and CAs.
        """
        return default_transport(self.network, ssl_context(self.network.trust))

    async def release(self, transport: httpx.AsyncBaseTransport) -> None:
        """
        Close its connections: they belong to the loop that is ending.
        """
        await transport.aclose()

    async def aclose(self) -> None:
        """
        Nothing: each transport closed with its loop, or with the client on its loop.
        """


class GivenTransport:
    """
    The caller's transport (a fake's, a mock): the same one on every loop, closed with the client.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def prepare(self) -> None:
        """
        Nothing to prepare.
        """

    def open(self) -> httpx.AsyncBaseTransport:
        """
        The caller's transport, as given.
        """
        return self.transport

    async def release(self, transport: httpx.AsyncBaseTransport) -> None:
        """
        Nothing: the next loop uses it too.
        """

    async def aclose(self) -> None:
        """
        Close it: we were given it to use and close.
        """
        await self.transport.aclose()


def default_transport(network: Network, context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """
    The default: httpx on aiohttp, ten times plain httpx at 100 in flight (see benchmarks).
    """
    # verify=context: AiohttpTransport otherwise builds an SSL context of its
    # own in its constructor (40 ms), which our aiohttp session never uses.
    # limit=0 in aiohttp means "no limit": OwnPool's slots bound it instead.
    # aiohttp's own trust_env stays off: it would also send ~/.netrc passwords.
    return AiohttpTransport(
        verify=context,
        proxy=_aiohttp_proxy(network.proxy),
        limits=httpx.Limits(max_connections=None, keepalive_expiry=5.0),
        client=lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=5.0, ssl=context),
            timeout=aiohttp.ClientTimeout(total=None),
        ),
    )


def _aiohttp_proxy(route: ProxyRoute | None) -> httpx.Proxy | None:
    """
    The proxy as AiohttpTransport hands it to aiohttp on each request.

    The credentials go as a Proxy-Authorization header of the CONNECT request:
    not in the proxy URL, which aiohttp puts in its errors' messages, nor as
    aiohttp's BasicAuth, which it deprecates.
    """
    if route is None:
        return None
    headers = None
    if route.username is not None:
        pair = f"{route.username}:{route.password or ''}".encode()
        headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return httpx.Proxy(route.url, headers=headers)


class PoolState(enum.Enum):
    """
    Our pool when it is on no event loop.
    """

    #: Not used yet, or its loop has shut down: the next use opens one on its loop.
    UNBOUND = "unbound"
    #: ``aclose()``: never opened again.
    CLOSED = "closed"


class OwnPool:
    """
    Our own pool: requests go straight to the transport, at most ``capacity`` at once.

    Our client has no auth, cookies, event hooks or redirects by construction,
    so skipping httpx's client layer loses nothing, and that layer costs more
    CPU than aiohttp's whole request.

    One client per event loop: connections, and the futures requests wait on
    for a slot, belong to one loop. So the pool lives on one loop at a time
    (a ``LoopPool``), opened on that loop at its first use and closed when the
    loop shuts down (``asyncio.run()`` and ``asyncio.Runner`` shut their loops
    down before closing them). The next use on another loop opens a new one,
    with the limits as built. Used on another loop while its own is still
    open, it raises EventLoopError.
    """

    def __init__(self, transports: Transports, *, max_connections: int, timeout: float) -> None:
        self.transports = transports
        self.base = max_connections
        self._pool: LoopPool | PoolState = PoolState.UNBOUND
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}

    @property
    def capacity(self) -> int:
        """
        Requests in flight at most: as constructed, or as widened by an open batch.
        """
        pool = self._pool
        return pool.capacity if isinstance(pool, LoopPool) else self.base

    @property
    def in_flight(self) -> int:
        """
        Requests holding a pool slot right now.
        """
        pool = self._pool
        return pool.in_flight if isinstance(pool, LoopPool) else 0

    @property
    def transport(self) -> httpx.AsyncBaseTransport | None:
        """
        The transport of the pool on the current loop; None before the first request.
        """
        pool = self._pool
        return pool.transport if isinstance(pool, LoopPool) else None

    def build(
        self, method: str, url: str, *, headers: httpx.Headers, json: dict[str, Any] | None
    ) -> httpx.Request:
        """
        A bare request: our headers, the per-request timeout, nothing merged in.
        """
        return httpx.Request(method, url, headers=headers, json=json, extensions=self._extensions)

    def here(self) -> LoopPool:
        """
        The pool on the running loop, new if the client has not run on it yet.

        EventLoopError if the client's pool is on another loop that is still
        open; ClientClosedError after ``aclose()``.
        """
        loop = asyncio.get_running_loop()
        pool = self._pool
        if isinstance(pool, LoopPool):
            if pool.loop is loop:
                return pool
            if not pool.loop.is_closed():
                raise EventLoopError(_one_loop_per_client(pool.loop))
            # Closed without shutting down (loop.close() alone, not
            # asyncio.run): what it held is out of reach on a closed loop, and
            # the garbage collector closes its sockets.
        elif pool is PoolState.CLOSED:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")
        pool = self._pool = LoopPool(self, loop)
        return pool

    def forget(self, pool: LoopPool) -> None:
        """
        ``pool``'s loop is shutting down: the next use opens a pool on its own loop.
        """
        if self._pool is pool:
            self._pool = PoolState.UNBOUND

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Wait for a free place in this loop's pool and hold it.
        """
        return _Slot(self)

    async def send(self, request: httpx.Request, *, limit: int = MAX_BODY) -> httpx.Response:
        """
        Send through this loop's transport (inside ``slot()``); read at most ``limit``.
        """
        # slot() checked the loop and opened the pool; only aclose() can have closed it since.
        pool = self._pool
        transport = pool.transport if isinstance(pool, LoopPool) else None
        if transport is None:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")
        response = await transport.handle_async_request(request)
        response.request = request
        return await read_capped(response, limit)

    def lease(self) -> Lease:
        """
        A claim to widen this loop's pool for one batch.
        """
        return self.here().lease()

    async def aclose(self) -> None:
        """
        Close the pool on this loop and what the caller gave us; EventLoopError from another loop.
        """
        pool = self._pool
        if isinstance(pool, LoopPool) and pool.loop is not asyncio.get_running_loop():
            if not pool.loop.is_closed():
                raise EventLoopError(_one_loop_per_client(pool.loop))
            pool = PoolState.UNBOUND  # closed with its loop's end, or out of reach
        self._pool = PoolState.CLOSED
        if isinstance(pool, LoopPool):
            await pool.aclose()
        await self.transports.aclose()


def _one_loop_per_client(loop: asyncio.AbstractEventLoop) -> str:
    state = "running" if loop.is_running() else "open (not running, not closed)"
    return (
        f"this AsyncVobiz client runs on another event loop, which is still {state}: "
        "one client per event loop. Create a client per loop (per thread, per "
        "overlapping asyncio.run()), or finish with the other loop first: once it is "
        "closed, the next use here opens a new connection pool."
    )


class Stage(enum.Enum):
    """
    Where the pool on one loop is in its life.
    """

    #: No transport yet: the first request opens it.
    NEW = "new"
    #: Has a transport, until its loop ends or the client closes.
    OPEN = "open"
    #: Closed: its waiters failed, its transport released.
    CLOSED = "closed"


class LoopPool:
    """
    The pool on one event loop: its transport, its slots (a FIFO semaphore whose size can change).

    The pool is bounded here rather than in aiohttp's connector because a batch
    widens it and aiohttp's limit cannot change. A request takes a slot while
    fewer than ``capacity`` are taken, else waits its turn (FIFO).
    """

    def __init__(self, owner: OwnPool, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.capacity = owner.base
        self.in_flight = 0
        self.stage = Stage.NEW
        #: The transport while the pool is OPEN; None before and after.
        self.transport: httpx.AsyncBaseTransport | None = None
        # Closed by the loop's shutdown_asyncgens(): how we hear that the loop ends.
        self._ender: AsyncGenerator[None, None] | None = None
        self._leases: list[_PoolLease] = []
        # Waiters for a slot, oldest first; each is handed its slot when woken.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def open(self) -> None:
        """
        Open the transport, once for the loop; ClientClosedError once the pool is closed.

        Nothing here waits for the loop, save a first-ever CA bundle read, so
        the first requests of a batch still go out in the order they came.
        """
        transports = self.owner.transports
        await transports.prepare()
        if self.stage is Stage.CLOSED:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")
        if self.stage is Stage.OPEN:  # another request opened it while this one prepared
            return
        self.transport = transports.open()
        self.stage = Stage.OPEN
        # An async generator first iterated on a loop is one that loop closes
        # in shutdown_asyncgens(), which asyncio.run() and Runner call before
        # they close it: the one hook asyncio gives to run code at a loop's end.
        # It runs to its yield at once: this await does not wait for the loop.
        self._ender = _until_loop_ends(self)
        await anext(self._ender)

    async def aclose(self) -> None:
        """
        Close the transport's connections (if ours) and fail the requests waiting for a slot.
        """
        ender, self._ender = self._ender, None
        await self.close()
        if ender is not None:
            await ender.aclose()  # done with: its loop has nothing left to close

    async def close(self) -> None:
        """
        Close once: forget this pool, fail its waiters, release its transport.
        """
        if self.stage is Stage.CLOSED:
            return
        self.stage = Stage.CLOSED
        self.owner.forget(self)
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_exception(
                    ClientClosedError("the client was closed while this request waited")
                )
        transport, self.transport = self.transport, None
        if transport is not None:
            await self.owner.transports.release(transport)

    async def take_slot(self) -> None:
        """
        Wait for a free place in the pool and take it (``slot()`` does this for you).
        """
        if self.stage is Stage.CLOSED:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")
        if self.in_flight < self.capacity and not self._waiters:
            self.in_flight += 1
            return
        turn: asyncio.Future[None] = self.loop.create_future()
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
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.capacity:
            if self.loop.is_closed():
                return  # a loop closed mid-batch: none of its requests can run again
            turn = self._waiters.popleft()
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

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
        self.capacity = max([self.owner.base, *(lease.size for lease in self._leases)])
        self._wake()

    def end_lease(self, lease: _PoolLease) -> None:
        """
        Forget a lease and narrow the pool to what is still claimed.
        """
        self._leases.remove(lease)
        self.resize()


async def _until_loop_ends(pool: LoopPool) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await pool.close()


class _Slot:
    """
    ``async with pool.slot():`` for one request: a place in the pool of the loop it runs on.
    """

    __slots__ = ("_owner", "_pool")

    def __init__(self, owner: OwnPool) -> None:
        self._owner = owner

    async def __aenter__(self) -> None:
        pool = self._owner.here()
        if pool.stage is not Stage.OPEN:
            await pool.open()
        await pool.take_slot()
        self._pool = pool

    async def __aexit__(self, *_: object) -> None:
        # The pool it was taken from, even if the client has moved on since.
        self._pool.give_slot()


class _PoolLease:
    def __init__(self, pool: LoopPool) -> None:
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
        self, method: str, url: str, *, headers: httpx.Headers, json: dict[str, Any] | None
    ) -> httpx.Request:
        """
        A request through the caller's client: its own headers, cookies and timeouts merge in.
        """
        return self.client.build_request(method, url, headers=headers, json=json)

    def slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        """
        Nothing to hold: the caller's client queues for its own pool.
        """
        return contextlib.nullcontext()

    async def send(self, request: httpx.Request, *, limit: int = MAX_BODY) -> httpx.Response:
        """
        The client's full ``send()``, hooks included; never following a redirect.
        """
        response = await self.client.send(request, stream=True, follow_redirects=False)
        return await read_capped(response, limit)

    def lease(self) -> Lease:
        """
        Nothing to claim: the caller's pool is theirs.
        """
        return _NoLease()

    async def aclose(self) -> None:
        """
        Nothing: the caller's client is theirs to close.
        """


async def read_capped(response: httpx.Response, limit: int = MAX_BODY) -> httpx.Response:
    """
    The response with at most ``limit`` bytes of its body, as sent (never decompressed).

    ``limit`` applies to a success answer (a listing's may be large); any other
    answer is read to MAX_BODY at most. The common answer (a 204, or a small
    Content-Length) with no encoding is read as is. Anything else (no length, a
    large one, an encoding we did not ask for) is read raw up to the cap into a
    new response, and the stream is closed there, so a huge answer's connection
    is dropped rather than drained.
    """
    if not 200 <= response.status_code < 300:
        limit = min(limit, MAX_BODY)
    headers = response.headers
    length = headers.get("content-length", "")
    small = response.status_code == 204 or (length.isdigit() and int(length) <= limit)
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
                if size >= limit:
                    break
    finally:
        await response.aclose()
    return httpx.Response(
        response.status_code,
        # The body stays as sent: we asked for identity and decode nothing.
        headers=[(k, v) for k, v in headers.multi_items() if k.lower() != "content-encoding"],
        content=b"".join(chunks)[:limit],
        request=response.request,
        extensions=response.extensions,
    )
