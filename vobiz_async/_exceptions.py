"""
Every error this library raises.

The tree::

    VobizError
    ├── ClientClosedError              (also a RuntimeError) the client was used after aclose()
    ├── ConfigurationError             (also a ValueError) missing credentials, unsafe base URL
    ├── InvalidTargetError             (also a ValueError) refused before any request was sent
    ├── APIConnectionError             no HTTP response: refused, reset, dropped
    │   └── APITimeoutError            no response within the attempt's timeout or the deadline
    └── APIStatusError                 the API answered with a status that is not success
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
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "InvalidTargetError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "VobizError",
    "parse_retry_after",
    "redact",
    "status_error",
    "transport_error",
]


class VobizError(Exception):
    """
    Root of every error raised by vobiz-async.
    """

    #: Requests sent for the operation that failed; 0 when none was sent.
    attempts: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientClosedError(VobizError, RuntimeError):
    """
    The client was used after ``aclose()`` or after its ``async with`` block.
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


class APITimeoutError(APIConnectionError):
    """
    No response arrived within the attempt's timeout or the operation's deadline.
    """


class APIStatusError(VobizError):
    """
    The API answered with a status that is neither success nor a tolerated 404.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        api_id: str | None = None,
        response: httpx.Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.api_id = api_id
        self.response = response
        #: The server's Retry-After, in seconds, when it sent a readable one.
        self.retry_after = retry_after


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
    if not content:
        return None, None
    try:
        body: Any = json.loads(content)
    except ValueError:
        return None, None
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


def redact(text: str, secret: str) -> str:
    """
    ``text`` with every occurrence of ``secret`` replaced by ``***``.
    """
    return text.replace(secret, "***")


def status_error(
    response: httpx.Response, *, label: str, max_retry_after: float, secret: str
) -> APIStatusError:
    """
    The typed error for a response that is neither success nor a tolerated 404.

    ``label`` names the request (``DELETE /api/v1/...``); ``secret`` never
    reaches the message, even when a proxy echoes it back in the body.
    """
    status = response.status_code
    api_id, detail = parse_error_body(response.content)
    if detail is None:
        detail = _describe_body(response)
    reason = response.reason_phrase or ""
    message = f"{status} {reason}".rstrip() + f" from {label}: {detail}"
    retry_after = _retry_after(response.headers)
    if 300 <= status < 400:
        message += f" (redirect to {response.headers.get('location', '?')!r} not followed)"
    elif retry_after is not None and retry_after > max_retry_after:
        message += (
            f" (Retry-After {retry_after:g}s is longer than "
            f"max_retry_after={max_retry_after:g}s: not retried)"
        )
    return _error_class_for(status)(
        redact(message, secret),
        status_code=status,
        api_id=api_id,
        response=response,
        retry_after=retry_after,
    )


def _describe_body(response: httpx.Response) -> str:
    if not response.content:
        return "(empty body)"
    snippet = " ".join(response.text.split())
    if len(snippet) > 120:
        snippet = snippet[:117] + "..."
    return f"non-JSON body {snippet!r}"


def transport_error(exc: BaseException, *, label: str, timeout: float) -> VobizError:
    """
    Name a transport failure for what it was.

    httpx-aiohttp maps every aiohttp ClientConnectionError, a server that hung
    up included, to httpx.ConnectTimeout; the aiohttp cause tells them apart.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        exc = cause
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        return APITimeoutError(f"no response within {timeout:.3g}s for {label}")
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return APIConnectionError(f"connection failed for {label}: {what}")
