"""
The route table: every request this library makes, described once.

A kind of request is a frozen attrs class registered with ``@route``: the HTTP
method, the path under ``/Account/{auth_id}/`` with the class's fields in
braces, and, per field, how it is checked and whether it travels in the JSON
body or the query string instead. From that one description the client builds
a request, the fake Vobiz parses it back, and the CLI names its report columns. Adding an
endpoint is one class with ``@route`` (see the README's "Adding an endpoint").
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import attrs

from ._checks import check_identifier, check_recording_url

__all__ = ["ROUTES", "Route", "body_field", "path_field", "query_field", "route"]

T = TypeVar("T")
Check = Callable[[str, object], object]

# Field metadata keys: how a value is checked, its JSON body key if it has one, and
# its query parameter (with how the fake reads it back from text) if it has one.
CHECK = "vobiz_check"
JSON_KEY = "vobiz_json_key"
QUERY_KEY = "vobiz_query_key"
QUERY_READ = "vobiz_query_read"


def path_field() -> Any:
    """
    A field that is one segment of the path: a non-empty, safe identifier.
    """
    return attrs.field(metadata={CHECK: check_identifier})


def body_field(json_key: str, *, check: Check = check_recording_url) -> Any:
    """
    An optional field sent as ``{json_key: value}`` in a JSON body; omitted when None.
    """
    return attrs.field(default=None, metadata={CHECK: check, JSON_KEY: json_key})


def query_field(
    key: str, *, check: Check, default: object = None, read: Callable[[str], object] = str
) -> Any:
    """
    A field sent as ``?key=value`` in the query string; omitted when None.

    ``read`` turns the text back into the field's value (``int`` for a count),
    for the fake; a ValueError from it means the request is not this route.
    """
    return attrs.field(default=default, metadata={CHECK: check, QUERY_KEY: key, QUERY_READ: read})


@attrs.frozen
class Route:
    """
    How one kind of request goes on the wire.
    """

    kind: str
    method: str
    #: Under the account, with the request's fields in braces: ``Call/{call_uuid}/Record/``.
    path: str
    request_type: type[Any]
    #: The path split at ``/``: literal segments, and field names for ``{field}``.
    segments: tuple[tuple[bool, str], ...] = attrs.field(init=False)
    #: Field name to JSON body key, for the fields that travel in the body.
    body: Mapping[str, str] = attrs.field(init=False)
    #: Field name to query parameter, for the fields that travel in the query string.
    query: Mapping[str, str] = attrs.field(init=False)

    @segments.default
    def _split_path(self) -> tuple[tuple[bool, str], ...]:
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.path.strip("/")):
            for text in literal.split("/"):
                if text:
                    parts.append((False, text))
            if name:
                parts.append((True, name))
        return tuple(parts)

    @body.default
    def _body_keys(self) -> Mapping[str, str]:
        return {
            field.name: field.metadata[JSON_KEY]
            for field in attrs.fields(self.request_type)
            if JSON_KEY in field.metadata
        }

    @query.default
    def _query_keys(self) -> Mapping[str, str]:
        return {
            field.name: field.metadata[QUERY_KEY]
            for field in attrs.fields(self.request_type)
            if QUERY_KEY in field.metadata
        }

    def check(self, request: T) -> T:
        """
        Raise InvalidTargetError unless every field of ``request`` is safe to send.
        """
        for field in attrs.fields(self.request_type):
            field.metadata[CHECK](field.name, getattr(request, field.name))
        return request

    def path_for(self, request: object) -> str:
        """
        The path under the account, for a checked request.
        """
        return self.path.format_map(_Fields(request))

    def json_for(self, request: object) -> dict[str, Any] | None:
        """
        The JSON body, or None when no body field has a value.
        """
        body = {
            key: value
            for name, key in self.body.items()
            if (value := getattr(request, name)) is not None
        }
        return body or None

    def query_for(self, request: object) -> str:
        """
        The query string with its ``?``, or ``""`` when no query field has a value.
        """
        if not self.query:
            return ""  # every stop: nothing to build
        params = [
            (key, str(value))
            for name, key in self.query.items()
            if (value := getattr(request, name)) is not None
        ]
        return "?" + urlencode(params) if params else ""

    def parse(
        self, segments: list[str], body: bytes, query: Mapping[str, str] | None = None
    ) -> Any | None:
        """
        The request these path segments, body and query spell, or None if they are not this route.

        The inverse of ``path_for``, ``json_for`` and ``query_for``, for the fake
        Vobiz. A query parameter that is absent takes the field's default.
        """
        if len(segments) != len(self.segments):
            return None
        values: dict[str, Any] = {}
        for part, (is_field, text) in zip(segments, self.segments, strict=True):
            if is_field:
                values[text] = part
            elif part != text:
                return None
        sent = _json_object(body)
        for name, key in self.body.items():
            value = sent.get(key)
            values[name] = value if isinstance(value, str) else None
        given = query or {}
        for field in attrs.fields(self.request_type):
            key = field.metadata.get(QUERY_KEY)
            if key is not None and key in given:
                try:
                    values[field.name] = field.metadata[QUERY_READ](given[key])
                except ValueError:
                    return None
        return self.request_type(**values)

    def columns(self) -> Iterator[str]:
        """
        The request's field names, in declaration order.
        """
        return (field.name for field in attrs.fields(self.request_type))


class _Fields:
    """
    A request's fields as a mapping for ``str.format_map``, without copying them.
    """

    __slots__ = ("_request",)

    def __init__(self, request: object) -> None:
        self._request = request

    def __getitem__(self, name: str) -> object:
        return getattr(self._request, name)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


#: Every route, by request class, in the order they were declared.
ROUTES: dict[type[Any], Route] = {}


def route(method: str, path: str) -> Callable[[type[T]], type[T]]:
    """
    Class decorator: register an attrs class as a kind of request.

    The class's ``kind`` names the route; ``route`` is set on the class.
    """

    def register(cls: type[T]) -> type[T]:
        described = Route(cls.kind, method, path, cls)  # type: ignore[attr-defined]
        undeclared = {name for is_field, name in described.segments if is_field} - set(
            described.columns()
        )
        if undeclared:  # pragma: no cover - caught the moment a bad route is declared
            raise TypeError(f"{cls.__name__}: {path!r} names unknown fields {undeclared}")
        cls.route = described  # type: ignore[attr-defined]
        ROUTES[cls] = described
        return cls

    return register
