"""
A stateful fake of the Vobiz stream and recording endpoints: the stops, and the listings.

One state machine (``Calls``) and one seeded fault draw (``FaultDice``) behind
two front ends: an httpx transport for fast in-process tests, and an aiohttp
server on a real loopback socket for the CLI, the demo, the soak suite and the
benchmarks. FakeVobiz composes them and records what each request got.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, get_args

import attrs
import httpx

from .._targets import Target
from ._faults import Action, FaultDice, Faults
from ._limit import RateLimit, TokenBucket
from ._server import serve_on_loopback
from ._state import Calls, Paging
from ._transport import InProcessTransport
from ._wire import (
    Answer,
    Request,
    authentication_failed,
    not_found,
    parse_request,
    rate_limited,
    service_unavailable,
)

__all__ = ["DEFAULT_AUTH_ID", "DEFAULT_AUTH_TOKEN", "FakeVobiz", "RecordedRequest"]

DEFAULT_AUTH_ID = "MA_FAKEVOBIZ"
DEFAULT_AUTH_TOKEN = "fake-vobiz-token"  # noqa: S105 - a fake's well-known credential


@attrs.frozen
class RecordedRequest:
    """
    One request as the fake saw it, and what it answered.

    ``auth_id`` is the account in the path and ``target`` the request the path,
    body and query spell (a stop target, or a ``ListLiveCalls`` or
    ``ListStreams``); each is None when the path has none. ``path`` is without
    the query string, which is ``query`` (without its ``?``).
    """

    method: str
    path: str
    auth_id: str | None
    target: Request | None
    body: bytes
    status: int | None
    fault: str | None
    query: str = ""


class FakeVobiz:
    """
    The Vobiz stop and listing endpoints, in memory.

    With ``open_world=False`` (for users' tests) only calls, streams and
    recordings registered with ``add_call`` exist; anything else answers 404.
    ``rate_limit`` puts a true token bucket in front of it all (see RateLimit);
    it refills by ``clock``, which a test can make the event loop's.
    With ``open_world=True`` (for the demo and the benchmarks) every stream
    exists until it is stopped, and every call has recordings until they are.

    ``stop_counts`` counts, per target, how many requests actually changed
    state: a correct client makes each one exactly 1, however many retries.

    The listings show the registered calls and streams: ``GET Call/?status=live``
    the calls added and not ended (one answer, or ``live_page_size`` a page with
    ``meta``), ``GET Call/{call}/Stream/`` a call's streams with their
    ``service_url``, status (stopped ones ``completed``) and times, at most
    ``page_limit`` a page, in the ``paging`` envelope: ``"meta"``
    (``{"meta": {"next", "total_count", ...}, "objects"}``) or ``"page"``
    (``{"page", "per_page", "total", "objects"}``). Faults and the rate limit
    apply to them as to the stops.
    """

    def __init__(
        self,
        *,
        auth_id: str = DEFAULT_AUTH_ID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        open_world: bool = False,
        faults: Faults | None = None,
        seed: int = 0,
        record_requests: bool = True,
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
        paging: Paging = "meta",
        page_limit: int = 20,
        live_page_size: int | None = None,
    ) -> None:
        if paging not in get_args(Paging):
            raise ValueError(f"paging must be 'meta' or 'page', not {paging!r}")
        for name, size in (("page_limit", page_limit), ("live_page_size", live_page_size)):
            if size is not None and not (isinstance(size, int) and size >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {size!r}")
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.faults = faults or Faults()
        self._bucket = TokenBucket(rate_limit, clock=clock) if rate_limit is not None else None
        #: Requests the rate limit refused with a 429.
        self.throttled_count = 0
        self.record_requests = record_requests
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self._calls = Calls(
            open_world=open_world,
            auth_id=auth_id,
            paging=paging,
            page_limit=page_limit,
            live_page_size=live_page_size,
        )
        self._dice = FaultDice(seed)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- state ------------------------------------------------------------------

    @property
    def open_world(self) -> bool:
        """
        Whether every call, stream and recording exists until it is stopped.
        """
        return self._calls.open_world

    @open_world.setter
    def open_world(self, value: bool) -> None:
        self._calls.open_world = value

    @property
    def stop_counts(self) -> Counter[Target]:
        """
        Per target, how many requests actually stopped something.
        """
        return self._calls.stop_counts

    def add_call(
        self,
        call_uuid: str,
        *,
        streams: Iterable[str] | Mapping[str, str] = (),
        recordings: Iterable[str] = (),
    ) -> None:
        """
        Register a live call with its active streams and recording URLs.

        ``streams`` is stream ids, or a mapping of stream id to the
        ``service_url`` it sends audio to (else ``wss://media.fake-vobiz.test/{id}``).
        """
        self._calls.add(call_uuid, streams=streams, recordings=recordings)

    def start_stream(
        self,
        call_uuid: str,
        service_url: str,
        *,
        stream_id: str | None = None,
        audio_track: str = "inbound",
    ) -> str:
        """
        Start a stream on a live call added with ``add_call``; its id (a UUID unless given).
        """
        return self._calls.start_stream(
            call_uuid, service_url, stream_id=stream_id, audio_track=audio_track
        )

    def end_call(self, call_uuid: str) -> None:
        """
        The call ends (the caller hung up): gone from the live list, 404 to everything.
        """
        self._calls.hang_up(call_uuid)

    def live_calls(self) -> list[str]:
        """
        The calls the live list shows now, in the order they were added.
        """
        return self._calls.live()

    def active_streams(self, call_uuid: str) -> set[str]:
        """
        Streams still running on a registered call.
        """
        return self._calls.active_streams(call_uuid)

    def active_recordings(self, call_uuid: str) -> set[str]:
        """
        Recordings still running on a registered call.
        """
        return self._calls.active_recordings(call_uuid)

    def times_stopped(self, target: Target) -> int:
        """
        How many requests for ``target`` actually stopped something: 1 for a correct client.
        """
        return self.stop_counts[target]

    def stopped_more_than_once(self) -> dict[Target, int]:
        """
        Targets whose stop was applied twice or more: a client bug if non-empty.
        """
        return {target: n for target, n in self.stop_counts.items() if n > 1}

    async def wait_for_requests(self, count: int) -> None:
        """
        Return once ``count`` requests have arrived in all: a test's sync point, no polling.
        """
        if self.request_count >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    def stats(self) -> dict[str, Any]:
        """
        Counters as JSON-ready data, for the socket server's /_fake/stats.
        """
        return {
            "requests": self.request_count,
            "cpu_seconds": time.process_time(),
            "stopped": {_stats_key(target): n for target, n in self.stop_counts.items()},
            "stopped_more_than_once": len(self.stopped_more_than_once()),
            "throttled": self.throttled_count,
        }

    # -- one request ------------------------------------------------------------------

    async def _exchange(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> Answer | None:
        """
        Decide the fault, apply the stop if it gets that far; None means drop or hang.
        """
        faults = self.faults
        action = self._dice.roll(faults)  # rolled for every request: a seed's faults stay put
        path, _, query = raw_path.partition("?")
        auth_id, target = parse_request(method, path, body, query)
        seen = (method, path, query, auth_id, target, body)
        bucket = self._bucket
        if bucket is not None and not bucket.take():
            # The account limit sits in front of everything, as a gateway's does.
            self.throttled_count += 1
            self._record(*seen, 429, Action.THROTTLED)
            return rate_limited(bucket.limit.retry_after, bucket.limit.body)
        if action is Action.HANG:
            self._record(*seen, None, action)
            await asyncio.Event().wait()
        if faults.latency:
            await asyncio.sleep(faults.latency)
        answer: Answer | None
        if action is Action.ERROR_503:
            answer = service_unavailable()
        elif action is Action.RATE_LIMIT:
            answer = rate_limited(faults.retry_after)
        elif action is Action.DROP_BEFORE:
            answer = None
        else:
            answer = self._answer(headers, auth_id, target)
        # DROP_AFTER applied the stop above and now loses the answer.
        delivered = None if action is Action.DROP_AFTER else answer
        status = delivered.status if delivered else None
        self._record(*seen, status, action)
        if action is Action.DELAY:
            # Applied now, answered late: a client that gave up never hears of it.
            await asyncio.sleep(faults.delay_seconds)
        return delivered

    def _answer(
        self, headers: Mapping[str, str], auth_id: str | None, target: Request | None
    ) -> Answer:
        """
        The state machine's answer to an authenticated request; 404 or 401 before it.
        """
        if target is None:
            return not_found("Resource")
        if (
            headers.get("X-Auth-ID") != self.auth_id
            or headers.get("X-Auth-Token") != self.auth_token
            or auth_id != self.auth_id
        ):
            return authentication_failed()
        return self._calls.handle(target)

    def _record(
        self,
        method: str,
        path: str,
        query: str,
        auth_id: str | None,
        target: Request | None,
        body: bytes,
        status: int | None,
        action: Action,
    ) -> None:
        self.request_count += 1
        if self._waiters:
            for waiter in [w for w in self._waiters if w[0] <= self.request_count]:
                self._waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(None)
        if self.record_requests:
            self.requests.append(
                RecordedRequest(method, path, auth_id, target, body, status, action.fault, query)
            )

    # -- front ends ---------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """
        An httpx transport that answers in process: ``httpx.AsyncClient(transport=...)``.
        """
        return InProcessTransport(self._exchange)

    def http_client(self) -> httpx.AsyncClient:
        """
        An httpx.AsyncClient on this fake, for ``AsyncVobiz(http_client=...)``.
        """
        return httpx.AsyncClient(transport=self.transport())

    def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 75.0
    ) -> AbstractAsyncContextManager[str]:
        """
        Serve on a real loopback socket; yields the base URL for ``AsyncVobiz(base_url=...)``.

        ``idle_timeout`` is how long an idle keep-alive connection is kept open.
        """
        return serve_on_loopback(
            self._exchange,
            stats=self.stats,
            keepalive_requests=lambda: self.faults.keepalive_requests,
            host=host,
            port=port,
            idle_timeout=idle_timeout,
        )


def _stats_key(target: Target) -> str:
    """
    ``kind|field|...`` with the fields that have a value: ``stream|call-1|s-1``.
    """
    fields = attrs.astuple(target, recurse=False)
    return "|".join([target.kind, *(value for value in fields if value is not None)])
