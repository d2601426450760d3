"""
The engine under stop_many() and iter_stop_many(): a worker pool over one lazy input.

The algorithm is a pool of at most ``concurrency`` worker tasks pulling from
one shared, lazily read input (the worker-pool pattern), rather than one task
per target: memory stays proportional to what is in flight however long the
input. Workers start on demand (one more whenever every worker is busy), so a
batch of ten costs ten workers whatever its ``concurrency``. Each result goes
to ``emit``, which is all the two entry points differ in.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable

from .._config import CallLimits
from .._models import StopResult
from .._session import Session
from .._targets import Target
from .gate import BatchGate

__all__ = ["Emit", "ResultHook", "Targets", "check_limits", "fan_out", "shed_frames"]

#: Called with every result as it completes; may be a coroutine function.
ResultHook = Callable[[StopResult], object]
Emit = Callable[[int, StopResult], Awaitable[None]]
Targets = Iterable[Target] | AsyncIterable[Target]


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


_END = object()


class _Source:
    """
    The input, read one target at a time, only when a worker is free for it.
    """

    def __init__(self, targets: Targets) -> None:
        self._index = 0
        self._sync = None if isinstance(targets, AsyncIterable) else iter(targets)
        self._async = targets.__aiter__() if isinstance(targets, AsyncIterable) else None
        # Two workers must never be inside one async generator's __anext__ at once.
        self._lock = asyncio.Lock()
        #: Workers waiting for the next target right now.
        self.waiting = 0

    async def next(self) -> tuple[int, Target] | None:
        """
        The next target with its input position, or None at the end.

        Exhausted iterators keep answering the default, so no flag is needed.
        """
        target: object
        if self._sync is not None:
            target = next(self._sync, _END)
        else:
            assert self._async is not None
            self.waiting += 1
            try:
                async with self._lock:
                    target = await anext(self._async, _END)
            finally:
                self.waiting -= 1
        if target is _END:
            return None
        index = self._index
        self._index += 1
        # Anything else is carried to check_target, which fails it with a clear error.
        return index, target  # type: ignore[return-value]


async def fan_out(
    session: Session,
    targets: Targets,
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    emit: Emit,
    limits: CallLimits,
    name: str,
) -> None:
    """
    Stop every target with ``concurrency`` workers; each result to ``on_result``, then ``emit``.

    ``limits`` are every stop's timeout and retry policy; ``name`` is the
    batch's name in telemetry.
    """
    session.ensure_open()
    source = _Source(targets)
    gate = BatchGate(
        rate_limit=rate_limit,
        max_retry_after=limits.retry.max_retry_after,
        clock=session.clock,
        sleep=session.sleep,
    )

    async def one(target: Target) -> StopResult:
        unsent = gate.brakes.stopped(sent=False)
        if unsent is None:
            return await session.stop(target, gate=gate, limits=limits)
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

                async def worker() -> None:
                    while (item := await source.next()) is not None:
                        if workers < concurrency and source.waiting == 0:
                            start_worker()  # every worker is busy: one more may read ahead
                        index, target = item
                        result = await one(target)
                        watch.result(result)
                        if result.error is not None:
                            shed_frames(result.error)
                        if on_result is not None:
                            hooked = on_result(result)
                            if inspect.isawaitable(hooked):
                                await hooked
                        await emit(index, result)

                start_worker()
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
