"""
A stateful fake of the Vobiz stream and recording stop endpoints.

One state machine (FakeVobiz) behind two front ends: an httpx transport for
fast in-process tests, and an aiohttp server on a real loopback socket for
the CLI, the demo, the soak suite and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import unquote

import attrs
import httpx
from aiohttp import web

from .._checks import is_loopback, non_negative, probability
from .._targets import AllStreams, Stream, Target

__all__ = ["DEFAULT_AUTH_ID", "DEFAULT_AUTH_TOKEN", "FakeVobiz", "Faults", "RecordedRequest"]

DEFAULT_AUTH_ID = "MA_FAKEVOBIZ"
DEFAULT_AUTH_TOKEN = "fake-vobiz-token"  # noqa: S105 - a fake's well-known credential
API_PREFIX = "/api/v1"


def _optional_positive_int(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """
    What goes wrong, drawn per request from the fake's seeded random generator.

    Probabilities are per request and are tried in the order listed; at most
    one fault hits a request. ``latency`` applies to every answered request.
    """

    latency: float = attrs.field(default=0.0, validator=non_negative)
    #: 503 with an HTML body, as a load balancer sends it.
    error_503: float = attrs.field(default=0.0, validator=probability)
    #: 429 in Vobiz's nested error shape, with ``Retry-After: retry_after``.
    rate_limit_429: float = attrs.field(default=0.0, validator=probability)
    retry_after: float = attrs.field(default=1.0, validator=non_negative)
    #: The connection is dropped before the stop is applied.
    drop_before: float = attrs.field(default=0.0, validator=probability)
    #: The stop is applied, then the connection is dropped: the client never hears.
    drop_after: float = attrs.field(default=0.0, validator=probability)
    #: The stop is applied, and the answer comes ``delay_seconds`` late (past a short
    #: client timeout): the client may give up on a stop that happened.
    delay: float = attrs.field(default=0.0, validator=probability)
    delay_seconds: float = attrs.field(default=5.0, validator=non_negative)
    #: The request is accepted and never answered.
    hang: float = attrs.field(default=0.0, validator=probability)
    #: Socket server only: close each connection after this many requests.
    keepalive_requests: int | None = attrs.field(default=None, validator=_optional_positive_int)


class _Action(enum.Enum):
    ANSWER = enum.auto()
    ERROR_503 = enum.auto()
    RATE_LIMIT = enum.auto()
    DROP_BEFORE = enum.auto()
    DROP_AFTER = enum.auto()
    DELAY = enum.auto()
    HANG = enum.auto()


@attrs.frozen
class RecordedRequest:
    """
    One request as the fake saw it, and what it answered.
    """

    method: str
    path: str
    target: tuple[str, ...] | None
    body: bytes
    status: int | None
    fault: str | None


@attrs.define
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)


class _Group:
    """
    One call's streams, or its recordings: what runs, what was stopped.

    In the open world nothing is listed up front: an item is alive until it,
    or the whole group, was stopped.
    """

    __slots__ = ("active", "cleared", "stopped")

    def __init__(self, items: Iterable[str]) -> None:
        self.active = set(items)
        self.stopped: set[str] = set()
        self.cleared = False

    def stop_one(self, item: str, *, open_world: bool) -> bool:
        """
        Stop one item; False if it was not running.
        """
        alive = (
            (item not in self.stopped and not self.cleared) if open_world else item in self.active
        )
        if alive:
            self.active.discard(item)
            self.stopped.add(item)
        return alive

    def stop_all(self, *, open_world: bool) -> bool:
        """
        Stop everything; False if nothing was running.
        """
        stopped_any = bool(self.active) or (open_world and not self.cleared)
        self.stopped |= self.active
        self.active.clear()
        self.cleared = True
        return stopped_any


class _Call:
    __slots__ = ("recordings", "streams")

    def __init__(self, streams: Iterable[str] = (), recordings: Iterable[str] = ()) -> None:
        self.streams = _Group(streams)
        self.recordings = _Group(recordings)


class FakeVobiz:
    """
    The Vobiz stop endpoints, in memory.

    With ``open_world=False`` (for users' tests) only calls, streams and
    recordings registered with ``add_call`` exist; anything else answers 404.
    With ``open_world=True`` (for the demo and the benchmarks) every stream
    exists until it is stopped, and every call has recordings until they are.

    ``stop_counts`` counts, per target, how many requests actually changed
    state: a correct client makes each one exactly 1, however many retries.
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
    ) -> None:
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.open_world = open_world
        self.faults = faults or Faults()
        self._random = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets
        self._calls: dict[str, _Call] = {}
        self.record_requests = record_requests
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self.stop_counts: Counter[tuple[str, ...]] = Counter()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._prefix = f"{API_PREFIX}/Account/"

    # -- state ------------------------------------------------------------------

    def add_call(
        self, call_uuid: str, *, streams: Iterable[str] = (), recordings: Iterable[str] = ()
    ) -> None:
        """
        Register a live call with its active streams and recording URLs.
        """
        self._calls[call_uuid] = _Call(streams, recordings)

    def active_streams(self, call_uuid: str) -> set[str]:
        """
        Streams still running on a registered call.
        """
        call = self._calls.get(call_uuid)
        return set(call.streams.active) if call else set()

    def active_recordings(self, call_uuid: str) -> set[str]:
        """
        Recordings still running on a registered call.
        """
        call = self._calls.get(call_uuid)
        return set(call.recordings.active) if call else set()

    def times_stopped(self, target: Target) -> int:
        """
        How many requests for ``target`` actually stopped something: 1 for a correct client.
        """
        return self.stop_counts[_key(target)]

    def stopped_more_than_once(self) -> dict[tuple[str, ...], int]:
        """
        Targets whose stop was applied twice or more: a client bug if non-empty.
        """
        return {key: n for key, n in self.stop_counts.items() if n > 1}

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
            "stopped": {"|".join(key): n for key, n in self.stop_counts.items()},
            "stopped_more_than_once": len(self.stopped_more_than_once()),
        }

    def _call(self, call_uuid: str) -> _Call | None:
        call = self._calls.get(call_uuid)
        if call is None and self.open_world:
            call = self._calls[call_uuid] = _Call()
        return call

    def _decide(self) -> _Action:
        faults = self.faults
        draw = self._random.random()
        for action, chance in (
            (_Action.ERROR_503, faults.error_503),
            (_Action.RATE_LIMIT, faults.rate_limit_429),
            (_Action.DROP_BEFORE, faults.drop_before),
            (_Action.DROP_AFTER, faults.drop_after),
            (_Action.DELAY, faults.delay),
            (_Action.HANG, faults.hang),
        ):
            if draw < chance:
                return action
            draw -= chance
        return _Action.ANSWER

    # -- one request ------------------------------------------------------------------

    def _parse(self, raw_path: str) -> tuple[str, ...] | None:
        """
        ("stream", auth_id, call, stream) and the like, or None for an unknown path.
        """
        if not raw_path.startswith(self._prefix) or not raw_path.endswith("/"):
            return None
        parts = [unquote(p) for p in raw_path[len(self._prefix) : -1].split("/")]
        match parts:
            case [auth_id, "Call", call, "Stream", stream]:
                return ("stream", auth_id, call, stream)
            case [auth_id, "Call", call, "Stream"]:
                return ("all_streams", auth_id, call)
            case [auth_id, "Call", call, "Record"]:
                return ("recording", auth_id, call)
        return None

    def _not_found(self, what: str) -> _Answer:
        body = {"api_id": str(uuid.uuid4()), "error": f"{what} not found"}
        return _Answer(404, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _apply(self, target: tuple[str, ...], body: bytes) -> _Answer:
        """
        Apply one valid, authenticated stop to the state.
        """
        kind, _, call_uuid = target[:3]
        call = self._call(call_uuid)
        if call is None:
            return self._not_found("Stream" if kind == "stream" else "Call")
        open_world = self.open_world
        if kind == "stream":
            key: tuple[str, ...] = ("stream", call_uuid, target[3])
            applied = call.streams.stop_one(target[3], open_world=open_world)
        elif kind == "all_streams":
            # 204 whether or not anything was running, as the API documents.
            key, applied = ("all_streams", call_uuid), True
            if not call.streams.stop_all(open_world=open_world):
                return _Answer(204)
        elif (url := _recording_url(body)) is None:
            key, applied = ("recording", call_uuid), True
            if not call.recordings.stop_all(open_world=open_world):
                return _Answer(204)
        else:
            key = ("recording", call_uuid, url)
            applied = call.recordings.stop_one(url, open_world=open_world)
        if not applied:
            return self._not_found("Recording" if kind == "recording" else "Stream")
        self.stop_counts[key] += 1
        return _Answer(204)

    def _answer(
        self, method: str, target: tuple[str, ...] | None, headers: Any, body: bytes
    ) -> _Answer:
        if target is None or method != "DELETE":
            return self._not_found("Resource")
        if (
            headers.get("X-Auth-ID") != self.auth_id
            or headers.get("X-Auth-Token") != self.auth_token
            or target[1] != self.auth_id
        ):
            body401 = {"api_id": str(uuid.uuid4()), "error": "Authentication failed"}
            return _Answer(401, json.dumps(body401).encode())
        return self._apply(target, body)

    def _record(
        self,
        method: str,
        path: str,
        target: tuple[str, ...] | None,
        body: bytes,
        status: int | None,
        action: _Action,
    ) -> None:
        self.request_count += 1
        if self._waiters:
            for waiter in [w for w in self._waiters if w[0] <= self.request_count]:
                self._waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(None)
        if self.record_requests:
            fault = None if action is _Action.ANSWER else action.name.lower()
            self.requests.append(RecordedRequest(method, path, target, body, status, fault))

    async def _handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> _Answer | None:
        """
        Decide the fault, apply the stop if it gets that far; None means drop or hang.
        """
        action = self._decide()
        faults = self.faults
        target = self._parse(raw_path)
        if action is _Action.HANG:
            self._record(method, raw_path, target, body, None, action)
            await asyncio.Event().wait()
        if faults.latency:
            await asyncio.sleep(faults.latency)
        answer: _Answer | None
        if action is _Action.ERROR_503:
            html = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
            answer = _Answer(503, html, {"Content-Type": "text/html"})
        elif action is _Action.RATE_LIMIT:
            answer = _rate_limited(faults.retry_after)
        elif action is _Action.DROP_BEFORE:
            answer = None
        else:
            answer = self._answer(method, target, headers, body)
        # DROP_AFTER applied the stop above and now loses the answer.
        delivered = None if action is _Action.DROP_AFTER else answer
        self._record(
            method, raw_path, target, body, delivered.status if delivered else None, action
        )
        if action is _Action.DELAY:
            # Applied now, answered late: a client that gave up never hears of it.
            await asyncio.sleep(faults.delay_seconds)
        return delivered

    # -- front ends ---------------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """
        An httpx transport that answers in process: ``httpx.AsyncClient(transport=...)``.
        """
        return _FakeTransport(self)

    def http_client(self) -> httpx.AsyncClient:
        """
        An httpx.AsyncClient on this fake, for ``AsyncVobiz(http_client=...)``.
        """
        return httpx.AsyncClient(transport=self.transport())

    @contextlib.asynccontextmanager
    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 75.0
    ) -> AsyncIterator[str]:
        """
        Serve on a real loopback socket; yields the base URL for ``AsyncVobiz(base_url=...)``.

        ``idle_timeout`` is how long an idle keep-alive connection is kept open.
        """
        if not is_loopback(host):
            raise ValueError(f"the fake Vobiz listens on loopback only, not {host!r}")
        served_on: dict[int, int] = {}

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            if request.path == "/_fake/stats":
                return web.json_response(self.stats())
            body = await request.read()
            answer = await self._handle(
                request.method, request.raw_path.partition("?")[0], request.headers, body
            )
            if answer is None:
                # Drop the connection with no response at all.
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
            limit = self.faults.keepalive_requests
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
            handle, access_log=None, keepalive_timeout=idle_timeout, handler_cancellation=True
        )
        runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        sockets = server_sockets(site)
        bound_port = sockets[0].getsockname()[1]
        netloc = f"[{host}]" if ":" in host else host
        try:
            yield f"http://{netloc}:{bound_port}{API_PREFIX}"
        finally:
            await runner.cleanup()


def server_sockets(site: web.TCPSite) -> list[Any]:
    """
    The listening sockets of a started site.
    """
    server = site._server  # aiohttp offers no public accessor for the bound port
    assert server is not None
    return list(server.sockets)  # type: ignore[attr-defined]


def _key(target: Target) -> tuple[str, ...]:
    if isinstance(target, Stream):
        return ("stream", target.call_uuid, target.stream_id)
    if isinstance(target, AllStreams):
        return ("all_streams", target.call_uuid)
    if target.url is None:
        return ("recording", target.call_uuid)
    return ("recording", target.call_uuid, target.url)


def _recording_url(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    url = data.get("URL") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None


def _rate_limited(retry_after: float) -> _Answer:
    body = {
        "status": "error",
        "error": {"code": "RATE_LIMIT", "message": "Rate limit exceeded", "details": {}},
        "timestamp": "2026-01-01T00:00:00Z",
        "requestId": str(uuid.uuid4()),
    }
    return _Answer(
        429,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Retry-After": f"{retry_after:g}"},
    )


class _FakeTransport(httpx.AsyncBaseTransport):
    def __init__(self, fake: FakeVobiz) -> None:
        self._fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = await self._fake._handle(
            request.method,
            request.url.raw_path.decode("ascii").partition("?")[0],
            request.headers,
            body,
        )
        if answer is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)
