"""
The report: one JSON line per target as it completes, never truncated, read back to resume or retry.

Every line names its target by the same columns, whatever its kind: ``kind``
and every field of every stop route, None where a kind has no such field.
Its ``outcome`` is ``stopped``, ``not_found`` or ``failed`` (what the API
said), ``not_sent`` (a brake stopped the batch before anything was sent for
it) or ``interrupted`` (in flight at Ctrl-C: it may have been applied).

An existing report is never truncated: a run adds to it (``--resume`` it, or
``--append``) or refuses it. Every real run keeps one: without ``--report``
it is a new file in the current directory, named in the summary.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
from rich.console import Console
from rich.markup import escape

from .._models import Outcome, StopResult
from .._targets import STOP_TARGETS, Target
from .exits import CommandError
from .input import BadRow, Row, Unit
from .tally import Tally, failure_reason

__all__ = [
    "FINISHED",
    "LISTING_KINDS",
    "TARGET_COLUMNS",
    "ReportKey",
    "ReportMode",
    "ReportOutcome",
    "ReportPlan",
    "Reporter",
    "bad_row_line",
    "default_report_path",
    "load_resume",
    "open_report",
    "pending_rows",
    "plan_report",
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

_KINDS: dict[str, type[Target]] = {cls.kind: cls for cls in STOP_TARGETS}


class ReportOutcome(enum.StrEnum):
    """
    The ``outcome`` of a report line: the API's three, and two for targets it never answered.
    """

    STOPPED = Outcome.STOPPED.value
    NOT_FOUND = Outcome.NOT_FOUND.value
    FAILED = Outcome.FAILED.value
    #: A brake stopped the batch before anything was sent for this target.
    NOT_SENT = "not_sent"
    #: In flight at Ctrl-C: the request may have reached the server and been applied.
    INTERRUPTED = "interrupted"


#: The kinds of a teardown's listing lines: not stops, never sent again as one.
LISTING_KINDS = frozenset({"list_live_calls", "list_streams"})

#: Outcomes that leave nothing to do: --resume skips them, retry-failed leaves them.
FINISHED = frozenset({ReportOutcome.STOPPED.value, ReportOutcome.NOT_FOUND.value})


def target_fields(target: Target) -> dict[str, Any]:
    """
    A target as the columns every report line starts with.
    """
    return {
        "kind": target.kind,
        **{column: getattr(target, column, None) for column in TARGET_COLUMNS},
    }


def result_line(result: StopResult, outcome: ReportOutcome | None = None) -> dict[str, Any]:
    """
    The report line for one result (``outcome`` overrides the result's own).
    """
    return {
        **target_fields(result.target),
        "outcome": (outcome or ReportOutcome(result.outcome.value)).value,
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
        "outcome": ReportOutcome.FAILED.value,
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


def _lines(path: Path, err: Console) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", errors="replace") as report:
        for number, text in enumerate(report, start=1):
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except ValueError:
                # A line cut short by a crash mid-write: that target is simply redone.
                err.print(
                    f"[yellow]line {number} of {path} is not JSON (cut short?); ignored",
                    highlight=False,
                )
                continue
            if isinstance(fields, dict):
                yield number, fields


def load_resume(path: Path, err: Console) -> set[ReportKey]:
    """
    Targets an earlier report shows as finished: stopped or not found.
    """
    return {
        report_key(fields) for _, fields in _lines(path, err) if fields.get("outcome") in FINISHED
    }


@attrs.frozen
class Pending:
    """
    What a report leaves to do: targets to send again, and bad input rows it cannot fix.
    """

    rows: list[Row]
    bad_lines: list[int]
    #: A teardown's listings (live calls, a call's streams) whose latest line failed:
    #: only the teardown, run again, can list and stop what they would have found.
    unlisted: int = 0


def pending_rows(path: Path, err: Console) -> Pending:
    """
    The targets whose latest line in the report is not finished (failed, not sent, interrupted).

    A later stopped or not-found line for the same target settles it. Lines
    for bad input rows (with a ``line``) cannot be sent again: they are
    listed, for the person to fix in the input.
    """
    latest: dict[ReportKey, tuple[int, dict[str, Any]]] = {}
    finished: set[ReportKey] = set()
    bad: list[int] = []
    listings: dict[ReportKey, bool] = {}  # a teardown's listings: did the latest complete?
    for number, fields in _lines(path, err):
        if "line" in fields:
            if isinstance(fields["line"], int):
                bad.append(fields["line"])
            continue
        key = report_key(fields)
        if fields.get("kind") in LISTING_KINDS:
            listings[key] = fields.get("outcome") != ReportOutcome.FAILED.value
            continue
        if fields.get("outcome") in FINISHED:
            finished.add(key)
        else:
            latest[key] = (number, fields)
    rows = []
    for key, (number, fields) in latest.items():
        if key in finished:
            continue
        target = _target_of(fields)
        if target is not None:
            rows.append(Row(number, target))
    return Pending(rows, bad, unlisted=sum(not done for done in listings.values()))


def _target_of(fields: dict[str, Any]) -> Target | None:
    cls = _KINDS.get(str(fields.get("kind")))
    if cls is None:
        return None
    values: dict[str, Any] = {name: fields.get(name) for name in cls.route.columns()}
    return cls(**values)


# -- where the report goes -------------------------------------------------------------


class ReportMode(enum.Enum):
    """
    How a run writes its report.
    """

    #: A new report: refused if the file exists and holds anything.
    NEW = "new"
    #: Added to: --resume into the same file, --append, retry-failed.
    APPEND = "append"


@attrs.frozen
class ReportPlan:
    """
    The report of a run, decided (and checked) before anything is sent.
    """

    path: Path
    mode: ReportMode
    #: Named by us rather than the person: announced when the run starts.
    chosen: bool = False

    @property
    def name(self) -> str:
        """
        The report as the person would type it again.
        """
        return str(self.path)


def default_report_path(command: str, now: datetime.datetime | None = None) -> Path:
    """
    ``vobiz-async-<command>-<UTC time>.jsonl`` in the current directory, not yet taken.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    stem = f"vobiz-async-{command}-{now:%Y%m%dT%H%M%SZ}"
    path = Path(f"{stem}.jsonl")
    number = 1
    while path.exists():
        number += 1
        path = Path(f"{stem}-{number}.jsonl")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def plan_report(
    *,
    report: Path | None,
    resume: Path | None,
    append: bool,
    command: str,
    input_path: Path | None,
) -> ReportPlan:
    """
    Where this run's report goes, or a CommandError if that would lose anything.

    ``--resume R`` without ``--report`` adds to R: the report stays the whole
    record of the job, however many runs it takes.
    """
    chosen = report is None and resume is None
    path = report or resume or default_report_path(command)
    resuming_into = resume is not None and _same_file(path, resume)
    mode = ReportMode.APPEND if append or resuming_into else ReportMode.NEW
    if input_path is not None and _same_file(path, input_path):
        raise CommandError(
            f"the report {path} is the input file: writing it would destroy the input; "
            "name another --report"
        )
    if path.is_dir():
        raise CommandError(f"the report {path} is a directory; name a file")
    if mode is ReportMode.NEW and _holds_something(path):
        lines = _line_count(path)
        raise CommandError(
            f"the report {path} already exists ({lines} lines) and is never overwritten: "
            f"--resume {path} finishes that run into it, --append adds this run to it, "
            "or name another --report"
        )
    return ReportPlan(path, mode, chosen)


def _holds_something(path: Path) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # opening it will say what is wrong
    return stat.S_ISREG(info.st_mode) and info.st_size > 0


def _line_count(path: Path) -> int:
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


@contextlib.contextmanager
def open_report(plan: ReportPlan | None, *, dry_run: bool) -> Iterator[IO[str] | None]:
    """
    The report open for adding lines (never truncated); None for a dry run or no report.

    A report whose last line was cut short (a crash mid-write) gets a newline
    first, so that the new lines stay valid JSON Lines. A report this run
    created and never wrote to is removed: nothing was done.
    """
    if plan is None:
        yield None
        return
    if dry_run:
        # Checked as the real run would open it, and left as it is.
        parent = plan.path.parent
        target = plan.path if plan.path.exists() else parent
        if not os.access(target, os.W_OK):
            raise CommandError(f"cannot write the report {plan.path}: permission denied")
        yield None
        return
    existed = plan.path.exists()
    try:
        out = plan.path.open("a", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write the report {plan.path}: {exc.strerror}") from None
    with out:
        if existed and _ends_mid_line(plan.path):
            out.write("\n")
            out.flush()
        yield out
    if not existed and plan.path.exists() and plan.path.stat().st_size == 0:
        plan.path.unlink()


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return False
            file.seek(0, os.SEEK_END)
            if file.tell() == 0:
                return False
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"
    except OSError:
        return False


class Reporter:
    """
    Accounts for every row, sent, skipped or bad: in the tally and in the report.
    """

    def __init__(
        self,
        kind: str,
        tally: Tally,
        out: IO[str] | None,
        err: Console,
        unit: Unit = Unit.LINE,
    ) -> None:
        self.kind = kind
        self.tally = tally
        self.out = out
        self.err = err
        self.unit = unit

    def write(self, fields: dict[str, Any]) -> None:
        """
        One line of the report, if there is one.
        """
        if self.out is not None:
            self.out.write(json.dumps(fields) + "\n")
            # Flushed per line: after a crash or Ctrl-C the report is --resume material.
            self.out.flush()

    def result(self, result: StopResult, *, kind: str | None = None) -> None:
        """
        A target's result: counted by what it amounts to, and written (as ``kind``, if given).
        """
        error = result.error
        outcome: ReportOutcome | None = None
        if result.outcome is Outcome.STOPPED:
            self.tally.stopped += 1
        elif result.outcome is Outcome.NOT_FOUND:
            self.tally.not_found += 1
        elif error is not None and error.brake is not None and result.attempts == 0:
            self.tally.not_sent += 1
            outcome = ReportOutcome.NOT_SENT
        else:
            self.tally.failed += 1
            self.tally.reasons[failure_reason(error)] += 1
        line = result_line(result, outcome)
        if kind is not None:
            line["kind"] = kind
        self.write(line)

    def skip(self) -> None:
        """
        A target --resume shows as finished already: counted, not reported again.
        """
        self.tally.skipped += 1

    def duplicate(self) -> None:
        """
        A target this run has already had: counted, sent once.
        """
        self.tally.duplicates += 1

    def bad_row(self, bad: BadRow) -> None:
        """
        A row that is not a valid target: said on stderr, failed in the report.
        """
        self.tally.bad_rows += 1
        self.tally.reasons["bad input row"] += 1
        self.err.print(
            f"[red]{self.unit.value} {bad.line}:[/red] {escape(bad.error)}",
            highlight=False,
            markup=True,
        )
        self.write(bad_row_line(self.kind, bad))

    def interrupted(self, target: Target) -> None:
        """
        A target in flight at Ctrl-C: its request may have reached the server.
        """
        self.tally.in_flight_interrupted += 1
        self.write(
            {
                **target_fields(target),
                "outcome": ReportOutcome.INTERRUPTED.value,
                "status_code": None,
                "attempts": None,
                "elapsed": None,
                "error": "interrupted while in flight: may have been applied; "
                "sending it again is safe (a stop already applied answers not found)",
            }
        )
