"""
The running count of a batch, which the progress display and the summary read.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

__all__ = ["Tally"]


@attrs.define
class Tally:
    """
    What the run did so far; the summary and the progress line read it.
    """

    rows: int | None = None  # input rows, when known up front
    stopped: int = 0
    not_found: int = 0
    failed: int = 0
    bad_rows: int = 0
    skipped: int = 0
    planned: int = 0  # --dry-run: valid targets that would have been sent
    started: float = attrs.Factory(time.monotonic)
    interrupted: bool = False

    @property
    def done(self) -> int:
        """
        Rows with an outcome: sent and answered, or bad.
        """
        return self.stopped + self.not_found + self.failed + self.bad_rows

    @property
    def accounted(self) -> int:
        """
        Rows dealt with one way or another, skipped ones included: the bar's progress.
        """
        return self.done + self.skipped

    @property
    def total(self) -> int | None:
        """
        Targets this run was to handle: the rows less those --resume skipped.
        """
        return None if self.rows is None else self.rows - self.skipped

    @property
    def not_attempted(self) -> int | None:
        """
        Rows never dealt with (an interrupted run), or None when that is unknown.
        """
        if self.rows is None:
            return None if self.interrupted else 0
        return max(self.rows - self.accounted, 0)

    def rate(self) -> float:
        """
        Rows done per second so far.
        """
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def counts_text(self) -> str:
        """
        The outcome counts in one short phrase, for progress.
        """
        return (
            f"stopped {self.stopped}, not found {self.not_found}, "
            f"failed {self.failed + self.bad_rows}"
        )

    def as_json(self) -> dict[str, Any]:
        """
        The summary --json prints.
        """
        elapsed = time.monotonic() - self.started
        return {
            "total": self.total,
            "stopped": self.stopped,
            "not_found": self.not_found,
            "failed": self.failed + self.bad_rows,
            "bad_rows": self.bad_rows,
            "skipped": self.skipped,
            "not_attempted": self.not_attempted,
            "interrupted": self.interrupted,
            "elapsed": round(elapsed, 3),
            "requests_per_second": round(self.rate(), 1),
        }
