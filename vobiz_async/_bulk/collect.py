"""
stop_many(): the whole batch, one result per target, in input order.
"""

from __future__ import annotations

from .._models import BulkReport, StopResult
from .._session import Session
from .engine import ResultHook, Work, check_limits, fan_out

__all__ = ["stop_many"]


async def stop_many(
    session: Session,
    targets: Work,
    *,
    concurrency: int,
    rate_limit: float | None,
    on_result: ResultHook | None,
) -> BulkReport:
    """
    Run the whole batch and return one result per target, in input order.
    """
    check_limits(concurrency, rate_limit)
    results: dict[int, StopResult] = {}

    async def keep(index: int, result: StopResult) -> None:
        results[index] = result

    await fan_out(
        session,
        targets,
        concurrency=concurrency,
        rate_limit=rate_limit,
        on_result=on_result,
        emit=keep,
    )
    return BulkReport([results[index] for index in range(len(results))])
