"""
What is running: the live calls, and the streams on a call, read page by page.

Two GET routes (``ListLiveCalls``, ``ListStreams``), the values their answers
become (``StreamInfo``), and the paging rules that ``live_calls()``,
``list_streams()`` and ``teardown()`` share. Every answer is read tolerantly
(unknown fields kept, optional ones may be missing, both paging envelopes)
but never trusted to end: a server that pages forever meets a hard cap.

Paging, as NOTES.md has it: the stream list pages with ``limit``/``offset``
in one of two envelopes, ``{"page", "per_page", "total", "objects"}`` or
``{"meta": {"next", "total_count", "offset", "limit", ...}, "objects"}``; the
live-call list is documented unpaged (``{"calls": [...]}``) but may grow a
``meta``. The next page is read when the answer says there is one: an
explicit ``meta.next`` decides (null: no more); otherwise a ``total`` or
``total_count`` beyond what was read, or a full page. An empty page ends it.
"""

from __future__ import annotations

import datetime
import json
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import attrs

from ._checks import check_count, check_identifier
from ._config import CallLimits
from ._exceptions import MalformedAnswer, UnexpectedResponseError
from ._redact import Redactor
from ._retry import UNGATED, Gate
from ._routes import Route, path_field, query_field, route
from ._session import Session

__all__ = [
    "ENDED_STATUSES",
    "MAX_CALL_PAGES",
    "MAX_STREAM_PAGES",
    "PAGE_LIMIT",
    "ListLiveCalls",
    "ListStreams",
    "Listing",
    "LiveCursor",
    "Page",
    "StreamInfo",
    "StreamListing",
    "iter_live_calls",
    "next_live_page",
    "paging_error",
    "parse_live_calls",
    "parse_streams",
    "running",
    "selector",
    "stream_pages",
]

#: Streams asked for per page: the page size the API documents.
PAGE_LIMIT = 20
#: Pages of one call's streams read at most (2,000 streams at 20 a page): past
#: that, the server is taken to be paging forever and the listing fails.
MAX_STREAM_PAGES = 100
#: Pages of live calls read at most.
MAX_CALL_PAGES = 10_000
#: Stream statuses that mean it has ended; any other (``in-progress``, or one
#: added later) is taken as running: stopping an ended stream costs one 404.
ENDED_STATUSES = frozenset({"completed", "failed"})


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"negative: {value}")
    return value


@route("GET", "Call/")
@attrs.frozen
class ListLiveCalls:
    """
    One page of the account's live calls: ``GET Call/?status=live``.
    """

    status: str = query_field("status", check=check_identifier, default="live")
    limit: int | None = query_field("limit", check=check_count, read=_count)
    offset: int | None = query_field("offset", check=check_count, read=_count)

    kind: ClassVar[Literal["list_live_calls"]] = "list_live_calls"
    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How this request reads in a message.
        """
        return f"{self.status} calls"


@route("GET", "Call/{call_uuid}/Stream/")
@attrs.frozen
class ListStreams:
    """
    One page of the streams on a call, stopped ones included.
    """

    call_uuid: str = path_field()
    limit: int | None = query_field("limit", check=check_count, default=PAGE_LIMIT, read=_count)
    offset: int | None = query_field("offset", check=check_count, default=0, read=_count)

    kind: ClassVar[Literal["list_streams"]] = "list_streams"
    route: ClassVar[Route]

    def describe(self) -> str:
        """
        How this request reads in a message.
        """
        return f"streams on call {self.call_uuid!r}"


#: The listing requests, as the fake's record names them.
Listing = ListLiveCalls | ListStreams

_KNOWN_FIELDS = (
    "stream_id",
    "call_uuid",
    "service_url",
    "status",
    "audio_track",
    "start_time",
    "end_time",
)


@attrs.frozen
class StreamInfo:
    """
    One stream on a call as the API lists it.

    Fields the API leaves out are None; a time that is not ISO 8601 is None
    here and kept as sent in ``raw``. ``raw`` holds the whole object as sent
    (unknown fields included, never refused); ``extra`` the unknown ones only.
    """

    stream_id: str
    call_uuid: str | None = None
    service_url: str | None = None
    #: ``in-progress``, ``completed`` or ``failed`` as documented; kept as sent.
    status: str | None = None
    audio_track: str | None = None
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None
    raw: Mapping[str, Any] = attrs.field(
        factory=lambda: types.MappingProxyType({}), hash=False, repr=False
    )

    @property
    def active(self) -> bool:
        """
        True unless the status says the stream ended (``completed``, ``failed``).
        """
        return (self.status or "").lower() not in ENDED_STATUSES

    @property
    def extra(self) -> Mapping[str, Any]:
        """
        The fields this version does not know, as sent.
        """
        return {key: value for key, value in self.raw.items() if key not in _KNOWN_FIELDS}

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], StreamInfo], tuple[dict[str, Any]]]:
        """
        Pickle and copy by value: ``raw`` is read-only, and a read-only view cannot be pickled.
        """
        values = attrs.asdict(self, recurse=False)
        values["raw"] = dict(self.raw)
        return _stream_info, (values,)

    @classmethod
    def from_api(cls, data: object) -> StreamInfo:
        """
        Read one stream object as the API sends it (a dict from its JSON).

        A ValueError if it is not an object with a non-empty ``stream_id``.
        """
        if not isinstance(data, dict):
            raise MalformedAnswer(f"a stream is a JSON {_json_type(data)}, not an object")
        stream_id = data.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise MalformedAnswer(f"a stream has no stream_id: {_preview(data)}")
        return cls(
            stream_id=stream_id,
            call_uuid=_text(data.get("call_uuid")),
            service_url=_text(data.get("service_url")),
            status=_text(data.get("status")),
            audio_track=_text(data.get("audio_track")),
            start_time=_when(data.get("start_time")),
            end_time=_when(data.get("end_time")),
            raw=types.MappingProxyType(dict(data)),
        )


def _stream_info(values: dict[str, Any]) -> StreamInfo:
    """
    A StreamInfo from its fields, as pickled: ``raw`` read-only again.
    """
    return StreamInfo(**{**values, "raw": types.MappingProxyType(values["raw"])})


@attrs.frozen
class StreamListing:
    """
    What teardown listed on one call: every stream, and those it went on to stop.
    """

    call_uuid: str
    #: Every stream listed, ended ones included, in the API's order.
    streams: tuple[StreamInfo, ...]
    #: The running streams that matched ``streams_to``: one stop each.
    matched: tuple[StreamInfo, ...]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _when(value: object) -> datetime.datetime | None:
    """
    An ISO 8601 time (``2026-03-01 10:00:00+05:30``, ``...T...Z``); None if it is not one.
    """
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


def _preview(value: object) -> str:
    return json.dumps(value)[:80]


# -- parsing: bytes to pages ------------------------------------------------------------


def _decode(content: bytes, redact: Redactor) -> Any:
    """
    The JSON in ``content`` with every string redacted, keys included.

    The token is masked in what we hand out, whatever the server echoes, in
    whatever escape: so redaction runs on the decoded strings, not on the bytes.
    """
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        raise MalformedAnswer() from None  # empty or not JSON: the error shows the body
    return _redacted(data, redact)


def _redacted(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {redact(key): _redacted(item, redact) for key, item in value.items()}
    return value


_ABSENT = object()


@attrs.frozen
class Page:
    """
    One page of a listing: its items, and what it says about the next.
    """

    items: list[Any]
    #: ``meta.next`` as sent (None: explicitly no more), or _ABSENT when not sent.
    next: object = _ABSENT
    #: ``total`` or ``total_count``: how many items in all, when sent.
    total: int | None = None
    #: The page size the server says it used (``per_page``, ``meta.limit``), when sent.
    size: int | None = None

    def next_offset(self, offset: int, asked: int | None) -> int | None:
        """
        Where the next page starts, or None when this is the last.

        ``asked`` is the limit the request sent, if any.
        """
        received = len(self.items)
        if received == 0:
            return None  # nothing to move on from: an empty page ends any listing
        after = offset + received
        if self.next is not _ABSENT:
            if not self.next:
                return None
            said = _offset_in(self.next)
            return said if said is not None and said > offset else after
        if self.total is not None and after < self.total:
            return after
        # A full page: there may be more. One extra request at worst, where a
        # server's "total" counted pages rather than items.
        sizes = [size for size in (asked, self.size) if size]
        if sizes and received >= min(sizes):
            return after
        return None


def _offset_in(url: object) -> int | None:
    if not isinstance(url, str):
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("offset")
        return _count(values[-1]) if values else None
    except ValueError:
        return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _page(body: Any, key: str, *, also: str | None = None) -> Page:
    """
    A page from either envelope, its items under ``key`` (or ``also``); a bare array too.
    """
    if isinstance(body, list):
        return Page(body)
    if not isinstance(body, dict):
        raise MalformedAnswer(f"the body is a JSON {_json_type(body)}, not an object")
    keys = [k for k in (key, also) if k is not None]
    found = next((body[k] for k in keys if k in body), _ABSENT)
    if found is _ABSENT:
        raise MalformedAnswer(
            f"no {' or '.join(repr(k) for k in keys)} in the answer; it has {sorted(body)[:10]}"
        )
    if not isinstance(found, list):
        raise MalformedAnswer(f"{keys[0]!r} is a JSON {_json_type(found)}, not an array")
    meta = body.get("meta")
    if isinstance(meta, dict):
        return Page(
            found,
            next=meta.get("next", _ABSENT),
            total=_int(meta.get("total_count")),
            size=_int(meta.get("limit")),
        )
    return Page(found, total=_int(body.get("total")), size=_int(body.get("per_page")))


def parse_streams(content: bytes, redact: Redactor) -> tuple[list[StreamInfo], Page]:
    """
    A page of the stream list: its streams, and its paging.
    """
    page = _page(_decode(content, redact), "objects")
    return [StreamInfo.from_api(item) for item in page.items], page


def parse_live_calls(content: bytes, redact: Redactor) -> tuple[list[str], Page]:
    """
    A page of the live-call list: its call UUIDs (strings, or objects with ``call_uuid``).
    """
    page = _page(_decode(content, redact), "calls", also="objects")
    calls = []
    for item in page.items:
        call = item.get("call_uuid") if isinstance(item, dict) else item
        if not isinstance(call, str):
            raise MalformedAnswer(f"a live call is not a call UUID: {_preview(item)}")
        calls.append(call)
    return calls, page


def paging_error(message: str) -> UnexpectedResponseError:
    """
    A listing the client stopped reading: the server would not stop paging.
    """
    return UnexpectedResponseError(message, status_code=200)


# -- reading every page -----------------------------------------------------------------


@attrs.frozen
class LiveCursor:
    """
    Where the live-call listing is: the next page's offset, and what the last page held.
    """

    offset: int | None = None
    limit: int | None = None
    pages: int = 0
    #: The calls of the page before, to notice a server that ignores ``offset``.
    previous: frozenset[str] = frozenset()


async def next_live_page(
    session: Session,
    cursor: LiveCursor,
    *,
    gate: Gate = UNGATED,
    limits: CallLimits | None = None,
) -> tuple[list[str], LiveCursor | None]:
    """
    The live calls of the page at ``cursor`` (each once), and the cursor of the next, if any.
    """
    request = ListLiveCalls(limit=cursor.limit, offset=cursor.offset)
    calls, page = await session.fetch(request, parse_live_calls, gate=gate, limits=limits)
    unique = list(dict.fromkeys(calls))
    offset = cursor.offset or 0
    after = page.next_offset(offset, cursor.limit)
    if cursor.pages and unique and cursor.previous.issuperset(unique):
        raise paging_error(
            f"the live-call list answered offset={offset} with the page before it again: "
            "the server seems to ignore offset; stopped listing"
        )
    if after is None:
        return unique, None
    if cursor.pages + 1 >= MAX_CALL_PAGES:
        raise paging_error(
            f"the live-call list still had more after {MAX_CALL_PAGES} pages: "
            "stopped listing (a server that pages forever?)"
        )
    return unique, LiveCursor(
        offset=after, limit=page.size, pages=cursor.pages + 1, previous=frozenset(unique)
    )


async def iter_live_calls(
    session: Session, *, gate: Gate = UNGATED, limits: CallLimits | None = None
) -> AsyncIterator[str]:
    """
    Every live call's UUID, page by page as they are read.
    """
    cursor: LiveCursor | None = LiveCursor()
    while cursor is not None:
        calls, cursor = await next_live_page(session, cursor, gate=gate, limits=limits)
        for call in calls:
            yield call


async def stream_pages(
    session: Session,
    call_uuid: str,
    *,
    gate: Gate = UNGATED,
    limits: CallLimits | None = None,
) -> AsyncIterator[list[StreamInfo]]:
    """
    Each page of a call's streams, every stream once; a server that pages forever fails.
    """
    seen: set[str] = set()
    offset: int | None = 0
    pages = 0
    while offset is not None:
        if pages == MAX_STREAM_PAGES:
            raise paging_error(
                f"the stream list of call {call_uuid!r} still had more after "
                f"{MAX_STREAM_PAGES} pages ({len(seen)} streams): stopped listing "
                "(a server that pages forever?)"
            )
        request = ListStreams(call_uuid, limit=PAGE_LIMIT, offset=offset)
        streams, page = await session.fetch(request, parse_streams, gate=gate, limits=limits)
        pages += 1
        new = []
        for info in streams:
            if info.stream_id not in seen:
                seen.add(info.stream_id)
                new.append(info)
        if streams and not new:
            raise paging_error(
                f"the stream list of call {call_uuid!r} answered offset={offset} with "
                "streams already listed: the server seems to ignore offset; stopped listing"
            )
        offset = page.next_offset(offset, PAGE_LIMIT)
        yield new


def selector(streams_to: str | Callable[[StreamInfo], bool]) -> Callable[[StreamInfo], bool]:
    """
    ``streams_to`` as a predicate: a URL prefix matches ``service_url``; a callable is itself.
    """
    if callable(streams_to):
        return streams_to
    prefix = streams_to

    def goes_to(info: StreamInfo) -> bool:
        return info.service_url is not None and info.service_url.startswith(prefix)

    return goes_to


def running(streams: Iterable[StreamInfo]) -> list[StreamInfo]:
    """
    The streams that have not ended.
    """
    return [info for info in streams if info.active]
