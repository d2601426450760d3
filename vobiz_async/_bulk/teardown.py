"""
teardown(): find what runs on each call and stop it, in one batch.

For each call: its streams (one stop-all request; or, with ``streams_to``, a
listing of the call's streams and one stop per running stream that matches),
then its recordings (one stop-all request). The calls come from the caller,
or from the live-call list, read a page at a time. Everything is work for
the bulk engine: a listing is a ``Discovery`` whose answer becomes stops, so
listing and stopping overlap and share one gate, one pool and one set of
brakes, and memory stays bounded by what is in flight.

A call whose listing failed has one result: its target is ``AllStreams(call)``
(the streams that could not be stopped), ``FAILED`` with the listing's error,
or ``NOT_FOUND`` when the listing answered 404 (the call has ended). Nothing
was sent to stop them. A live-call list that cannot be read is the whole
batch's error: raised once everything already found has been stopped.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator

import attrs

from .._config import CallLimits
from .._discovery import (
    LiveCursor,
    StreamInfo,
    StreamListing,
    next_live_page,
    running,
    selector,
    stream_pages,
)
from .._exceptions import APIStatusError, NotFoundError, VobizError
from .._models import BulkReport, Outcome, StopResult
from .._retry import Gate
from .._session import Session
from .._targets import AllStreams, Recording, Stream, Target
from .collect import stop_many
from .engine import Discovery, Found, ResultHook, Work
from .stream import StopResultStream, iter_stop_many

__all__ = [
    "CallStreams",
    "Calls",
    "ListingHook",
    "LiveCalls",
    "Plan",
    "Skip",
    "StreamsTo",
    "iter_teardown",
    "listing_failed",
    "teardown",
    "teardown_work",
]

#: The calls to tear down: call UUIDs from any iterable or async iterable.
Calls = Iterable[str] | AsyncIterable[str]
#: Which streams to stop: those whose service_url starts with this, or a predicate.
StreamsTo = str | Callable[[StreamInfo], bool]
#: Asked about each target before it is sent; True leaves it unsent, with no result.
Skip = Callable[[Target], bool]
#: Called with what was listed on each call (``streams_to`` only); may be a coroutine function.
ListingHook = Callable[[StreamListing], object]


@attrs.frozen
class Plan:
    """
    What teardown does on each call.
    """

    streams: bool
    recordings: bool
    #: Which running streams to stop one by one; None: all, with one request.
    select: Callable[[StreamInfo], bool] | None
    skip: Skip | None
    on_listing: ListingHook | None
    #: The teardown's timeout and retry policy, for its listings as for its stops.
    limits: CallLimits

    def per_call(self, call_uuid: str) -> Iterator[Target | Discovery]:
        """
        The work for one call: its streams, then its recordings.
        """
        if self.streams:
            if self.select is None:
                yield from self.unskipped([AllStreams(call_uuid)])
            else:
                yield CallStreams(call_uuid, self)
        if self.recordings:
            yield from self.unskipped([Recording(call_uuid)])

    def unskipped(self, targets: Iterable[Target]) -> Iterator[Target]:
        """
        The targets ``skip`` does not leave out.
        """
        skip = self.skip
        return iter(targets) if skip is None else (t for t in targets if not skip(t))


@attrs.frozen(eq=False)
class CallStreams(Discovery):
    """
    List one call's streams; stop the running ones that match.
    """

    call_uuid: str
    plan: Plan

    async def discover(self, session: Session, gate: Gate) -> Found:
        """
        Every page of the call's streams, then one Stream stop per running match.
        """
        select = self.plan.select
        assert select is not None
        started = session.clock()
        listed: list[StreamInfo] = []
        try:
            pages = stream_pages(session, self.call_uuid, gate=gate, limits=self.plan.limits)
            async for page in pages:
                listed += page
        except VobizError as exc:
            return Found(result=listing_failed(self.call_uuid, exc, session.clock() - started))
        matched = tuple(info for info in running(listed) if select(info))
        hook = self.plan.on_listing
        if hook is not None:
            hooked = hook(StreamListing(self.call_uuid, tuple(listed), matched))
            if inspect.isawaitable(hooked):
                await hooked
        stops = (Stream(self.call_uuid, info.stream_id) for info in matched)
        return Found(items=self.plan.unskipped(stops))


def listing_failed(call_uuid: str, error: VobizError, elapsed: float) -> StopResult:
    """
    The result of a call whose streams could not be listed: nothing was sent to stop them.
    """
    target = AllStreams(call_uuid)
    status = error if isinstance(error, APIStatusError) else None
    if isinstance(error, NotFoundError):
        # The call ended between being named and being listed: nothing left to stop.
        return StopResult(
            target,
            Outcome.NOT_FOUND,
            status_code=404,
            attempts=error.attempts,
            elapsed=elapsed,
            api_id=error.api_id,
        )
    return StopResult(
        target,
        Outcome.FAILED,
        status_code=status.status_code if status else None,
        attempts=error.attempts,
        elapsed=elapsed if error.attempts else 0.0,
        api_id=status.api_id if status else None,
        error=error,
    )


@attrs.frozen(eq=False)
class LiveCalls(Discovery):
    """
    One page of the live-call list: each call's work, then the next page.
    """

    cursor: LiveCursor
    plan: Plan

    async def discover(self, session: Session, gate: Gate) -> Found:
        """
        Read the page; a failure is the batch's (raised after the rest has run).
        """
        calls, after = await next_live_page(
            session, self.cursor, gate=gate, limits=self.plan.limits
        )
        return Found(items=self._work(calls, after))

    def _work(self, calls: list[str], after: LiveCursor | None) -> Iterator[Target | Discovery]:
        for call in calls:
            yield from self.plan.per_call(call)
        if after is not None:
            yield LiveCalls(after, self.plan)


def teardown_work(
    calls: Calls | None,
    *,
    streams: bool,
    recordings: bool,
    streams_to: StreamsTo | None,
    skip: Skip | None,
    on_listing: ListingHook | None,
    limits: CallLimits,
) -> Work:
    """
    The batch's input for these arguments; ValueError or TypeError for ones that make no sense.
    """
    if not (streams or recordings):
        raise ValueError("teardown with streams=False and recordings=False has nothing to stop")
    if streams_to is not None:
        if not streams:
            raise ValueError("streams_to selects streams to stop: it needs streams=True")
        if isinstance(streams_to, str):
            if not streams_to:
                raise ValueError(
                    "streams_to must be a URL prefix such as 'wss://bot-3.example.com/'; "
                    "leave it None to stop every stream"
                )
        elif not callable(streams_to):
            raise TypeError(
                "streams_to must be a URL prefix (str) or a predicate on StreamInfo, "
                f"not {type(streams_to).__name__}"
            )
    for name, hook in (("skip", skip), ("on_listing", on_listing)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable, not {type(hook).__name__}")
    plan = Plan(
        streams=streams,
        recordings=recordings,
        select=None if streams_to is None else selector(streams_to),
        skip=skip,
        on_listing=on_listing,
        limits=limits,
    )
    if calls is None:
        return [LiveCalls(LiveCursor(), plan)]
    if isinstance(calls, str | bytes):
        raise TypeError(
            "calls must be an iterable of call UUIDs (a list, a generator, an async "
            f"iterable), not one {type(calls).__name__}: write [{calls!r}]"
        )
    if isinstance(calls, AsyncIterable):
        return _per_call_async(calls, plan)
    if not isinstance(calls, Iterable):
        raise TypeError(f"calls must be an iterable of call UUIDs, not {type(calls).__name__}")
    return (item for call in calls for item in plan.per_call(call))


async def _per_call_async(
    calls: AsyncIterable[str], plan: Plan
) -> AsyncIterator[Target | Discovery]:
    async for call in calls:
        for item in plan.per_call(call):
            yield item


async def teardown(
    session: Session,
    calls: Calls | None,
    *,
    streams: bool,
    recordings: bool,
    streams_to: StreamsTo | None,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    on_listing: ListingHook | None,
    skip: Skip | None,
    limits: CallLimits,
) -> BulkReport:
    """
    Tear down every call, one result per request made (and per failed listing).

    stop_many checks ``concurrency`` and ``rate_limit``, as for any batch.
    """
    work = teardown_work(
        calls,
        streams=streams,
        recordings=recordings,
        streams_to=streams_to,
        skip=skip,
        on_listing=on_listing,
        limits=limits,
    )
    return await stop_many(
        session,
        work,
        concurrency=concurrency,
        rate_limit=rate_limit,
        on_result=on_result,
        limits=limits,
        name="vobiz.teardown",
    )


def iter_teardown(
    session: Session,
    calls: Calls | None,
    *,
    streams: bool,
    recordings: bool,
    streams_to: StreamsTo | None,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    on_listing: ListingHook | None,
    skip: Skip | None,
    limits: CallLimits,
) -> StopResultStream:
    """
    Like teardown(), yielding results as they complete; arguments checked now.
    """
    work = teardown_work(
        calls,
        streams=streams,
        recordings=recordings,
        streams_to=streams_to,
        skip=skip,
        on_listing=on_listing,
        limits=limits,
    )
    return iter_stop_many(
        session,
        work,
        concurrency=concurrency,
        rate_limit=rate_limit,
        on_result=on_result,
        limits=limits,
        name="vobiz.iter_teardown",
    )
