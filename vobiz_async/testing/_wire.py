"""
The fake's side of the wire: a request's path read back into a request, and Vobiz's answers.

Both front ends speak this vocabulary: they hand a ``Handler`` the raw method,
path (with its query string), headers and body, and turn the ``Answer`` it
returns into a response.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import attrs

from .._discovery import Listing
from .._routes import ROUTES
from .._targets import Target

__all__ = [
    "API_PREFIX",
    "Answer",
    "Handler",
    "Request",
    "authentication_failed",
    "json_answer",
    "not_found",
    "parse_request",
    "rate_limited",
    "service_unavailable",
]

API_PREFIX = "/api/v1"
ACCOUNT_PREFIX = f"{API_PREFIX}/Account/"


@attrs.frozen
class Answer:
    """
    What the fake sends back for one request.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)


#: One request in (method, raw path with its query string, headers, body); its
#: answer out, or None to drop the connection without one.
Handler = Callable[[str, str, Mapping[str, str], bytes], Awaitable[Answer | None]]

#: Any request of the library's route table: a stop, or a listing.
Request = Target | Listing


def parse_request(
    method: str, raw_path: str, body: bytes, query: str = ""
) -> tuple[str | None, Request | None]:
    """
    The account id in the path and the request it spells, each None if it has none.

    The path is ``/api/v1/Account/{auth_id}/`` and then one route's path, each
    segment percent-decoded; the route is the one whose method matches and that
    parses the segments, body and query string back into its request.
    """
    if not raw_path.startswith(ACCOUNT_PREFIX) or not raw_path.endswith("/"):
        return None, None
    auth_id, *segments = [unquote(p) for p in raw_path[len(ACCOUNT_PREFIX) : -1].split("/")]
    params = dict(parse_qsl(query))
    for route in ROUTES.values():
        if route.method == method:
            request: Request | None = route.parse(segments, body, params)
            if request is not None:
                return auth_id, request
    return auth_id, None


def json_answer(body: dict[str, Any], status: int = 200) -> Answer:
    """
    A JSON answer: a listing's page.
    """
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def not_found(what: str) -> Answer:
    """
    404 in Vobiz's flat error shape: ``{"api_id": ..., "error": "<what> not found"}``.
    """
    body = {"api_id": str(uuid.uuid4()), "error": f"{what} not found"}
    return Answer(404, json.dumps(body).encode(), {"Content-Type": "application/json"})


def authentication_failed() -> Answer:
    """
    401 for a wrong auth id or token.
    """
    body = {"api_id": str(uuid.uuid4()), "error": "Authentication failed"}
    return Answer(401, json.dumps(body).encode())


def service_unavailable() -> Answer:
    """
    503 with an HTML body, as a load balancer sends it.
    """
    html = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
    return Answer(503, html, {"Content-Type": "text/html"})


def rate_limited(retry_after: float | None, shape: Literal["nested", "flat"] = "nested") -> Answer:
    """
    429 in either of Vobiz's error shapes, with ``Retry-After`` unless it is None.
    """
    body: dict[str, Any]
    if shape == "nested":
        body = {
            "status": "error",
            "error": {"code": "RATE_LIMIT", "message": "Rate limit exceeded", "details": {}},
            "timestamp": "2026-01-01T00:00:00Z",
            "requestId": str(uuid.uuid4()),
        }
    else:
        body = {"api_id": str(uuid.uuid4()), "error": "Rate limit exceeded"}
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return Answer(429, json.dumps(body).encode(), headers)
