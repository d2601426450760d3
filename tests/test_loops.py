"""
One client, many event loops: successive asyncio.run() calls, threads, abandoned loops.

The servers here run on a thread of their own with their own loop, so that
each test's main thread is free to start and close loops as workers do
(a Celery or RQ task per asyncio.run(), async_to_sync, a script run twice).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from vobiz_async import (
    AsyncVobiz,
    ClientClosedError,
    EventLoopError,
    Outcome,
    Stream,
    VobizError,
)
from vobiz_async.testing import FakeVobiz

from .conftest import AUTH_ID, AUTH_TOKEN, NO_CONTENT, read_request

T = TypeVar("T")

#: Long enough for anything on loopback, short enough that a stalled pool fails the test.
WAIT = 20.0


class ThreadedServer:
    """
    A loopback HTTP/1.1 server answering 204 to everything, on its own thread and loop.

    It counts the connections open right now, so that a test can see that a
    client left none behind.
    """

    def __init__(self) -> None:
        self.open_connections = 0
        self.requests = 0
        self._changed = threading.Condition()
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.base_url = ""
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._started.wait(WAIT)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1"
        self._started.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count(open_connections=1)
        try:
            while await read_request(reader) is not None:
                self._count(requests=1)
                writer.write(NO_CONTENT)
                await writer.drain()
        finally:
            writer.close()
            self._count(open_connections=-1)

    def _count(self, *, open_connections: int = 0, requests: int = 0) -> None:
        with self._changed:
            self.open_connections += open_connections
            self.requests += requests
            self._changed.notify_all()

    def wait_for_requests(self, count: int) -> bool:
        """True once `count` requests have arrived in all; False after WAIT seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.requests >= count, WAIT)

    def all_connections_closed(self) -> bool:
        """True once every connection to it is closed; False if one is still open after WAIT."""
        with self._changed:
            return self._changed.wait_for(lambda: self.open_connections == 0, WAIT)


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    with ThreadedServer() as running:
        yield running


@pytest.fixture
def resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every ResourceWarning (an unclosed socket, transport or connector) the test caused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield caught
        gc.collect()


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine in asyncio.run() on a new thread, as a thread pool worker does."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(coroutine))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    if errors:
        raise errors[0]
    return results[0]


def streams(prefix: str, count: int) -> list[Stream]:
    return [Stream(f"{prefix}-call", f"s{i}") for i in range(count)]


def test_successive_asyncio_runs_share_one_default_client(
    server: ThreadedServer, resource_warnings: list[warnings.WarningMessage]
) -> None:
    """
    One client, used in one asyncio.run() after another, stops every time.

    Each loop's connections close when that loop shuts down: none is left
    open between runs, and nothing warns of an unclosed socket or connector.
    """
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    for run in range(3):
        result = asyncio.run(vobiz.stop_stream("call", f"s{run}"))
        assert result.outcome is Outcome.STOPPED
        assert server.all_connections_closed()
        report = asyncio.run(vobiz.stop_many(streams(f"run{run}", 20), concurrency=5))
        assert report.ok
        assert report.counts[Outcome.STOPPED] == 20
        assert server.all_connections_closed()
    asyncio.run(vobiz.aclose())
    assert [str(w.message) for w in resource_warnings] == []


def test_a_client_moves_between_threads_one_loop_after_another(server: ThreadedServer) -> None:
    """A thread pool's workers may take turns with one client: each in its own asyncio.run()."""
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    for turn in range(3):
        result = in_thread(vobiz.stop_stream("call", f"s{turn}"))
        assert result.outcome is Outcome.STOPPED
    in_thread(vobiz.aclose())
    assert server.all_connections_closed()


def test_fake_transport_with_a_small_pool_works_on_every_loop() -> None:
    """
    The in-process fake with a pool narrower than the batch: each asyncio.run() gets its limits.

    The pool's size comes back as built on each loop, and a batch widens it there.
    """
    fake = FakeVobiz(open_world=True)
    vobiz = AsyncVobiz(
        fake.auth_id,
        fake.auth_token,
        base_url="https://api.vobiz.test/api/v1",
        transport=fake.transport(),
        max_connections=2,
    )

    async def batch(run: int) -> tuple[int, int]:
        before = vobiz.max_connections
        report = await vobiz.stop_many(streams(f"run{run}", 30), concurrency=10)
        assert report.ok
        return before, vobiz.max_connections

    for run in range(3):
        assert asyncio.run(batch(run)) == (2, 2)
        assert asyncio.run(vobiz.stop_stream("call", f"s{run}")).outcome is Outcome.STOPPED
    assert fake.stopped_more_than_once() == {}
    asyncio.run(vobiz.aclose())


class HeldTransport(httpx.AsyncBaseTransport):
    """Holds every request until `answering` is set; then answers 204 at once."""

    def __init__(self) -> None:
        self.answering = False
        self.arrived = 0
        self._waiter: asyncio.Future[None] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived += 1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self.answering:
            await asyncio.get_running_loop().create_future()  # never done
        return httpx.Response(204)

    async def first_arrival(self) -> None:
        """Return once a request has reached the transport."""
        if not self.arrived:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


def test_a_loop_closed_with_requests_queued_leaves_the_next_loop_a_whole_pool() -> None:
    """
    A loop closed mid-batch without shutting down (a dying worker thread) takes its queue along.

    Its one request in flight and its two waiting for the one slot never
    finish; the next loop gets a pool of its own, not one full of them.
    """
    transport = HeldTransport()
    vobiz = AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url="https://api.vobiz.test/api/v1",
        transport=transport,
        max_connections=1,
    )
    abandoned = asyncio.new_event_loop()

    async def start_three() -> list[asyncio.Task[object]]:
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(vobiz.stop_stream("call", f"s{i}")) for i in range(3)
        ]
        await transport.first_arrival()
        return tasks

    stuck = abandoned.run_until_complete(start_three())
    abandoned.close()
    transport.answering = True

    async def stop_one() -> Outcome:
        async with asyncio.timeout(WAIT):  # a pool still full of the dead loop's requests stalls
            return (await vobiz.stop_stream("call", "next")).outcome

    assert asyncio.run(stop_one()) is Outcome.STOPPED
    assert vobiz.max_connections == 1
    del stuck  # their loop is gone: asyncio logs them as destroyed while pending


def test_use_from_a_second_running_loop_raises_event_loop_error(server: ThreadedServer) -> None:
    """
    While the client's loop runs in one thread, another thread's loop gets EventLoopError.

    Before any request: stop_many raises it rather than failing every target.
    Once the first loop has ended, the other thread may use the client.
    """
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    used = threading.Event()
    release = threading.Event()

    async def hold() -> Outcome:
        outcome = (await vobiz.stop_stream("call", "first")).outcome
        used.set()
        await asyncio.to_thread(release.wait, WAIT)  # the loop runs on, waiting
        return outcome

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert used.wait(WAIT)
        with pytest.raises(EventLoopError, match="one client per event loop") as info:
            asyncio.run(vobiz.stop_stream("call", "second"))
        assert "still running" in str(info.value)
        assert isinstance(info.value, VobizError)
        assert isinstance(info.value, RuntimeError)
        with pytest.raises(EventLoopError):
            asyncio.run(vobiz.stop_many(streams("batch", 5)))
        with pytest.raises(EventLoopError):
            asyncio.run(vobiz.aclose())
        assert server.requests == 1
    finally:
        release.set()
        holder.join(WAIT)

    assert asyncio.run(vobiz.stop_stream("call", "third")).outcome is Outcome.STOPPED


def test_use_while_the_last_loop_is_open_but_idle_raises(server: ThreadedServer) -> None:
    """
    A loop left open (not running, not closed) still owns the client's connections.

    Once it is shut down and closed, as asyncio.run() would, the client moves on.
    """
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    first = asyncio.new_event_loop()
    assert first.run_until_complete(vobiz.stop_stream("call", "s1")).outcome is Outcome.STOPPED
    with pytest.raises(EventLoopError, match="still open"):
        asyncio.run(vobiz.stop_stream("call", "s2"))
    first.run_until_complete(first.shutdown_asyncgens())
    first.close()
    assert server.all_connections_closed()
    assert asyncio.run(vobiz.stop_stream("call", "s2")).outcome is Outcome.STOPPED
    asyncio.run(vobiz.aclose())


def test_closed_client_stays_closed_on_a_new_loop(server: ThreadedServer) -> None:
    """aclose() is for good: another loop does not reopen the pool."""
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    asyncio.run(vobiz.stop_stream("call", "s1"))
    asyncio.run(vobiz.aclose())
    with pytest.raises(ClientClosedError):
        asyncio.run(vobiz.stop_stream("call", "s2"))
    assert server.requests == 1


async def test_aclose_closes_the_connections_on_its_own_loop(server: ThreadedServer) -> None:
    """Closed on the loop it ran on, the client closes its connections there and then."""
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=server.base_url)
    await vobiz.stop_stream("call", "s1")
    assert server.open_connections == 1
    await vobiz.aclose()
    assert await asyncio.to_thread(server.all_connections_closed)


async def test_requests_waiting_for_a_slot_fail_as_closed_when_the_client_closes() -> None:
    """A request queued for the pool when aclose() runs fails with ClientClosedError."""
    transport = HeldTransport()
    vobiz = AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url="https://api.vobiz.test/api/v1",
        transport=transport,
        max_connections=1,
    )
    first = asyncio.create_task(vobiz.stop_stream("call", "s1"))
    queued = asyncio.create_task(vobiz.stop_stream("call", "s2"))
    await transport.first_arrival()
    await vobiz.aclose()
    with pytest.raises(ClientClosedError):
        await queued
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
