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

import json
from typing import Any

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


def error_class_for(status_code: int) -> type[APIStatusError]:
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
