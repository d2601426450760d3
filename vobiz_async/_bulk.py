"""
stop_many() and iter_stop_many(): bounded, paced fan-out that loses nothing.

The algorithm is a fixed pool of ``concurrency`` worker tasks pulling from one
shared, lazily read input (the worker-pool pattern), rather than one task per
target: memory stays proportional to ``concurrency`` however long the input.
Pacing is a leaky bucket of capacity one (aiolimiter), so requests are spaced
evenly at ``1 / rate_limit`` seconds and no burst ever exceeds the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiolimiter import AsyncLimiter

from ._exceptions import AuthenticationError, RateLimitError, VobizError
from ._models import BulkReport, Outcome, StopResult, Target, check_target

if TYPE_CHECKING:
    from ._client import AsyncVobiz, ResultHook

__all__ = ["iter_stop_many", "stop_many"]

Emit = Callable[[int, StopResult], Awaitable[None]]


def _check_limits(concurrency: int, rate_limit: float | None) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0:
        raise ValueError(f"concurrency must be an int > 0, got {concurrency!r}")
    if rate_limit is not None and not rate_limit > 0:
        raise ValueError(f"rate_limit must be > 0 requests per second or None, got {rate_limit!r}")


_END = object()


class _Source:
    """
    The input, read one target at a time, only when a worker is free for it.
    """

    def __init__(self, targets: Iterable[Target] | AsyncIterable[Target]) -> None:
        self._index = 0
        self._sync = None if isinstance(targets, AsyncIterable) else iter(targets)
        self._async = targets.__aiter__() if isinstance(targets, AsyncIterable) else None
        # Two workers must never be inside one async generator's __anext__ at once.
        self._lock = asyncio.Lock()

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
            async with self._lock:
                target = await anext(self._async, _END)
        if target is _END:
            return None
        index = self._index
        self._index += 1
        # Anything else is carried to check_target, which fails it with a clear error.
        return index, target  # type: ignore[return-value]


class _Brakes:
    """
    Batch-wide reactions to errors that concern every target, not just one.

    A 429 with Retry-After pauses every worker, so a rate-limit storm slows the
    batch down instead of burning each target's attempts. A 401 means every
    later request would fail too: the rest of the batch is failed with that
    same error instead of sending thousands of doomed requests.
    """

    def __init__(self, client: AsyncVobiz, rate_limit: float | None) -> None:
        self._clock = client._clock
        self._sleep = client._sleep
        self._limiter = AsyncLimiter(1, 1 / rate_limit) if rate_limit is not None else None
        self._max_pause = client.retry.max_retry_after
        self.resume_at = 0.0
        self.auth_failure: AuthenticationError | None = None

    async def before_attempt(self) -> None:
        while (wait := self.resume_at - self._clock()) > 0:
            await self._sleep(wait)
        if self._limiter is not None:
            await self._limiter.acquire()

    def on_error(self, exc: VobizError) -> None:
        if isinstance(exc, AuthenticationError):
            self.auth_failure = self.auth_failure or exc
        elif (
            isinstance(exc, RateLimitError)
            and exc.retry_after is not None
            and exc.retry_after <= self._max_pause
        ):
            self.resume_at = max(self.resume_at, self._clock() + exc.retry_after)


async def _fan_out(
    client: AsyncVobiz,
    targets: Iterable[Target] | AsyncIterable[Target],
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
    emit: Emit,
) -> None:
    client._ensure_open()
    client._widen_pool(concurrency)
    source = _Source(targets)
    brakes = _Brakes(client, rate_limit)

    async def one(target: Target) -> StopResult:
        if brakes.auth_failure is not None:
            try:
                check_target(target)
            except VobizError as exc:
                return StopResult(target, Outcome.FAILED, error=exc)
            return StopResult(target, Outcome.FAILED, error=brakes.auth_failure)
        return await client._run(
            target, before_attempt=brakes.before_attempt, on_error=brakes.on_error
        )

    async def worker() -> None:
        while (item := await source.next()) is not None:
            index, target = item
            result = await one(target)
            if result.error is not None:
                _shed_frames(result.error)
            if on_result is not None:
                hooked = on_result(result)
                if inspect.isawaitable(hooked):
                    await hooked
            await emit(index, result)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


def _shed_frames(error: BaseException) -> None:
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


async def stop_many(
    client: AsyncVobiz,
    targets: Iterable[Target] | AsyncIterable[Target],
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
) -> BulkReport:
    """
    Run the whole batch and return one result per target, in input order.
    """
    _check_limits(concurrency, rate_limit)
    results: dict[int, StopResult] = {}

    async def keep(index: int, result: StopResult) -> None:
        results[index] = result

    await _fan_out(
        client,
        targets,
        concurrency=concurrency,
        rate_limit=rate_limit,
        on_result=on_result,
        emit=keep,
    )
    return BulkReport([results[index] for index in range(len(results))])


def iter_stop_many(
    client: AsyncVobiz,
    targets: Iterable[Target] | AsyncIterable[Target],
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
) -> AsyncIterator[StopResult]:
    """
    Check the arguments now, not at the first ``async for`` step, then stream results.
    """
    _check_limits(concurrency, rate_limit)
    return _iterate(
        client, targets, concurrency=concurrency, rate_limit=rate_limit, on_result=on_result
    )


async def _iterate(
    client: AsyncVobiz,
    targets: Iterable[Target] | AsyncIterable[Target],
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
) -> AsyncIterator[StopResult]:
    # `room` bounds the results waiting for the consumer, so that a slow
    # consumer holds the workers back instead of letting them pile up in memory.
    # The queue itself is unbounded so that the end marker (None) never blocks.
    queue: asyncio.Queue[StopResult | None] = asyncio.Queue()
    room = asyncio.Semaphore(concurrency)

    async def put(_: int, result: StopResult) -> None:
        await room.acquire()
        queue.put_nowait(result)

    producer = asyncio.create_task(
        _fan_out(
            client,
            targets,
            concurrency=concurrency,
            rate_limit=rate_limit,
            on_result=on_result,
            emit=put,
        )
    )
    # Wakes the consumer however the batch ends: done, failed or cancelled.
    producer.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (result := await queue.get()) is not None:
            room.release()
            yield result
        await producer  # re-raises the input's or the hook's exception, if any
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
