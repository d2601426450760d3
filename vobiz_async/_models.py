"""
What stopping targets gave: one StopResult per target, a BulkReport per batch.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator

import attrs

from ._exceptions import VobizError
from ._targets import Target

__all__ = ["BulkReport", "Outcome", "StopResult"]


class Outcome(enum.StrEnum):
    """
    How one stop ended.
    """

    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@attrs.frozen
class StopResult:
    """
    What one stop did. ``ok`` is true for STOPPED and NOT_FOUND: both leave nothing running.
    """

    target: Target
    outcome: Outcome
    status_code: int | None = None
    #: Requests sent; 0 when none was (refused before sending, or stopped by a brake).
    attempts: int = 0
    #: Seconds from the first request sent to the last answer: the span the deadline covers.
    elapsed: float = 0.0
    api_id: str | None = None
    error: VobizError | None = None

    @property
    def ok(self) -> bool:
        """
        True unless the stop failed.
        """
        return self.outcome is not Outcome.FAILED


@attrs.frozen
class BulkReport:
    """
    One StopResult per input target, in input order.
    """

    results: list[StopResult]
    counts: dict[Outcome, int] = attrs.field(init=False)

    @counts.default
    def _count(self) -> dict[Outcome, int]:
        tally = Counter(result.outcome for result in self.results)
        return {outcome: tally[outcome] for outcome in Outcome}

    @property
    def ok(self) -> bool:
        """
        True when no target failed.
        """
        return self.counts[Outcome.FAILED] == 0

    @property
    def failed(self) -> list[StopResult]:
        """
        The results that failed, in input order.
        """
        return [result for result in self.results if result.outcome is Outcome.FAILED]

    def __iter__(self) -> Iterator[StopResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)
