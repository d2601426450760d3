"""
The fake's state machine: calls, their streams and recordings, and what each stop changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from .._targets import AllStreams, Recording, Stream, Target
from ._wire import Answer, not_found

__all__ = ["Calls"]


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
    __slots__ = ("recordings", "streams")

    def __init__(self, streams: Iterable[str] = (), recordings: Iterable[str] = ()) -> None:
        self.streams = _Group(streams)
        self.recordings = _Group(recordings)


class Calls:
    """
    Every call the fake knows, and the stops applied to them.

    With ``open_world=False`` only calls registered with ``add`` exist; with
    ``open_world=True`` any call exists, with every stream and recording alive
    until it is stopped. ``stop_counts`` counts, per target, the stops that
    changed state.
    """

    def __init__(self, *, open_world: bool) -> None:
        self.open_world = open_world
        self.stop_counts: Counter[Target] = Counter()
        self._calls: dict[str, _Call] = {}
        # One handler per route, by request type.
        self._handlers: dict[type[Any], Callable[[Any], Answer]] = {
            Stream: self._stop_stream,
            AllStreams: self._stop_all_streams,
            Recording: self._stop_recording,
        }

    def add(self, call_uuid: str, *, streams: Iterable[str], recordings: Iterable[str]) -> None:
        """
        Register a live call with its active streams and recording URLs.
        """
        self._calls[call_uuid] = _Call(streams, recordings)

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

    def stop(self, target: Target) -> Answer:
        """
        Apply one valid, authenticated stop: 204, or 404 when there is nothing to stop.
        """
        handler = self._handlers.get(type(target))
        if handler is None:  # a route without a handler is as unknown as any other path
            return not_found("Resource")
        return handler(target)

    def _stop_stream(self, target: Stream) -> Answer:
        call = self._call(target.call_uuid)
        if call is None or not call.streams.stop_one(target.stream_id, open_world=self.open_world):
            return not_found("Stream")
        return self._stopped(target)

    def _stop_all_streams(self, target: AllStreams) -> Answer:
        call = self._call(target.call_uuid)
        if call is None:
            return not_found("Call")
        # 204 whether or not anything was running, as the API documents.
        if not call.streams.stop_all(open_world=self.open_world):
            return Answer(204)
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

    def _call(self, call_uuid: str) -> _Call | None:
        call = self._calls.get(call_uuid)
        if call is None and self.open_world:
            call = self._calls[call_uuid] = _Call()
        return call
