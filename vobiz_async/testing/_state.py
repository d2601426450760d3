"""
The fake's state machine: calls, their streams and recordings, stops, and listings.
"""

from __future__ import annotations

import datetime
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from .._discovery import ListLiveCalls, ListStreams
from .._targets import AllStreams, Recording, Stream, Target
from ._wire import ACCOUNT_PREFIX, Answer, json_answer, not_found

__all__ = ["Calls", "Paging"]

#: The two envelopes Vobiz pages stream lists in (see NOTES.md).
Paging = Literal["meta", "page"]

# Vobiz's times: "2026-03-01 10:00:00+05:30".
_IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))


def _now() -> str:
    return datetime.datetime.now(_IST).isoformat(sep=" ", timespec="seconds")


@attrs.define
class _StreamRecord:
    """
    What the listing says of one registered stream, besides whether it runs.
    """

    service_url: str
    audio_track: str
    start_time: str = attrs.Factory(_now)
    end_time: str | None = None


class _Group:
    """
    One call's streams, or its recordings: what runs, what was stopped.

    In the open world nothing is listed up front: an item is alive until it,
    or the whole group, was stopped.
    """

    __slots__ = ("active", "cleared", "stopped")

    def __init__(self, items: Iterable[str]) -> None:
        self.active = set(items)
        self.stopped: set[str] = set()
        self.cleared = False

    def stop_one(self, item: str, *, open_world: bool) -> bool:
        """
        Stop one item; False if it was not running.
        """
        alive = (
            (item not in self.stopped and not self.cleared) if open_world else item in self.active
        )
        if alive:
            self.active.discard(item)
            self.stopped.add(item)
        return alive

    def stop_all(self, *, open_world: bool) -> bool:
        """
        Stop everything; False if nothing was running.
        """
        stopped_any = bool(self.active) or (open_world and not self.cleared)
        self.stopped |= self.active
        self.active.clear()
        self.cleared = True
        return stopped_any


class _Call:
    __slots__ = ("listed", "recordings", "streams")

    def __init__(
        self, streams: Mapping[str, str] | None = None, recordings: Iterable[str] = ()
    ) -> None:
        streams = streams or {}
        self.streams = _Group(streams)
        self.recordings = _Group(recordings)
        # Registered streams, in the order they started: what a listing shows.
        self.listed = {
            stream_id: _StreamRecord(url, "inbound") for stream_id, url in streams.items()
        }

    def ended(self, stream_ids: Iterable[str]) -> None:
        """
        Note the end time of streams just stopped.
        """
        for stream_id in stream_ids:
            record = self.listed.get(stream_id)
            if record is not None and record.end_time is None:
                record.end_time = _now()


def default_service_url(stream_id: str) -> str:
    """
    Where a stream registered without one sends its audio.
    """
    return f"wss://media.fake-vobiz.test/{stream_id}"


class Calls:
    """
    Every call the fake knows, and the stops applied to them.

    With ``open_world=False`` only calls registered with ``add`` exist; with
    ``open_world=True`` any call exists, with every stream and recording alive
    until it is stopped. ``stop_counts`` counts, per target, the stops that
    changed state. A hung-up call answers 404 to everything, in either world.

    Listings show what was registered: the live list is the registered calls
    not hung up; a call's stream list its registered streams, stopped ones
    as ``completed``, ``page_limit`` at most a page, in the ``paging`` envelope.
    The live list is one answer, or pages of ``live_page_size`` with ``meta``.
    """

    def __init__(
        self,
        *,
        open_world: bool,
        auth_id: str = "",
        paging: Paging = "meta",
        page_limit: int = 20,
        live_page_size: int | None = None,
    ) -> None:
        self.open_world = open_world
        self.stop_counts: Counter[Target] = Counter()
        self._calls: dict[str, _Call] = {}
        # Registered calls not hung up, in the order they were added: the live list.
        self._live: dict[str, None] = {}
        self._hung_up: set[str] = set()
        self._account = f"{ACCOUNT_PREFIX}{auth_id}/"
        self.paging = paging
        self.page_limit = page_limit
        self.live_page_size = live_page_size
        self._stream_numbers = 0
        # One handler per route, by request type.
        self._handlers: dict[type[Any], Callable[[Any], Answer]] = {
            Stream: self._stop_stream,
            AllStreams: self._stop_all_streams,
            Recording: self._stop_recording,
            ListLiveCalls: self._list_live_calls,
            ListStreams: self._list_streams,
        }

    def add(
        self,
        call_uuid: str,
        *,
        streams: Iterable[str] | Mapping[str, str],
        recordings: Iterable[str],
    ) -> None:
        """
        Register a live call with its active streams (ids, or ids to service URLs) and recordings.
        """
        urls = (
            dict(streams)
            if isinstance(streams, Mapping)
            else {stream_id: default_service_url(stream_id) for stream_id in streams}
        )
        self._calls[call_uuid] = _Call(urls, recordings)
        self._live[call_uuid] = None
        self._hung_up.discard(call_uuid)

    def start_stream(
        self, call_uuid: str, service_url: str, *, stream_id: str | None, audio_track: str
    ) -> str:
        """
        Start a stream on a registered live call; its id.
        """
        if call_uuid not in self._live:
            raise ValueError(f"no live call {call_uuid!r}: add_call() it first")
        call = self._calls[call_uuid]
        if stream_id is None:
            self._stream_numbers += 1
            stream_id = str(uuid.UUID(int=self._stream_numbers))
        if stream_id in call.listed:
            raise ValueError(f"call {call_uuid!r} already has a stream {stream_id!r}")
        call.streams.active.add(stream_id)
        call.listed[stream_id] = _StreamRecord(service_url, audio_track)
        return stream_id

    def hang_up(self, call_uuid: str) -> None:
        """
        The call ends: from now on every request about it answers 404.
        """
        self._calls.pop(call_uuid, None)
        self._live.pop(call_uuid, None)
        self._hung_up.add(call_uuid)

    def live(self) -> list[str]:
        """
        The live calls, in the order they were added.
        """
        return list(self._live)

    def active_streams(self, call_uuid: str) -> set[str]:
        """
        Streams still running on a registered call.
        """
        call = self._calls.get(call_uuid)
        return set(call.streams.active) if call else set()

    def active_recordings(self, call_uuid: str) -> set[str]:
        """
        Recordings still running on a registered call.
        """
        call = self._calls.get(call_uuid)
        return set(call.recordings.active) if call else set()

    def handle(self, target: object) -> Answer:
        """
        Apply one valid, authenticated request: a stop (204, or 404), a listing (200).
        """
        handler = self._handlers.get(type(target))
        if handler is None:  # a route without a handler is as unknown as any other path
            return not_found("Resource")
        return handler(target)

    def _stop_stream(self, target: Stream) -> Answer:
        call = self._call(target.call_uuid)
        if call is None or not call.streams.stop_one(target.stream_id, open_world=self.open_world):
            return not_found("Stream")
        call.ended([target.stream_id])
        return self._stopped(target)

    def _stop_all_streams(self, target: AllStreams) -> Answer:
        call = self._call(target.call_uuid)
        if call is None:
            return not_found("Call")
        running = list(call.streams.active)
        # 204 whether or not anything was running, as the API documents.
        if not call.streams.stop_all(open_world=self.open_world):
            return Answer(204)
        call.ended(running)
        return self._stopped(target)

    def _stop_recording(self, target: Recording) -> Answer:
        call = self._call(target.call_uuid)
        if call is None:
            return not_found("Call")
        recordings = call.recordings
        if target.url is None:
            # Every recording: 204 whether or not any was running, as for streams.
            if not recordings.stop_all(open_world=self.open_world):
                return Answer(204)
        elif not recordings.stop_one(target.url, open_world=self.open_world):
            return not_found("Recording")
        return self._stopped(target)

    def _stopped(self, target: Target) -> Answer:
        self.stop_counts[target] += 1
        return Answer(204)

    def _list_live_calls(self, request: ListLiveCalls) -> Answer:
        calls = list(self._live) if request.status == "live" else []
        body: dict[str, Any] = {"api_id": str(uuid.uuid4())}
        size = self.live_page_size
        if size is None:
            return json_answer({**body, "calls": calls})
        limit = min(request.limit or size, size)
        offset = request.offset or 0
        after = offset + limit
        more = ListLiveCalls(request.status, limit, after) if after < len(calls) else None
        body["meta"] = self._meta(more, offset=offset, limit=limit, total=len(calls))
        return json_answer({**body, "calls": calls[offset:after]})

    def _list_streams(self, request: ListStreams) -> Answer:
        call = self._call(request.call_uuid)
        if call is None:
            return not_found("Call")
        limit = min(request.limit or self.page_limit, self.page_limit)
        offset = request.offset or 0
        after = offset + limit
        listed = list(call.listed.items())
        objects = [
            {
                "stream_id": stream_id,
                "call_uuid": request.call_uuid,
                "service_url": record.service_url,
                "status_callback_url": None,
                "bidirectional": False,
                "audio_track": record.audio_track,
                "content_type": "audio/x-l16;rate=8000",
                "status": "in-progress" if stream_id in call.streams.active else "completed",
                "start_time": record.start_time,
                "end_time": record.end_time,
            }
            for stream_id, record in listed[offset:after]
        ]
        total = len(listed)
        if self.paging == "page":
            page = offset // limit + 1
            return json_answer(
                {"page": page, "per_page": limit, "total": total, "objects": objects}
            )
        more = ListStreams(request.call_uuid, limit, after) if after < total else None
        meta = self._meta(more, offset=offset, limit=limit, total=total)
        return json_answer({"api_id": str(uuid.uuid4()), "meta": meta, "objects": objects})

    def _meta(
        self, more: ListLiveCalls | ListStreams | None, *, offset: int, limit: int, total: int
    ) -> dict[str, Any]:
        """
        Plivo's ``meta``: ``next`` the path of the next page, or null on the last.
        """
        following = (
            None
            if more is None
            else self._account + more.route.path_for(more) + more.route.query_for(more)
        )
        return {
            "previous": None,
            "next": following,
            "total_count": total,
            "offset": offset,
            "limit": limit,
        }

    def _call(self, call_uuid: str) -> _Call | None:
        call = self._calls.get(call_uuid)
        if call is None and self.open_world and call_uuid not in self._hung_up:
            call = self._calls[call_uuid] = _Call()
        return call
