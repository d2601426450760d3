"""
iter_stop_many(): results as they complete, holding none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine

from .._models import StopResult
from .._session import Session
from .engine import ResultHook, Targets, check_limits, fan_out

__all__ = ["iter_stop_many"]


def iter_stop_many(
    session: Session,
    targets: Targets,
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
) -> AsyncIterator[StopResult]:
    """
    Check the arguments now, not at the first ``async for`` step, then stream results.
    """
    check_limits(concurrency, rate_limit)
    batch = functools.partial(
        fan_out,
        session,
        targets,
        concurrency=concurrency,
        rate_limit=rate_limit,
        on_result=on_result,
    )
    return _iterate(batch, room=concurrency)


async def _iterate(
    batch: Callable[..., Coroutine[None, None, None]], *, room: int
) -> AsyncIterator[StopResult]:
    # `waiting` bounds the results waiting for the consumer, so that a slow
    # consumer holds the workers back instead of letting them pile up in memory.
    # The queue itself is unbounded so that the end marker (None) never blocks.
    queue: asyncio.Queue[StopResult | None] = asyncio.Queue()
    waiting = asyncio.Semaphore(room)

    async def put(_: int, result: StopResult) -> None:
        await waiting.acquire()
        queue.put_nowait(result)

    producer = asyncio.create_task(batch(emit=put))
    # Wakes the consumer however the batch ends: done, failed or cancelled.
    producer.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (result := await queue.get()) is not None:
            waiting.release()
            yield result
        await producer  # re-raises the input's or the hook's exception, if any
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
