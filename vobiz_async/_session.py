"""
The machinery behind one AsyncVobiz: settings, sender, retries and results.

``Session`` is also the named interface the bulk engine uses: ``ensure_open``,
``lease_pool``, ``stop(target, gate=..., limits=...)``, ``refuse``, ``limits_for``,
``fetch(request, parse, gate=...)``, ``observers``, ``clock`` and ``sleep``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Callable
from typing import ClassVar, Protocol, TypeVar

import aiohttp
import httpx

from ._config import CallLimits, Settings
from ._exceptions import (
    MAX_BODY,
    MAX_LIST_BODY,
    APIStatusError,
    ClientClosedError,
    EventLoopError,
    InvalidTargetError,
    MalformedAnswer,
    VobizError,
    is_json_or_empty,
    is_vobiz_error_body,
    malformed_answer,
    parse_error_body,
    status_error,
    transport_error,
    unexpected_response,
    unexpected_send_error,
)
from ._models import Outcome, StopResult
from ._observe import NO_WATCH, AttemptHook, Observers, Watch
from ._redact import Redactor
from ._retry import RETRYABLE_STATUSES, UNGATED, Attempts, Clock, Gate, RetryPolicy, Sleep
from ._routes import Route
from ._sender import Lease, Sender
from ._targets import Target, check_target
from ._telemetry import Telemetry

__all__ = ["Lifecycle", "ListingRequest", "Session"]

logger = logging.getLogger("vobiz_async")

T = TypeVar("T")
#: How a listing's answer is read: its body, and the redactor for what it holds.
Parse = Callable[[bytes, Redactor], T]
#: How one attempt's answer is judged: the response and the request's label in, a value out.
Judge = Callable[[httpx.Response, str, RetryPolicy], T]


class ListingRequest(Protocol):
    """
    A GET request of the route table: what ``fetch`` needs of one.
    """

    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How the request reads in a message.
        """


class Lifecycle(enum.Enum):
    """
    Where a client is in its life.
    """

    OPEN = "open"
    CLOSED = "closed"


class Session:
    """
    Turns targets into requests, runs them under the retry policy, and reports.
    """

    def __init__(
        self,
        settings: Settings,
        sender: Sender,
        *,
        clock: Clock,
        sleep: Sleep,
        on_attempt: AttemptHook | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.sleep = sleep
        self.state = Lifecycle.OPEN
        #: The limits of every call that overrides neither.
        self.limits = settings.limits
        # One Headers object for every request: httpx copies it into each one.
        self._headers = settings.headers()
        self.redact = Redactor(*settings.secrets)
        proxy = settings.network.proxy if settings.network is not None else None
        # Named in connection errors: a failure at the proxy is not one at the API.
        self._via = f" through the proxy {proxy.describe()}" if proxy is not None else ""
        self.observers = Observers(hook=on_attempt, telemetry=telemetry, redact=self.redact)

    @property
    def retry(self) -> RetryPolicy:
        """
        The client's retry policy.
        """
        return self.settings.retry

    def limits_for(self, *, timeout: float | None, retry: RetryPolicy | None) -> CallLimits:
        """
        One call's limits, overriding the client's where given; ConfigurationError if bad.
        """
        if timeout is None and retry is None:
            return self.limits
        return self.settings.limits_for(timeout=timeout, retry=retry)

    def ensure_open(self) -> None:
        """
        Raise ClientClosedError after ``aclose()``.
        """
        if self.state is Lifecycle.CLOSED:
            raise ClientClosedError("this AsyncVobiz client is closed; create a new one")

    async def aclose(self) -> None:
        """
        Close once; later calls do nothing.
        """
        if self.state is Lifecycle.CLOSED:
            return
        self.state = Lifecycle.CLOSED
        try:
            await self.sender.aclose()
        except EventLoopError:
            # Refused before closing anything: the client stays open on its own loop.
            self.state = Lifecycle.OPEN
            raise

    def lease_pool(self) -> Lease:
        """
        A batch's claim to widen the pool, where the pool is ours; release it when done.
        """
        return self.sender.lease()

    async def stop(
        self, target: Target, *, gate: Gate = UNGATED, limits: CallLimits | None = None
    ) -> StopResult:
        """
        Stop one target and report how it went; never raises VobizError.

        Validate, build, run the retry policy, read the result. ``gate`` is the
        batch's pacing and brakes around every attempt; ``limits`` the call's
        timeout and retry policy (the client's by default).
        """
        with self.observers.watch(target) as watch:
            result = await self._stop(target, gate, limits or self.limits, watch)
            watch.finished(result)
        return result

    def refuse(self, target: Target, error: VobizError) -> StopResult:
        """
        A target failed without a request (a batch's brake is on); watched as any stop is.

        A target that is not valid fails with its own InvalidTargetError instead.
        """
        with self.observers.watch(target) as watch:
            try:
                check_target(target)
            except InvalidTargetError as exc:
                error = exc
            result = StopResult(target, Outcome.FAILED, error=error)
            watch.finished(result)
        return result

    async def _stop(
        self, target: Target, gate: Gate, limits: CallLimits, watch: Watch
    ) -> StopResult:
        try:
            self.ensure_open()
            request = self._build(check_target(target), limits.timeout)
        except (ClientClosedError, InvalidTargetError) as exc:
            return StopResult(target, Outcome.FAILED, error=exc)
        attempts = self._attempts(request, limits, gate, watch)
        send = functools.partial(self._send, request, attempts, self._judge, MAX_BODY)
        try:
            response = await attempts.run(send)
        except VobizError as exc:
            status = exc if isinstance(exc, APIStatusError) else None
            return StopResult(
                target,
                Outcome.FAILED,
                status_code=status.status_code if status else None,
                attempts=attempts.count,
                elapsed=self._elapsed(attempts),
                api_id=status.api_id if status else None,
                error=exc,
            )
        if response.status_code == 404:
            outcome = Outcome.NOT_FOUND
            api_id, _ = parse_error_body(response.content)
        else:
            outcome, api_id = Outcome.STOPPED, None
        return StopResult(
            target,
            outcome,
            status_code=response.status_code,
            attempts=attempts.count,
            elapsed=self._elapsed(attempts),
            api_id=api_id,
        )

    async def fetch(
        self,
        request: ListingRequest,
        parse: Parse[T],
        *,
        gate: Gate = UNGATED,
        limits: CallLimits | None = None,
    ) -> T:
        """
        GET a listing and read its answer with ``parse``; raise the typed error if that fails.

        The same checks, retries, deadline, redaction and batch gate as a stop.
        A GET changes nothing, so every retryable failure is retried, a
        connection dropped after sending included. A 404 in Vobiz's shape raises
        NotFoundError (the call has ended); a success that ``parse`` cannot read
        raises UnexpectedResponseError, and is not retried. ``limits`` are the
        call's timeout and retry policy (the client's by default).
        """
        self.ensure_open()
        limits = limits or self.limits
        built = self._build(request.route.check(request), limits.timeout)
        # on_attempt and telemetry watch stops, not listings
        attempts = self._attempts(built, limits, gate, NO_WATCH)
        judge = functools.partial(self._judge_listing, parse=parse)
        return await attempts.run(
            functools.partial(self._send, built, attempts, judge, MAX_LIST_BODY)
        )

    def _attempts(
        self, request: httpx.Request, limits: CallLimits, gate: Gate, watch: Watch
    ) -> Attempts:
        return Attempts(
            limits.retry,
            timeout=limits.timeout,
            clock=self.clock,
            sleep=self.sleep,
            gate=gate,
            preflight=self.ensure_open,
            label=_label(request),
            watch=watch,
        )

    def _elapsed(self, attempts: Attempts) -> float:
        # The span the deadline covers: first request sent to last answer; 0 if none was.
        return 0.0 if attempts.started is None else self.clock() - attempts.started

    def _build(self, target: Target | ListingRequest, timeout: float) -> httpx.Request:
        route = target.route
        try:
            return self.sender.build(
                route.method,
                self.settings.account_url + route.path_for(target) + route.query_for(target),
                headers=self._headers,
                json=route.json_for(target),
                timeout=timeout,
            )
        except Exception as exc:
            # Checked targets build; whatever still refuses is this target's failure.
            raise InvalidTargetError(
                f"cannot build a request for {target.describe()[:200]}: {type(exc).__name__}"
            ) from None

    async def _send(
        self, request: httpx.Request, attempts: Attempts, judge: Judge[T], limit: int
    ) -> T:
        """
        One attempt: what ``judge`` makes of the answer, else the typed error.

        The attempt's timeout runs from when the request is handed to the
        transport: a wait for a pool slot is the client's queue, not the server's.
        ``limit`` is how much of a success answer is read.
        """
        label = _label(request)
        failure: VobizError | None
        async with self.sender.slot():
            timeout = attempts.begin()
            try:
                with attempts.watch.current():
                    async with asyncio.timeout(timeout):
                        response = await self.sender.send(request, limit=limit)
            except Exception as exc:  # whatever one send raises is its target's failure
                failure = self._send_failure(exc, label, timeout)
            else:
                failure = None
        # Raised outside the except block, so that the library's own exception
        # (which may hold our headers) is not chained as its context.
        if failure is not None:
            attempts.answered(None, failure)
            raise failure
        status = response.status_code
        try:
            judged = judge(response, label, attempts.policy)
        except VobizError as exc:
            failure = exc
        except Exception as exc:  # reading a hostile answer must not escape as a crash
            failure = unexpected_send_error(exc, label=label, redact=self.redact)
        seconds = attempts.answered(status, failure)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s -> %d (attempt %d, %.3fs)",
                label,
                status,
                attempts.count,
                seconds,
                extra={"vobiz_status": status, "vobiz_attempt": attempts.count},
            )
        if failure is not None:
            raise failure
        return judged

    def _judge(self, response: httpx.Response, label: str, policy: RetryPolicy) -> httpx.Response:
        """
        The response if it is a stop or a Vobiz 404; else the error it amounts to.
        """
        status = response.status_code
        if 200 <= status < 300:
            if is_json_or_empty(response.content):
                return response
            raise unexpected_response(response, label=label, redact=self.redact)
        if status == 404 and is_vobiz_error_body(response.content):
            return response
        raise self._failure(response, label, policy)

    def _judge_listing(
        self, response: httpx.Response, label: str, policy: RetryPolicy, *, parse: Parse[T]
    ) -> T:
        """
        What ``parse`` reads from a success; else the error the answer amounts to.
        """
        status = response.status_code
        if not 200 <= status < 300:
            raise self._failure(response, label, policy)
        content = response.content
        if len(content) >= MAX_LIST_BODY:
            why: str | None = f"larger than the {MAX_LIST_BODY // 2**20} MiB this client reads"
        else:
            try:
                return parse(content, self.redact)
            except MalformedAnswer as exc:
                # No reason given: the body is empty or not JSON, and is shown instead.
                why = str(exc) or None
        raise malformed_answer(response, label=label, why=why, redact=self.redact)

    def _failure(self, response: httpx.Response, label: str, policy: RetryPolicy) -> APIStatusError:
        """
        The error for an answer that is not a success: NotFoundError for a Vobiz 404.
        """
        if response.status_code == 404 and not is_vobiz_error_body(response.content):
            return unexpected_response(response, label=label, redact=self.redact)
        retryable = response.status_code in RETRYABLE_STATUSES
        return status_error(
            response,
            label=label,
            max_retry_after=policy.max_retry_after if retryable else None,
            redact=self.redact,
        )

    def _send_failure(self, exc: Exception, label: str, timeout: float) -> VobizError:
        if self.state is Lifecycle.CLOSED:
            return ClientClosedError(f"the client was closed while sending {label}")
        if isinstance(exc, httpx.RequestError | aiohttp.ClientError | OSError):
            # OSError includes the TimeoutError of asyncio.timeout above.
            return transport_error(
                exc, label=label, timeout=timeout, redact=self.redact, via=self._via
            )
        return unexpected_send_error(exc, label=label, redact=self.redact)


def _label(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"
