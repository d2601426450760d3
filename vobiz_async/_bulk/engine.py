"""
The engine under stop_many(), iter_stop_many() and teardown(): a worker pool over one lazy input.

The algorithm is a pool of at most ``concurrency`` worker tasks pulling from
one shared, lazily read input (the worker-pool pattern), rather than one task
per target: memory stays proportional to what is in flight however long the
input. Workers start on demand (one more whenever every worker is busy), so a
batch of ten costs ten workers whatever its ``concurrency``. Each result goes
to ``emit``, which is all the entry points differ in.

Besides targets, the input may hold a ``Discovery``: work that lists what
runs (a call's streams, a page of live calls) and finds more work. A worker
runs it through the batch's gate like any request, and what it found is
read before anything else, newest first (depth first): so the stops a
listing found go out before the next listing starts, listing and stopping
overlap, and what waits in memory stays bounded by what is in flight.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from typing import Final, Literal

import attrs

from .._config import CallLimits
from .._exceptions import VobizError
from .._models import StopResult
from .._retry import Gate
from .._session import Session
from .._targets import Target
from .announce import Announcing, SentHook
from .gate import BatchGate

__all__ = [
    "Discovery",
    "Emit",
    "Found",
    "ResultHook",
    "Targets",
    "Work",
    "check_limits",
    "fan_out",
    "shed_frames",
]

#: Called with every result as it completes; may be a coroutine function.
ResultHook = Callable[[StopResult], object]
Emit = Callable[[int, StopResult], Awaitable[None]]
Targets = Iterable[Target] | AsyncIterable[Target]


@attrs.frozen
class Found:
    """
    What a Discovery found: more work, read lazily, and its own result if it has one.
    """

    items: Iterable[Target | Discovery] = ()
    #: A result of the listing itself (it failed, or found the call ended); None if none.
    result: StopResult | None = None


class Discovery(abc.ABC):
    """
    Work that lists what runs and finds more work: the targets to stop, more listings.
    """

    @abc.abstractmethod
    async def discover(self, session: Session, gate: Gate) -> Found:
        """
        List through ``gate``, as the batch's requests go.

        A VobizError raised here is the batch's: it reads nothing more of this
        listing, finishes everything else, then raises it.
        """


#: A batch's input: targets, and listings that find more of them.
Work = Iterable[Target | Discovery] | AsyncIterable[Target | Discovery]


def check_limits(concurrency: int, rate_limit: float | None) -> None:
    """
    Raise ValueError for a concurrency or rate limit no batch can run with.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0:
        raise ValueError(f"concurrency must be an int > 0, got {concurrency!r}")
    if rate_limit is not None and not rate_limit > 0:  # NaN fails this too
        raise ValueError(
            f"rate_limit must be > 0 requests per second (inf for no limit) or None, "
            f"got {rate_limit!r}"
        )


class _Ending(enum.Enum):
    END = enum.auto()


#: What the input answers once it has nothing more: None could be an item (a bad one).
END: Final = _Ending.END
_END = object()


class _Source:
    """
    The input, read one item at a time, only when a worker is free for it.

    What discoveries found is read first, newest first; then the input. The
    input ends for a worker once it is exhausted and no discovery is running
    (one that is might still find more).
    """

    def __init__(self, work: Work) -> None:
        self._index = 0
        self._sync = None if isinstance(work, AsyncIterable) else iter(work)
        self._async = work.__aiter__() if isinstance(work, AsyncIterable) else None
        # Two workers must never be inside one async generator's __anext__ at once.
        self._lock = asyncio.Lock()
        self._input_left = True
        # What discoveries found, the last read first: each a lazy iterator and
        # its next item, read ahead so that an exhausted one is dropped at once.
        # (Dropped only when found exhausted, they piled up under newer ones.)
        self._found: list[tuple[Iterator[Target | Discovery], object]] = []
        self._discovering = 0
        self._more = asyncio.Event()
        #: Workers waiting for the next item right now.
        self.waiting = 0

    def number(self) -> int:
        """
        The next result's position: results are numbered in the order they are taken.
        """
        index = self._index
        self._index += 1
        return index

    async def next(self) -> Target | Discovery | Literal[_Ending.END]:
        """
        The next item, or END.

        Exhausted iterators keep answering the default, so no flag is needed for them.
        """
        while True:
            found = self._found
            if found:
                items, item = found.pop()
                self._push(items)
                return item  # type: ignore[return-value]
            if self._input_left:
                item = await self._next_input()
                if item is not _END:
                    # Anything else is carried to check_target, which fails it clearly.
                    return item  # type: ignore[return-value]
                self._input_left = False
                continue  # a discovery may have found more while we waited
            if not self._discovering:
                return END
            self._more.clear()
            self.waiting += 1
            try:
                await self._more.wait()
            finally:
                self.waiting -= 1

    async def _next_input(self) -> object:
        if self._sync is not None:
            return next(self._sync, _END)
        assert self._async is not None
        self.waiting += 1
        try:
            async with self._lock:
                return await anext(self._async, _END)
        finally:
            self.waiting -= 1

    def discovering(self) -> None:
        """
        A discovery started: the input is not over until it ends.
        """
        self._discovering += 1

    def discovered(self, items: Iterable[Target | Discovery]) -> None:
        """
        A discovery ended with ``items`` to read next.
        """
        self._discovering -= 1
        self._more.set()
        self._push(iter(items))

    def _push(self, items: Iterator[Target | Discovery]) -> None:
        item = next(items, _END)
        if item is not _END:
            self._found.append((items, item))


async def fan_out(
    session: Session,
    targets: Work,
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    emit: Emit,
    limits: CallLimits,
    name: str,
    on_sent: SentHook | None = None,
) -> None:
    """
    Stop every target with ``concurrency`` workers; each result to ``on_result``, then ``emit``.

    ``on_sent`` hears of each target when its first request is handed to the
    transport, not before (a target waiting for the rate limit is not sent).

    Discoveries in the input run on the same workers and gate. If one raises
    a VobizError, the rest of the batch still runs, and then it is raised.
    ``limits`` are every stop's timeout and retry policy; ``name`` is the
    batch's name in telemetry.
    """
    session.ensure_open()
    source = _Source(targets)
    failed_discovery: list[VobizError] = []
    gate = BatchGate(
        rate_limit=rate_limit,
        max_retry_after=limits.retry.max_retry_after,
        clock=session.clock,
        sleep=session.sleep,
    )

    async def one(target: Target) -> StopResult:
        unsent = gate.brakes.stopped(sent=False)
        if unsent is None:
            paced = gate if on_sent is None else Announcing(gate, target, on_sent)
            return await session.stop(target, gate=paced, limits=limits)
        return session.refuse(target, unsent)

    pool = session.lease_pool()
    workers = 0
    watch = session.observers.batch(name, concurrency=concurrency, rate_limit=rate_limit)
    try:
        # Entered before the workers start: they run inside the batch's span.
        with watch:
            async with asyncio.TaskGroup() as group:

                def start_worker() -> None:
                    nonlocal workers
                    workers += 1
                    pool.grow_to(workers)
                    group.create_task(worker())

                async def deliver(index: int, result: StopResult) -> None:
                    watch.result(result)
                    if result.error is not None:
                        shed_frames(result.error)
                    if on_result is not None:
                        hooked = on_result(result)
                        if inspect.isawaitable(hooked):
                            await hooked
                    await emit(index, result)

                async def explore(discovery: Discovery) -> None:
                    source.discovering()
                    found = Found()
                    try:
                        found = await discovery.discover(session, gate)
                    except VobizError as exc:
                        failed_discovery.append(exc)
                    finally:
                        source.discovered(found.items)
                    if found.result is not None:
                        await deliver(source.number(), found.result)

                async def worker() -> None:
                    while (item := await source.next()) is not END:
                        if workers < concurrency and source.waiting == 0:
                            start_worker()  # every worker is busy: one more may read ahead
                        if isinstance(item, Discovery):
                            await explore(item)
                        else:
                            index = source.number()
                            await deliver(index, await one(item))

                start_worker()
            if failed_discovery:
                raise failed_discovery[0]  # inside the batch's span: it ends as an error
    finally:
        pool.release()  # the widening was this batch's: the pool narrows back


def shed_frames(error: BaseException) -> None:
    """
    Drop the tracebacks of an error kept in a batch result, and of its causes.

    A traceback keeps every frame of the failed request alive, hundreds of
    objects each: a report of thousands of failures made every full garbage
    collection stall the event loop for longer and longer, until deadlines
    were missed. The errors and their causes stay; their frames go.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        # The context holds the previous attempt's error, with frames of its own.
        pending += (current.__cause__, current.__context__)
