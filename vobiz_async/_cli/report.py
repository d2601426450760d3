"""
The report: one JSON line per target as it completes, and --resume reading it back.

Every line names its target by the same columns, whatever its kind: ``kind``
and every field of every stop route, None where a kind has no such field.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

from .._models import Outcome, StopResult
from .._targets import STOP_TARGETS, Target
from .input import BadRow
from .tally import Tally

__all__ = [
    "TARGET_COLUMNS",
    "ReportKey",
    "Reporter",
    "bad_row_line",
    "load_resume",
    "open_report",
    "report_key",
    "result_line",
    "target_fields",
]

#: The columns after ``kind`` that name a target: the stop routes' fields, each once, in order.
TARGET_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(column for cls in STOP_TARGETS for column in cls.route.columns())
)

#: A target's identity across runs: its kind and TARGET_COLUMNS, as a report line has them.
ReportKey = tuple[object, ...]


def target_fields(target: Target) -> dict[str, Any]:
    """
    A target as the columns every report line starts with.
    """
    return {
        "kind": target.kind,
        **{column: getattr(target, column, None) for column in TARGET_COLUMNS},
    }


def result_line(result: StopResult) -> dict[str, Any]:
    """
    The report line for one result.
    """
    return {
        **target_fields(result.target),
        "outcome": result.outcome.value,
        "status_code": result.status_code,
        "attempts": result.attempts,
        "elapsed": round(result.elapsed, 4),
        "error": str(result.error) if result.error is not None else None,
    }


def bad_row_line(kind: str, bad: BadRow) -> dict[str, Any]:
    """
    The report line for a row that never became a target: failed, with what it held.
    """

    def column(name: str) -> Any:
        value = bad.fields.get(name)
        return value if isinstance(value, str | int | float) else None

    return {
        "kind": kind,
        **{name: column(name) for name in TARGET_COLUMNS},
        "outcome": Outcome.FAILED.value,
        "status_code": None,
        "attempts": 0,
        "elapsed": 0.0,
        "error": bad.error,
        "line": bad.line,
    }


def report_key(fields: dict[str, Any]) -> ReportKey:
    """
    The identity of a target in a report line, for --resume.
    """
    return (str(fields.get("kind")), *(fields.get(column) for column in TARGET_COLUMNS))


def load_resume(path: Path, err: Console) -> set[ReportKey]:
    """
    Targets an earlier report shows as finished: stopped or not found.
    """
    finished = set()
    with path.open(encoding="utf-8") as report:
        for number, text in enumerate(report, start=1):
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except ValueError:
                # A line cut short by a crash mid-write: that target is simply redone.
                err.print(f"[yellow]resume: line {number} of {path} is not JSON; ignored")
                continue
            if isinstance(fields, dict) and fields.get("outcome") in ("stopped", "not_found"):
                finished.add(report_key(fields))
    return finished


@contextlib.contextmanager
def open_report(report: Path | None, resume: Path | None) -> Iterator[IO[str] | None]:
    """
    The --report file open for writing, or None without one.
    """
    if report is None:
        yield None
        return
    same = resume is not None and report.resolve() == resume.resolve()
    try:
        # Resuming into the same report appends to it, so it stays the whole record.
        out = report.open("a" if same else "w", encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(f"cannot write the report {report}: {exc.strerror}") from None
    with out:
        yield out


class Reporter:
    """
    Accounts for every row, sent, skipped or bad: in the tally and in the report.
    """

    def __init__(self, kind: str, tally: Tally, out: IO[str] | None, err: Console) -> None:
        self.kind = kind
        self.tally = tally
        self.out = out
        self.err = err

    def write(self, fields: dict[str, Any]) -> None:
        """
        One line of the report, if there is one.
        """
        if self.out is not None:
            self.out.write(json.dumps(fields) + "\n")
            # Flushed per line: after a crash or Ctrl-C the report is --resume material.
            self.out.flush()

    def result(self, result: StopResult) -> None:
        """
        A target's result: the on_result hook of the batch.
        """
        if result.outcome is Outcome.STOPPED:
            self.tally.stopped += 1
        elif result.outcome is Outcome.NOT_FOUND:
            self.tally.not_found += 1
        else:
            self.tally.failed += 1
        self.write(result_line(result))

    def skip(self) -> None:
        """
        A target --resume shows as finished already: counted, not reported again.
        """
        self.tally.skipped += 1

    def bad_row(self, bad: BadRow) -> None:
        """
        A row that is not a valid target: said on stderr, failed in the report.
        """
        self.tally.bad_rows += 1
        self.err.print(f"[red]line {bad.line}:[/red] {bad.error}", highlight=False, markup=True)
        self.write(bad_row_line(self.kind, bad))
