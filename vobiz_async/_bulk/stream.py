"""
iter_stop_many(): results as they complete, holding none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Self

from .._config import CallLimits
from .._models import StopResult
from .._session import Session
from .announce import SentHook
from .engine import ResultHook, Work, check_limits, fan_out

__all__ = ["StopResultStream", "iter_stop_many"]

Batch = Callable[..., Coroutine[None, None, None]]


def iter_stop_many(
    session: Session,
    targets: Work,
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    limits: CallLimits,
    name: str = "vobiz.iter_stop_many",
    on_sent: SentHook | None = None,
) -> StopResultStream:
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
        limits=limits,
        name=name,
        on_sent=on_sent,
    )
    return StopResultStream(batch, room=concurrency)


class StopResultStream:
    """
    The results of a batch as they complete: an async iterator and an async context manager.

    The batch starts at the first ``__anext__``. Leaving ``async with`` (or
    ``aclose()``) cancels whatever is still in flight. An iterator dropped
    mid-way (``async for ... break`` with nothing else referring to it)
    cancels its batch when it is garbage-collected, which CPython does at once.
    """

    def __init__(self, batch: Batch, *, room: int) -> None:
        self._batch = batch
        # The running batch refers to the channel, never to this object, so
        # that dropping this object is enough to have it collected.
        self._channel = _Channel(room)
        self._producer: asyncio.Task[None] | None = None
        self._finished = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StopResult:
        if self._finished:
            raise StopAsyncIteration
        channel = self._channel
        if self._producer is None:
            self._producer = asyncio.create_task(self._batch(emit=channel.put))
            self._producer.add_done_callback(channel.end)
        result = await channel.queue.get()
        if result is None:
            self._finished = True
            await self._producer  # re-raises the input's or the hook's exception, if any
            raise StopAsyncIteration
        channel.waiting.release()
        return result

    async def aclose(self) -> None:
        """
        Cancel what is still in flight and wait until it has stopped.

        An exception the batch raised (the input's or ``on_result``'s) is raised
        here, if nothing has raised it yet.
        """
        self._finished = True
        producer = self._producer
        if producer is None:
            return
        if not producer.done():
            producer.cancel()
            try:
                await producer
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller is being cancelled too: that must not be lost
                return
        if not producer.cancelled() and (error := producer.exception()) is not None:
            self._producer = None  # raised once
            raise error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        # The block's own exception wins; the batch's is retrieved, not lost in a log.
        with contextlib.suppress(Exception):
            await self.aclose()

    def __del__(self) -> None:
        producer = self._producer
        if producer is not None and not producer.done():
            # The loop may be closed already; then there is nothing left to cancel.
            with contextlib.suppress(RuntimeError):
                producer.cancel()


class _Channel:
    """
    Where the batch puts results and the consumer takes them.

    ``waiting`` bounds the results waiting for the consumer, so that a slow
    consumer holds the workers back instead of letting them pile up in memory.
    The queue itself is unbounded so that the end marker (None) never blocks.
    """

    def __init__(self, room: int) -> None:
        self.queue: asyncio.Queue[StopResult | None] = asyncio.Queue()
        self.waiting = asyncio.Semaphore(room)

    async def put(self, _: int, result: StopResult) -> None:
        await self.waiting.acquire()
        self.queue.put_nowait(result)

    def end(self, _: asyncio.Task[None]) -> None:
        # Wakes the consumer however the batch ends: done, failed or cancelled.
        self.queue.put_nowait(None)
