"""
AsyncVobiz: one pooled HTTP client, one retry policy, three kinds of stop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import platform
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

import aiohttp
import httpx
import tenacity
from httpx_aiohttp import AiohttpTransport

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ConfigurationError,
    InvalidTargetError,
    NotFoundError,
    VobizError,
    error_class_for,
    parse_error_body,
)
from ._models import (
    AllStreams,
    BulkReport,
    Outcome,
    Recording,
    StopResult,
    Stream,
    Target,
    check_identifier,
    check_target,
)
from ._retry import RetryPolicy, parse_retry_after
from ._version import __version__

__all__ = ["DEFAULT_BASE_URL", "AsyncVobiz"]

logger = logging.getLogger("vobiz_async")

DEFAULT_BASE_URL = "https://api.vobiz.ai/api/v1"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 100

USER_AGENT = (
    f"vobiz-async/{__version__} Python/{platform.python_version()} httpx/{httpx.__version__}"
)

SleepFunc = Callable[[float], Awaitable[None]]
ResultHook = Callable[[StopResult], object]


class AsyncVobiz:
    """
    Stop Vobiz streams and recordings from asyncio code.

    Use one instance for the life of the process (or of the web app): it holds
    the connection pool. Credentials and base URL fall back to the
    ``VOBIZ_AUTH_ID``, ``VOBIZ_AUTH_TOKEN`` and ``VOBIZ_BASE_URL`` variables.

    ``http_client`` replaces the default client (httpx on aiohttp): it is used
    as given, hooks and all, and never closed here. ``transport`` keeps our own
    client but swaps what is under it (``FakeVobiz().transport()`` in tests);
    we close it. ``sleep`` and ``clock`` exist so that tests can run retries
    without waiting.
    """

    def __init__(
        self,
        auth_id: str | None = None,
        auth_token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: SleepFunc = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        auth_id = auth_id if auth_id is not None else os.environ.get("VOBIZ_AUTH_ID")
        auth_token = auth_token if auth_token is not None else os.environ.get("VOBIZ_AUTH_TOKEN")
        if not auth_id or not auth_token:
            missing = [
                name
                for name, value in (("VOBIZ_AUTH_ID", auth_id), ("VOBIZ_AUTH_TOKEN", auth_token))
                if not value
            ]
            raise ConfigurationError(
                f"missing Vobiz credentials: set {' and '.join(missing)} "
                "or pass auth_id= and auth_token="
            )
        self.auth_id = check_identifier("auth_id", auth_id)
        if not (isinstance(auth_token, str) and auth_token.isascii() and auth_token.isprintable()):
            # Never echo the value: it is the secret.
            raise ConfigurationError("auth_token must be a non-empty printable ASCII str")
        self._token = auth_token
        self.base_url = _check_base_url(base_url or os.environ.get("VOBIZ_BASE_URL"))
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not (isinstance(max_connections, int) and max_connections > 0):
            raise ValueError(f"max_connections must be an int > 0, got {max_connections!r}")
        self.timeout = float(timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._account_url = f"{self.base_url}/Account/{self.auth_id}/Call/"
        # One Headers object for both paths: httpx copies it into each request.
        self._headers = httpx.Headers(
            {
                "X-Auth-ID": self.auth_id,
                "X-Auth-Token": auth_token,
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        self._owns_http = http_client is None
        if http_client is None:
            self._transport: httpx.AsyncBaseTransport | None = (
                transport if transport is not None else self._default_transport()
            )
            self._http = httpx.AsyncClient(
                transport=self._transport, timeout=self.timeout, follow_redirects=False
            )
        else:
            self._transport = None
            self._http = http_client
        # Our own pool is bounded here rather than in aiohttp's connector, because
        # a semaphore can be widened for stop_many() and aiohttp's limit cannot.
        self._pool_slots = asyncio.Semaphore(max_connections) if self._owns_http else None
        self._pool_size = max_connections
        self._request_extensions = {"timeout": httpx.Timeout(self.timeout).as_dict()}
        self._closed = False

    def _default_transport(self) -> httpx.AsyncBaseTransport:
        # limit=0 in aiohttp means "no limit": _pool_slots bounds it instead.
        return AiohttpTransport(
            limits=httpx.Limits(max_connections=None, keepalive_expiry=5.0),
            client=lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=5.0),
                timeout=aiohttp.ClientTimeout(total=None),
            ),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncVobiz auth_id={self.auth_id!r} base_url={self.base_url!r} {state}>"

    async def __aenter__(self) -> Self:
        self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """
        Close the connection pool, unless it is the caller's own ``http_client``.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    @property
    def max_connections(self) -> int:
        """
        Requests in flight at most: as constructed, or as widened by stop_many().
        """
        return self._pool_size

    @property
    def is_closed(self) -> bool:
        """
        True after ``aclose()``.
        """
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")

    # -- single stops -----------------------------------------------------------

    async def stop_stream(
        self, call_uuid: str, stream_id: str, *, missing_ok: bool = True
    ) -> StopResult:
        """
        Stop one stream. A 404 (already stopped, unknown) is NOT_FOUND unless ``missing_ok=False``.
        """
        return await self.stop(Stream(call_uuid, stream_id), missing_ok=missing_ok)

    async def stop_all_streams(self, call_uuid: str, *, missing_ok: bool = True) -> StopResult:
        """
        Stop every stream on a call.
        """
        return await self.stop(AllStreams(call_uuid), missing_ok=missing_ok)

    async def stop_recording(
        self, call_uuid: str, url: str | None = None, *, missing_ok: bool = True
    ) -> StopResult:
        """
        Stop the recording at ``url``, or every recording on the call when ``url`` is None.
        """
        return await self.stop(Recording(call_uuid, url), missing_ok=missing_ok)

    async def stop(self, target: Target, *, missing_ok: bool = True) -> StopResult:
        """
        Stop any target; raise the typed error if it failed once retries were spent.
        """
        self._ensure_open()
        result = await self._run(target)
        if result.error is not None:
            raise result.error
        if result.outcome is Outcome.NOT_FOUND and not missing_ok:
            error = NotFoundError(
                f"404 Not Found: nothing to stop for {_describe(target)}",
                status_code=404,
                api_id=result.api_id,
            )
            error.attempts = result.attempts
            raise error
        return result

    # -- bulk -------------------------------------------------------------------

    async def stop_many(
        self,
        targets: Iterable[Target] | AsyncIterable[Target],
        *,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
    ) -> BulkReport:
        """
        Stop every target, at most ``concurrency`` at once and ``rate_limit`` requests a second.

        One result per target, in input order; one target's failure never stops the rest.
        """
        from ._bulk import stop_many

        return await stop_many(
            self, targets, concurrency=concurrency, rate_limit=rate_limit, on_result=on_result
        )

    def iter_stop_many(
        self,
        targets: Iterable[Target] | AsyncIterable[Target],
        *,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
    ) -> AsyncIterator[StopResult]:
        """
        Like stop_many(), yielding results as they complete and holding none of them.
        """
        from ._bulk import iter_stop_many

        return iter_stop_many(
            self, targets, concurrency=concurrency, rate_limit=rate_limit, on_result=on_result
        )

    # -- the machinery ------------------------------------------------------------

    def _widen_pool(self, size: int) -> None:
        """
        Grow our own pool to ``size`` so that a wide batch never waits on it.
        """
        if self._pool_slots is None or size <= self._pool_size:
            return
        for _ in range(size - self._pool_size):
            self._pool_slots.release()
        self._pool_size = size

    def _build_request(self, target: Target) -> httpx.Request:
        url = self._account_url
        json_body = None
        if isinstance(target, Stream):
            url += f"{target.call_uuid}/Stream/{target.stream_id}/"
        elif isinstance(target, AllStreams):
            url += f"{target.call_uuid}/Stream/"
        else:
            url += f"{target.call_uuid}/Record/"
            if target.url is not None:
                json_body = {"URL": target.url}
        if self._transport is None:
            # The caller's client: let it merge its own headers, cookies and timeouts.
            return self._http.build_request("DELETE", url, headers=self._headers, json=json_body)
        return httpx.Request(
            "DELETE",
            url,
            headers=self._headers,
            json=json_body,
            extensions=self._request_extensions,
        )

    async def _dispatch(self, request: httpx.Request) -> httpx.Response:
        """
        Send one request and read its whole (small) body.

        Our own client has no auth, cookies, event hooks or redirects by
        construction, so its requests go straight to its transport: httpx's
        client layer would cost more CPU than aiohttp's whole request. A
        caller's client gets the full ``send()``, their hooks included.
        """
        if self._transport is None:
            return await self._http.send(request, follow_redirects=False)
        assert self._pool_slots is not None
        async with self._pool_slots:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        response.request = request
        return response

    async def _run(
        self,
        target: Target,
        *,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
        on_error: Callable[[VobizError], None] | None = None,
    ) -> StopResult:
        """
        Stop one target and report how it went; never raises VobizError.

        ``before_attempt`` runs before every request (the bulk rate limiter), and
        ``on_error`` sees every failed attempt (the bulk 429 and 401 brakes).
        """
        started = self._clock()
        try:
            self._ensure_open()
            check_target(target)
        except (ClientClosedError, InvalidTargetError) as exc:
            return StopResult(target, Outcome.FAILED, error=exc)
        request = self._build_request(target)
        attempts = 0

        async def attempt() -> httpx.Response:
            nonlocal attempts
            if before_attempt is not None:
                await before_attempt()
            attempts += 1
            try:
                return await self._send(request, started, attempts)
            except VobizError as exc:
                if on_error is not None:
                    on_error(exc)
                raise

        try:
            try:
                # The common case is one attempt that succeeds: run it without
                # tenacity, whose per-operation setup costs more than the request's
                # own client-side work. Only a retryable failure builds a retrier.
                response = await attempt()
            except VobizError as first_error:
                if attempts >= self.retry.max_attempts or not self.retry.should_retry(first_error):
                    raise
                response = await self._retry_after_first(first_error, attempt, started)
        except VobizError as exc:
            exc.attempts = attempts
            return StopResult(
                target,
                Outcome.FAILED,
                status_code=getattr(exc, "status_code", None),
                attempts=attempts,
                elapsed=self._clock() - started,
                api_id=getattr(exc, "api_id", None),
                error=exc,
            )
        api_id = None
        if response.status_code == 404:
            outcome = Outcome.NOT_FOUND
            api_id, _ = parse_error_body(response.content)
        else:
            outcome = Outcome.STOPPED
        return StopResult(
            target,
            outcome,
            status_code=response.status_code,
            attempts=attempts,
            elapsed=self._clock() - started,
            api_id=api_id,
        )

    async def _retry_after_first(
        self,
        first_error: VobizError,
        attempt: Callable[[], Awaitable[httpx.Response]],
        started: float,
    ) -> httpx.Response:
        pending: VobizError | None = first_error
        retrying = self.retry.retrying(
            started=started, clock=self._clock, sleep=self._sleep, before_sleep=_log_retry
        )
        async for try_ in retrying:
            with try_:
                if pending is not None:
                    # Replay the first attempt's failure so that tenacity counts
                    # it and waits after it exactly as if it had made that call.
                    error, pending = pending, None
                    raise error
                return await attempt()
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    async def _send(self, request: httpx.Request, started: float, attempt: int) -> httpx.Response:
        """
        One attempt: the response if it is 2xx or 404, else the typed error.
        """
        timeout = self.timeout
        if self.retry.deadline is not None:
            timeout = min(timeout, self.retry.deadline - (self._clock() - started))
            if timeout <= 0:
                raise APITimeoutError(
                    f"deadline of {self.retry.deadline}s reached before {_route(request)}"
                )
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                response = await self._dispatch(request)
        except (httpx.RequestError, aiohttp.ClientError, OSError) as exc:
            # OSError includes the TimeoutError of asyncio.timeout above.
            raise _transport_error(exc, request, timeout) from exc
        status = response.status_code
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s -> %d (attempt %d, %.3fs)",
                _route(request),
                status,
                attempt,
                time.perf_counter() - sent,
                extra={"vobiz_status": status, "vobiz_attempt": attempt},
            )
        if 200 <= status < 300 or status == 404:
            return response
        raise self._status_error(response)

    def _status_error(self, response: httpx.Response) -> APIStatusError:
        status = response.status_code
        api_id, detail = parse_error_body(response.content)
        if detail is None:
            detail = _describe_body(response)
        reason = response.reason_phrase or ""
        message = f"{status} {reason}".rstrip() + f" from {_route(response.request)}: {detail}"
        headers = response.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None and "retry-after-ms" in headers:
            ms = parse_retry_after(headers["retry-after-ms"])
            retry_after = None if ms is None else ms / 1000
        if 300 <= status < 400:
            message += f" (redirect to {headers.get('location', '?')!r} not followed)"
        elif self.retry.refuses_wait(retry_after):
            message += (
                f" (Retry-After {retry_after:g}s is longer than "
                f"max_retry_after={self.retry.max_retry_after:g}s: not retried)"
            )
        # A proxy that echoes request headers must not leak the token through us.
        message = message.replace(self._token, "***")
        return error_class_for(status)(
            message,
            status_code=status,
            api_id=api_id,
            response=response,
            retry_after=retry_after,
        )


def _check_base_url(value: str | None) -> str:
    """
    Refuse any base URL that would send the token in clear text off this machine.
    """
    raw = (value or DEFAULT_BASE_URL).rstrip("/")
    if not (raw.isascii() and raw.isprintable()) or " " in raw:
        raise ConfigurationError(f"base_url must be printable ASCII without spaces: {raw!r}")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host: {raw!r}")
    if url.query or url.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment: {raw!r}")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ConfigurationError(
            f"base_url {raw!r} is plain http to a non-loopback host; the auth token "
            "would travel in clear text. Use https (http is allowed for loopback only)."
        )
    return raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _route(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"


def _describe(target: Target) -> str:
    if isinstance(target, Stream):
        return f"stream {target.stream_id!r} on call {target.call_uuid!r}"
    if isinstance(target, AllStreams):
        return f"streams on call {target.call_uuid!r}"
    if target.url is not None:
        return f"recording {target.url!r} on call {target.call_uuid!r}"
    return f"recordings on call {target.call_uuid!r}"


def _describe_body(response: httpx.Response) -> str:
    if not response.content:
        return "(empty body)"
    snippet = " ".join(response.text.split())
    if len(snippet) > 120:
        snippet = snippet[:117] + "..."
    return f"non-JSON body {snippet!r}"


def _transport_error(exc: BaseException, request: httpx.Request, timeout: float) -> VobizError:
    """
    Name a transport failure for what it was.

    httpx-aiohttp maps every aiohttp ClientConnectionError, a server that hung
    up included, to httpx.ConnectTimeout; the aiohttp cause tells them apart.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        exc = cause
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        return APITimeoutError(f"no response within {timeout:.3g}s for {_route(request)}")
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return APIConnectionError(f"connection failed for {_route(request)}: {what}")


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.info(
        "retrying in %.2fs after attempt %d: %s",
        state.upcoming_sleep,
        state.attempt_number,
        exc,
        extra={"vobiz_attempt": state.attempt_number, "vobiz_wait": state.upcoming_sleep},
    )
