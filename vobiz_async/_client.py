"""
AsyncVobiz: one pooled HTTP client, one retry policy, three kinds of stop, and discovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx

from ._bulk import (
    Calls,
    ListingHook,
    ResultHook,
    SentHook,
    Skip,
    StopResultStream,
    StreamsTo,
    iter_stop_many,
    iter_teardown,
    stop_many,
    teardown,
)
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    CallLimits,
    Settings,
)
from ._discovery import StreamInfo, iter_live_calls, stream_pages
from ._exceptions import ConfigurationError, NotFoundError
from ._models import BulkReport, Outcome, StopResult
from ._network import ProxyTypes, VerifyTypes
from ._observe import AttemptHook, check_hook
from ._retry import RetryPolicy, Sleep
from ._sender import (
    CallerClient,
    DefaultTransports,
    GivenTransport,
    OwnPool,
    Sender,
    Transports,
)
from ._session import Lifecycle, Session
from ._targets import AllStreams, Recording, Stream, Target
from ._telemetry import telemetry_for

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT_BASE_URL", "AsyncVobiz"]


class AsyncVobiz:
    """
    Stop Vobiz streams and recordings from asyncio code.

    Use one instance for the life of the process (or of the web app): it holds
    the connection pool. Credentials and base URL fall back to the
    ``VOBIZ_AUTH_ID``, ``VOBIZ_AUTH_TOKEN`` and ``VOBIZ_BASE_URL`` variables.
    Any bad argument raises ConfigurationError (a ValueError) here.

    One client per event loop: its connection pool belongs to the loop it
    runs on. Once that loop has closed (each ``asyncio.run()`` closes its
    own), the next use on another loop opens a new pool; used on another loop
    while its own is still open, it raises EventLoopError. Construction
    builds nothing that costs: the pool opens at the first request.

    The default transport (httpx on aiohttp) connects as httpx would:

    - ``proxy``: a proxy URL (``http://user:password@host:port``, http or
      https) or an ``httpx.Proxy`` (URL and auth only), used for every
      request. Without it, with ``trust_env``, ``HTTPS_PROXY`` or
      ``ALL_PROXY`` (either case) is used unless ``NO_PROXY`` names the host.
      A plain-http base URL (loopback only) never goes through a proxy: the
      proxy would see the token in clear text.
    - ``verify``: True (the default) trusts certifi's CA bundle, or with
      ``trust_env`` the one named by ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``;
      a CA bundle's path (file or hashed directory) or an ``ssl.SSLContext``
      trusts those instead. False is refused: it would hand the token to
      anyone in the middle.
    - ``trust_env``: False ignores the proxy and CA variables (not the
      ``VOBIZ_*`` ones).

    ``http_client`` replaces the default client (httpx on aiohttp): it is used
    as given, hooks and all, and never closed here. ``transport`` keeps our own
    client but swaps what is under it (``FakeVobiz().transport()`` in tests);
    we close it. With either, ``proxy``, ``verify`` and ``trust_env`` are
    theirs to configure, and passing them here is a ConfigurationError.
    ``sleep`` and ``clock`` exist so that tests can run retries without waiting.

    ``on_attempt`` is called once per stop request sent (listings are not
    reported), with an ``Attempt`` (the target, its request number, status or
    error type, duration, whether another request follows and after what wait;
    never a header, body or error object). It is called synchronously in the
    middle of the stop, so keep it quick; an exception it raises is logged once
    per client (redacted) and ignored: it never breaks a stop.

    With the OpenTelemetry API installed (the ``otel`` extra), every stop,
    batch and request is traced and measured through ``tracer_provider`` and
    ``meter_provider``, by default the global ones (see the README's
    Telemetry section).
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
        proxy: ProxyTypes | None = None,
        verify: VerifyTypes = True,
        trust_env: bool = True,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_attempt: AttemptHook | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        settings = Settings.resolve(
            auth_id,
            auth_token,
            base_url=base_url,
            timeout=timeout,
            max_connections=max_connections,
            retry=retry,
            proxy=proxy,
            verify=verify,
            trust_env=trust_env,
            default_transport=http_client is None and transport is None,
        )
        _check_collaborators(http_client, transport, sleep, clock)
        hook = check_hook(on_attempt)
        telemetry = telemetry_for(
            settings, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        sender: Sender
        if http_client is not None:
            if transport is not None:
                raise ConfigurationError("pass http_client or transport, not both")
            sender = CallerClient(http_client, max_connections=max_connections)
        else:
            transports: Transports
            if transport is not None:
                transports = GivenTransport(transport)
            else:
                assert settings.network is not None  # resolved for the default transport
                transports = DefaultTransports(settings.network)
            sender = OwnPool(transports, max_connections=max_connections, timeout=settings.timeout)
        self._session = Session(
            settings, sender, clock=clock, sleep=sleep, on_attempt=hook, telemetry=telemetry
        )

    def __repr__(self) -> str:
        settings = self._session.settings
        return (
            f"<AsyncVobiz auth_id={settings.auth_id!r} base_url={settings.base_url!r} "
            f"{self._session.state.value}>"
        )

    # -- configuration, read-only -----------------------------------------------------

    @property
    def auth_id(self) -> str:
        """
        The account id, also the path segment after ``/Account/``.
        """
        return self._session.settings.auth_id

    @property
    def base_url(self) -> str:
        """
        The API base URL, without a trailing slash.
        """
        return self._session.settings.base_url

    @property
    def timeout(self) -> float:
        """
        Seconds per attempt.
        """
        return self._session.settings.timeout

    @property
    def retry(self) -> RetryPolicy:
        """
        The retry policy of every stop.
        """
        return self._session.retry

    @property
    def max_connections(self) -> int:
        """
        Requests in flight at most: as constructed, or as widened by stop_many().
        """
        return self._session.sender.capacity

    @property
    def is_closed(self) -> bool:
        """
        True after ``aclose()``.
        """
        return self._session.state is Lifecycle.CLOSED

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._session.ensure_open()
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
        await self._session.aclose()

    # -- single stops -----------------------------------------------------------------

    async def stop_stream(
        self,
        call_uuid: str,
        stream_id: str,
        *,
        missing_ok: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StopResult:
        """
        Stop one stream. A 404 (already stopped, unknown) is NOT_FOUND unless ``missing_ok=False``.

        ``timeout`` and ``retry`` override the client's for this call (see ``stop``).
        """
        return await self.stop(
            Stream(call_uuid, stream_id), missing_ok=missing_ok, timeout=timeout, retry=retry
        )

    async def stop_all_streams(
        self,
        call_uuid: str,
        *,
        missing_ok: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StopResult:
        """
        Stop every stream on a call; ``timeout`` and ``retry`` as in ``stop``.
        """
        return await self.stop(
            AllStreams(call_uuid), missing_ok=missing_ok, timeout=timeout, retry=retry
        )

    async def stop_recording(
        self,
        call_uuid: str,
        url: str | None = None,
        *,
        missing_ok: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StopResult:
        """
        Stop the recording at ``url``, or every recording on the call when ``url`` is None.

        ``timeout`` and ``retry`` as in ``stop``.
        """
        return await self.stop(
            Recording(call_uuid, url), missing_ok=missing_ok, timeout=timeout, retry=retry
        )

    async def stop(
        self,
        target: Target,
        *,
        missing_ok: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StopResult:
        """
        Stop any target; raise the typed error if it failed once retries were spent.

        ``timeout`` (seconds per attempt) and ``retry`` (a RetryPolicy, whose
        ``deadline`` bounds the whole stop) override the client's for this
        call only; None keeps the client's. A bad value raises
        ConfigurationError before anything is sent.
        """
        limits = self._session.limits_for(timeout=timeout, retry=retry)
        result = await self._session.stop(target, limits=limits)
        if result.error is not None:
            raise result.error
        if result.outcome is Outcome.NOT_FOUND and not missing_ok:
            error = NotFoundError(
                f"404 Not Found: nothing to stop for {target.describe()}",
                status_code=404,
                api_id=result.api_id,
            )
            error.attempts = result.attempts
            raise error
        return result

    # -- bulk -------------------------------------------------------------------------

    async def stop_many(
        self,
        targets: Iterable[Target] | AsyncIterable[Target],
        *,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> BulkReport:
        """
        Stop every target, at most ``concurrency`` at once and ``rate_limit`` requests a second.

        One result per target, in input order; one target's failure never stops the rest.
        ``timeout`` and ``retry`` override the client's for every stop of this
        batch (``retry.deadline`` bounds each stop, not the batch).
        """
        limits = self._session.limits_for(timeout=timeout, retry=retry)
        return await stop_many(
            self._session,
            targets,
            concurrency=concurrency,
            rate_limit=rate_limit,
            on_result=on_result,
            limits=limits,
        )

    def iter_stop_many(
        self,
        targets: Iterable[Target] | AsyncIterable[Target],
        *,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        on_sent: SentHook | None = None,
    ) -> StopResultStream:
        """
        Like stop_many(), yielding results as they complete and holding none of them.

        ``async with vobiz.iter_stop_many(targets) as results:`` cancels what is
        still in flight when the block is left, however it is left.
        ``on_sent`` (a plain function) is called with each target when its
        first request is handed to the transport: from then on the stop may
        have been applied. A target still waiting in the client (``rate_limit``,
        a free worker or connection) has not been sent.
        """
        limits = self._session.limits_for(timeout=timeout, retry=retry)
        return iter_stop_many(
            self._session,
            targets,
            concurrency=concurrency,
            rate_limit=rate_limit,
            on_result=on_result,
            limits=limits,
            on_sent=on_sent,
        )

    # -- discovery --------------------------------------------------------------------

    def live_calls(
        self, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> AsyncIterator[str]:
        """
        The UUID of every live call on the account (``GET Call/?status=live``), as read.

        Every page, if the API pages; each call once per page. A failure, once
        retries are spent, raises its typed error from the ``async for``.
        ``timeout`` and ``retry`` override the client's for each page's request.
        """
        limits = self._session.limits_for(timeout=timeout, retry=retry)
        return iter_live_calls(self._session, limits=limits)

    def list_streams(
        self,
        call_uuid: str,
        *,
        active_only: bool = True,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[StreamInfo]:
        """
        The streams on a call, every page read (``GET Call/{call_uuid}/Stream/``).

        ``active_only`` keeps the streams still running: any whose status is
        not ``completed`` or ``failed``. A call that has ended (or never
        existed) raises NotFoundError; a bad ``call_uuid`` InvalidTargetError.
        ``timeout`` and ``retry`` override the client's for each page's request.
        """
        limits = self._session.limits_for(timeout=timeout, retry=retry)
        return _streams(self._session, call_uuid, active_only=active_only, limits=limits)

    async def teardown(
        self,
        calls: Calls | None = None,
        *,
        streams: bool = True,
        recordings: bool = True,
        streams_to: StreamsTo | None = None,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
        on_listing: ListingHook | None = None,
        skip: Skip | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> BulkReport:
        """
        Stop every stream and recording on each call: by default, on every live call.

        Per call: all its streams with one request, or, with ``streams_to`` (a
        URL prefix of ``service_url``, or a predicate on StreamInfo), a listing
        of its streams and one stop per running stream that matches; then all
        its recordings with one request. ``streams=False`` or
        ``recordings=False`` leaves those alone. Listing and stopping overlap,
        as one batch under ``concurrency`` and ``rate_limit`` (see stop_many).

        One result per request made, in the order they were taken. A call that
        ended meanwhile is NOT_FOUND. A call whose streams could not be listed
        has one result, for ``AllStreams(call_uuid)``: FAILED with the
        listing's error (or NOT_FOUND on a 404), nothing sent to stop them.
        ``on_listing`` sees what each listing found; ``skip`` (asked about
        each target before it is sent) leaves the targets it returns True for
        unsent, with no result. If the live-call list cannot be read, that
        error is raised once everything found before it has been stopped.
        ``timeout`` and ``retry`` override the client's for every request of
        the teardown, listings and stops.
        """
        return await teardown(
            self._session,
            calls,
            streams=streams,
            recordings=recordings,
            streams_to=streams_to,
            concurrency=concurrency,
            rate_limit=rate_limit,
            on_result=on_result,
            on_listing=on_listing,
            skip=skip,
            limits=self._session.limits_for(timeout=timeout, retry=retry),
        )

    def iter_teardown(
        self,
        calls: Calls | None = None,
        *,
        streams: bool = True,
        recordings: bool = True,
        streams_to: StreamsTo | None = None,
        concurrency: int = 50,
        rate_limit: float | None = None,
        on_result: ResultHook | None = None,
        on_listing: ListingHook | None = None,
        skip: Skip | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> StopResultStream:
        """
        Like teardown(), yielding results as they complete and holding none of them.
        """
        return iter_teardown(
            self._session,
            calls,
            streams=streams,
            recordings=recordings,
            streams_to=streams_to,
            concurrency=concurrency,
            rate_limit=rate_limit,
            on_result=on_result,
            on_listing=on_listing,
            skip=skip,
            limits=self._session.limits_for(timeout=timeout, retry=retry),
        )


async def _streams(
    session: Session, call_uuid: str, *, active_only: bool, limits: CallLimits
) -> AsyncIterator[StreamInfo]:
    async for page in stream_pages(session, call_uuid, limits=limits):
        for info in page:
            if info.active or not active_only:
                yield info


def _check_collaborators(
    http_client: object, transport: object, sleep: object, clock: object
) -> None:
    """
    ConfigurationError for a collaborator of the wrong kind, before anything uses it.
    """
    if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
        raise ConfigurationError(
            f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
        )
    if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
        raise ConfigurationError(
            f"transport must be an httpx.AsyncBaseTransport, not {type(transport).__name__}"
        )
    for name, value in (("sleep", sleep), ("clock", clock)):
        if not callable(value):
            raise ConfigurationError(f"{name} must be callable, not {type(value).__name__}")
