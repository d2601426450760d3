"""
Find and stop Vobiz streams and recordings from asyncio code: pooled, retried, and in bulk.
"""

from ._bulk import StopResultStream
from ._client import DEFAULT_BASE_URL, AsyncVobiz
from ._discovery import ListLiveCalls, ListStreams, StreamInfo, StreamListing
from ._exceptions import (
    APIConnectError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    EventLoopError,
    InvalidTargetError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TLSCertificateError,
    UnexpectedResponseError,
    VobizError,
)
from ._models import BulkReport, Outcome, StopResult
from ._retry import RETRYABLE_STATUSES, RetryPolicy
from ._targets import AllStreams, Recording, Stream, Target
from ._version import __version__

__all__ = [
    "APIConnectError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AllStreams",
    "AsyncVobiz",
    "AuthenticationError",
    "BadRequestError",
    "BulkReport",
    "ClientClosedError",
    "ConfigurationError",
    "DEFAULT_BASE_URL",
    "EventLoopError",
    "InvalidTargetError",
    "ListLiveCalls",
    "ListStreams",
    "NotFoundError",
    "Outcome",
    "PermissionDeniedError",
    "RETRYABLE_STATUSES",
    "RateLimitError",
    "Recording",
    "RetryPolicy",
    "ServerError",
    "StopResult",
    "StopResultStream",
    "Stream",
    "StreamInfo",
    "StreamListing",
    "TLSCertificateError",
    "Target",
    "UnexpectedResponseError",
    "VobizError",
    "__version__",
]

# Errors and values print as vobiz_async.X, not vobiz_async._module.X.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("vobiz_async._"):
        _obj.__module__ = __name__
del _name, _obj
