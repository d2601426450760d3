"""
Every error this library raises.

The tree::

    VobizError
    ├── ClientClosedError              (also a RuntimeError) the client was used after aclose()
    ├── EventLoopError                 (also a RuntimeError) used on a second event loop at once
    ├── ConfigurationError             (also a ValueError) missing credentials, unsafe base URL
    ├── InvalidTargetError             (also a ValueError) refused before any request was sent
    ├── APIConnectionError             no HTTP response: refused, reset, dropped
    │   ├── APIConnectError            no connection made: refused, DNS, TLS handshake
    │   │   └── TLSCertificateError    the certificate failed verification (never retried)
    │   └── APITimeoutError            no response within the attempt's timeout or the deadline
    └── APIStatusError                 the API answered with a status that is not success
        ├── UnexpectedResponseError    an answer not from the Vobiz API (wrong base URL?)
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── PermissionDeniedError      403
        ├── NotFoundError              404 (raised only with missing_ok=False)
        ├── RateLimitError             429
        └── ServerError                5xx

Errors that come from a request carry ``attempts``: how many requests the
operation made before giving up. No message, ``str()`` or ``repr()`` here ever
holds the auth token: messages are built from the status, the path and the
API's own error text only.
"""

from __future__ import annotations

import email.utils
import json
import math
import ssl
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

import aiohttp
import httpx

from ._redact import MASK, Redactor, shorten

#: Bytes of an answer read at most (see _sender.read_capped).
MAX_BODY = 64 * 1024
#: Bytes of a listing's success answer read at most. The live-call list is one
#: unpaged answer of about 40 bytes per call: 16 MiB holds some 400,000 calls.
#: Error answers to a listing keep MAX_BODY.
MAX_LIST_BODY = 16 * 1024 * 1024

__all__ = [
    "APIConnectError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "EventLoopError",
    "InvalidTargetError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TLSCertificateError",
    "UnexpectedResponseError",
    "VobizError",
    "MalformedAnswer",
    "is_json_or_empty",
    "is_vobiz_error_body",
    "malformed_answer",
    "parse_retry_after",
    "status_error",
    "transport_error",
    "unexpected_response",
    "unexpected_send_error",
]


class VobizError(Exception):
    """
    Root of every error raised by vobiz-async.
    """

    #: Requests sent for the operation that failed; 0 when none was sent.
    attempts: int = 0
    #: Why a batch brake failed this target (unsent, or its retries cut short); None otherwise.
    brake: str | None = None
    #: What went wrong, without the request's method and path: "Authentication failed".
    detail: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def stopped_by_brake(self, why: str, *, sent: bool) -> Self:
        """
        A copy for another target of the same batch, which a brake stopped because of this error.

        Same class and status, so callers match it as they would the original;
        its own message, and nothing of the target that tripped the brake. The
        operating system's error behind it stays its cause: "connection refused".
        """
        detail = getattr(self, "detail", None) or self.message
        status = getattr(self, "status_code", None)
        said = f"{status} {detail}" if status else detail
        copy = _restore(
            type(self),
            f"{'not retried' if sent else 'not sent'}: {why} ({said})",
            {
                **self.__dict__,
                "api_id": None,
                "response": None,
            },
        )
        copy.attempts = 0
        copy.brake = why
        copy.__cause__ = self.__cause__
        return copy

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by state, not by __init__ arguments (subclasses take keyword
        # ones), and without the response: it holds what the server sent back.
        state = (
            {**self.__dict__, "response": None} if "response" in self.__dict__ else self.__dict__
        )
        return (_restore, (type(self), self.message, state))


E = TypeVar("E", bound="VobizError")


def _restore(cls: type[E], message: str, state: dict[str, Any]) -> E:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ClientClosedError(VobizError, RuntimeError):
    """
    The client was used after ``aclose()`` or after its ``async with`` block.
    """


class EventLoopError(VobizError, RuntimeError):
    """
    The client was used on one event loop while the loop it runs on is still open.

    The rule is one client per event loop: a client's connections belong to
    the loop that opened them. When that loop has closed (each
    ``asyncio.run()`` closes its own), the next use on another loop quietly
    opens a new pool; while it is still open, running in another thread or
    merely not running right now, using the client elsewhere raises this,
    before any request is sent. A RuntimeError too, as asyncio's own "attached
    to a different loop" errors are, rather than a ClientClosedError: the
    client is fine on its own loop.
    """


class ConfigurationError(VobizError, ValueError):
    """
    The client cannot be built as configured: missing credentials, unsafe base URL.
    """


class InvalidTargetError(VobizError, ValueError):
    """
    An identifier or URL that cannot be sent safely; no request was made.
    """


class APIConnectionError(VobizError):
    """
    The request got no HTTP response: connection refused, reset or dropped.
    """


class APIConnectError(APIConnectionError):
    """
    No connection could be made: refused, unknown host, TLS handshake failed.
    """


class TLSCertificateError(APIConnectError):
    """
    The server's certificate failed verification; never retried (it would fail again).
    """


class APITimeoutError(APIConnectionError):
    """
    No response arrived within the attempt's timeout or the operation's deadline.
    """


class APIStatusError(VobizError):
    """
    The API answered with a status that is neither success nor a tolerated 404.

    ``response`` is the answer as received, but with the auth token masked in
    its request's headers, its own headers and its body.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        api_id: str | None = None,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.api_id = api_id
        self.response = response
        #: The server's Retry-After, in seconds, when it sent a readable one.
        self.retry_after = retry_after
        #: What the answer said, without the status and the path: "Authentication failed".
        self.detail = detail


class UnexpectedResponseError(APIStatusError):
    """
    An answer that did not come from the Vobiz API: an HTML 404, a portal's 200 page.

    Usually a wrong base URL or something in between (proxy, portal, load balancer).
    """


class BadRequestError(APIStatusError):
    """
    400: the API refused the request as malformed.
    """


class AuthenticationError(APIStatusError):
    """
    401: the auth id or token is wrong.
    """


class PermissionDeniedError(APIStatusError):
    """
    403: the credentials are valid but may not do this.
    """


class NotFoundError(APIStatusError):
    """
    404: nothing to stop. Only raised when the caller passed ``missing_ok=False``.
    """


class RateLimitError(APIStatusError):
    """
    429: too many requests, after the retry policy gave up or refused to wait.
    """


class ServerError(APIStatusError):
    """
    5xx: the API failed, after the retry policy gave up.
    """


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def _error_class_for(status_code: int) -> type[APIStatusError]:
    """
    Map a status to the most specific error class.
    """
    if status_code >= 500:
        return ServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)


def parse_error_body(content: bytes) -> tuple[str | None, str | None]:
    """
    Pull (api_id, message) out of either Vobiz error shape; (None, None) when unreadable.

    Shapes: ``{"api_id": ..., "error": "text"}`` and
    ``{"status": "error", "error": {"code": ..., "message": ...}, "requestId": ...}``.
    Proxies answer with empty or HTML bodies, so nothing here may raise.
    """
    body = _json(content)
    if not isinstance(body, dict):
        return None, None
    api_id = body.get("api_id") or body.get("requestId")
    error = body.get("error")
    message: str | None = None
    if isinstance(error, str):
        message = error
    elif isinstance(error, dict):
        text = error.get("message")
        code = error.get("code")
        if text and code:
            message = f"{text} ({code})"
        elif text or code:
            message = str(text or code)
    elif isinstance(body.get("message"), str):
        message = body["message"]
    return (str(api_id) if api_id else None), message


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """
    Seconds to wait from a Retry-After value: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable value, so the caller falls back to
    its own backoff instead of trusting garbage.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def _retry_after(headers: httpx.Headers) -> float | None:
    """
    The wait a response asks for: ``Retry-After``, else ``retry-after-ms``.
    """
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and "retry-after-ms" in headers:
        ms = parse_retry_after(headers["retry-after-ms"])
        retry_after = None if ms is None else ms / 1000
    return retry_after


_NOT_JSON = object()


def _json(content: bytes) -> Any:
    """
    The JSON in ``content``, or _NOT_JSON: for an empty, broken or hostile body alike.

    RecursionError too: ``[[[[...`` fifty thousand deep must not escape as a crash.
    """
    if not content.strip():
        return _NOT_JSON
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NOT_JSON


def is_vobiz_error_body(content: bytes) -> bool:
    """
    True for either Vobiz error shape, and nothing else that merely has an ``error`` key.

    ``{"api_id": ..., "error": "text"}`` or ``{"status": "error", "error": {...}}``;
    a framework's default 404 (``{"status": 404, "error": "Not Found", ...}``) is neither.
    """
    body = _json(content)
    if not isinstance(body, dict):
        return False
    error = body.get("error")
    flat = isinstance(error, str) and "api_id" in body
    nested = isinstance(error, dict) and body.get("status") == "error"
    return flat or nested


def is_json_or_empty(content: bytes) -> bool:
    """
    True for an empty body or any JSON: what a Vobiz success looks like.
    """
    return not content.strip() or _json(content) is not _NOT_JSON


def status_error(
    response: httpx.Response,
    *,
    label: str,
    max_retry_after: float | None,
    redact: Redactor,
) -> APIStatusError:
    """
    The typed error for a response that is neither success nor a tolerated 404.

    ``label`` names the request (``DELETE /api/v1/...``). ``max_retry_after`` is
    the policy's limit for a status it would retry, None for one it never does.
    """
    status = response.status_code
    api_id, detail = parse_error_body(response.content)
    if detail is None:
        detail = _describe_body(response, redact)
    message = _status_line(response) + f" from {label}: {detail}"
    retry_after = _retry_after(response.headers)
    if 300 <= status < 400:
        message += f" (redirect to {response.headers.get('location', '?')!r} not followed)"
    elif max_retry_after is not None and retry_after is not None and retry_after > max_retry_after:
        message += (
            f" (Retry-After {retry_after:g}s is longer than "
            f"max_retry_after={max_retry_after:g}s: not retried)"
        )
    return _error_class_for(status)(
        redact(message),
        status_code=status,
        api_id=redact(api_id) if api_id else None,
        response=_masked(response, redact),
        retry_after=retry_after,
        detail=redact(detail),
    )


def unexpected_response(
    response: httpx.Response, *, label: str, redact: Redactor
) -> UnexpectedResponseError:
    """
    The error for an answer that is not the Vobiz API's: an HTML 404, a portal's 200.
    """
    message = (
        _status_line(response)
        + f" from {label} is not from the Vobiz API ({_describe_body(response, redact)}): "
        "nothing is known to have stopped; check the base URL and any proxy in between"
    )
    return UnexpectedResponseError(
        redact(message), status_code=response.status_code, response=_masked(response, redact)
    )


class MalformedAnswer(ValueError):
    """
    A listing's answer is not the shape it should be; the message says how.

    Raised by the parsers and turned into UnexpectedResponseError by the session,
    which has the response and the request's label. Without a message, the
    body is empty or not JSON, and the error shows the body instead.
    """


def malformed_answer(
    response: httpx.Response, *, label: str, why: str | None, redact: Redactor
) -> UnexpectedResponseError:
    """
    The error for a success answer to a listing that cannot be read as one.

    ``why`` says what is wrong with it; None describes the body (empty, or not JSON).
    """
    said = shorten(redact(why), 300) if why is not None else _describe_body(response, redact)
    message = (
        _status_line(response) + f" from {label} is not a listing this client can read ({said}): "
        "nothing was listed; check the base URL and any proxy in between"
    )
    return UnexpectedResponseError(
        redact(message), status_code=response.status_code, response=_masked(response, redact)
    )


def _status_line(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase or ''}".rstrip()


def _describe_body(response: httpx.Response, redact: Redactor) -> str:
    if not response.content:
        return "(empty body)"
    text = _redacted_head(response.content, redact).decode("utf-8", errors="replace")
    return f"non-JSON body {shorten(redact(text))!r}"


def _redacted_head(content: bytes, redact: Redactor) -> bytes:
    """
    At most MAX_BODY bytes of ``content`` with the token masked.

    A listing's answer may be larger than MAX_BODY; an error keeps no more.
    Cut at the cap, the body may end in part of the secret: that end is dropped.
    """
    head = redact.bytes(content[:MAX_BODY])
    if len(content) >= MAX_BODY:
        head = head[: -redact.longest]
    return head


def _masked(response: httpx.Response, redact: Redactor) -> httpx.Response:
    """
    A copy of ``response`` (and of its request) with every form of the token masked.
    """
    request = response.request
    headers = [
        (name, MASK if name.lower() == "x-auth-token" else redact(value))
        for name, value in request.headers.multi_items()
    ]
    content = _redacted_head(response.content, redact)
    return httpx.Response(
        response.status_code,
        headers=[(name, redact(value)) for name, value in response.headers.multi_items()],
        content=content,
        request=httpx.Request(request.method, request.url, headers=headers),
        extensions={"reason_phrase": redact(response.reason_phrase).encode()},
    )


def transport_error(
    exc: BaseException, *, label: str, timeout: float, redact: Redactor, via: str = ""
) -> VobizError:
    """
    Name a transport failure for what it was, in words that hold no token.

    ``via`` names the proxy the request went through (" through the proxy
    ..."), so that a failure at the proxy does not read as one at the API.

    httpx-aiohttp maps every aiohttp ClientConnectionError, a refused or a
    dropped connection included, to httpx.ConnectTimeout; the aiohttp cause
    tells them apart. Library exceptions can hold our request's headers, so
    the only cause kept is the operating system's error (refused, reset,
    DNS, TLS), which holds none.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        exc = cause
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        return APITimeoutError(f"no response within {timeout:.3g}s for {label}{via}")
    what = (
        f"{type(exc).__name__}: {shorten(redact(str(exc)), 300)}"
        if str(exc)
        else type(exc).__name__
    )
    os_error = _os_error(exc, redact)
    kind: type[APIConnectionError] = APIConnectionError
    if isinstance(os_error, ssl.SSLCertVerificationError):
        kind = TLSCertificateError
    elif isinstance(exc, aiohttp.ClientConnectorError | httpx.ConnectError):
        kind = APIConnectError
    error = kind(f"connection failed for {label}{via}: {what}")
    error.detail = what
    error.__cause__ = os_error
    return error


def unexpected_send_error(exc: BaseException, *, label: str, redact: Redactor) -> VobizError:
    """
    Anything else that went wrong while sending one request: that target's failure, not the batch's.
    """
    detail = f"{type(exc).__name__}: {shorten(redact(str(exc)), 300)}"
    return VobizError(f"sending {label} failed: {detail}")


def _os_error(exc: BaseException, redact: Redactor) -> OSError | None:
    """
    The deepest operating-system error behind ``exc``, if it says nothing of the token.
    """
    found: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and type(current).__module__ in (
            "builtins",
            "ssl",
            "socket",
        ):
            found = current
        current = current.__cause__ or current.__context__
    if found is None or redact.shows_secret(str(found)):
        return None
    return found
