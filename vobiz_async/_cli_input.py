"""
Reading targets from CSV or JSON Lines, one row at a time, keeping line numbers.

A row that cannot become a valid target is a BadRow: reported with its line,
counted as failed, never sent. The rest of the file goes on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, Literal

import attrs

from ._exceptions import InvalidTargetError
from ._targets import AllStreams, Recording, Stream, Target, check_target

__all__ = ["REQUIRED_COLUMNS", "BadRow", "InputError", "Kind", "Row", "read_rows", "report_key"]

Kind = Literal["stream", "all_streams", "recording"]

#: Columns each command cannot do without (stop-recordings also reads an optional url).
REQUIRED_COLUMNS: dict[Kind, tuple[str, ...]] = {
    "stream": ("call_uuid", "stream_id"),
    "all_streams": ("call_uuid",),
    "recording": ("call_uuid",),
}


class InputError(Exception):
    """
    The whole input is unusable (a CSV header without a required column).
    """


@attrs.frozen
class Row:
    """
    A valid target and the physical line it came from.
    """

    line: int
    target: Target


@attrs.frozen
class BadRow:
    """
    A row that could not become a valid target, and why.
    """

    line: int
    error: str
    fields: dict[str, Any] = attrs.Factory(dict)


def _target(kind: Kind, fields: dict[str, Any]) -> Target:
    def get(name: str) -> Any:
        value = fields.get(name)
        return value.strip() if isinstance(value, str) else value

    if kind == "stream":
        return Stream(get("call_uuid"), get("stream_id"))
    if kind == "all_streams":
        return AllStreams(get("call_uuid"))
    return Recording(get("call_uuid"), get("url") or None)


def _row(kind: Kind, line: int, fields: dict[str, Any]) -> Row | BadRow:
    required = REQUIRED_COLUMNS[kind]
    missing = [name for name in required if fields.get(name) in (None, "")]
    if missing:
        return BadRow(line, f"missing {', '.join(missing)}", fields)
    try:
        return Row(line, check_target(_target(kind, fields)))
    except InvalidTargetError as exc:
        return BadRow(line, str(exc), fields)


def _first_content(lines: Iterator[str]) -> tuple[list[str], Iterator[str]]:
    """
    Read up to the first non-blank line, so the format can be told from content.
    """
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if line.strip():
            break
    return seen, lines


def read_rows(kind: Kind, stream: IO[str]) -> Iterator[Row | BadRow]:
    """
    Yield every data row of a CSV (with header) or JSON Lines input, lazily.

    JSON Lines is recognised by a first non-blank line that starts with ``{``;
    anything else is CSV. Blank lines are skipped. Line numbers are physical
    lines in the input, the CSV header being line 1.
    """
    head, rest = _first_content(iter(stream))
    if not head or not head[-1].strip():
        return
    if head[-1].lstrip().startswith("{"):
        yield from _read_jsonl(kind, head, rest)
    else:
        yield from _read_csv(kind, head, rest)


def _read_jsonl(kind: Kind, head: list[str], rest: Iterator[str]) -> Iterator[Row | BadRow]:
    for number, line in enumerate(_chain(head, rest), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRow(number, f"not valid JSON: {exc.msg}")
            continue
        if not isinstance(fields, dict):
            yield BadRow(number, "a JSON Lines row must be an object")
            continue
        yield _row(kind, number, fields)


def _read_csv(kind: Kind, head: list[str], rest: Iterator[str]) -> Iterator[Row | BadRow]:
    reader = csv.reader(_chain(head, rest))
    header: list[str] | None = None
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in record]
            required = REQUIRED_COLUMNS[kind]
            absent = [name for name in required if name not in header]
            if absent:
                raise InputError(
                    f"line {reader.line_num}: the CSV header needs a column named "
                    f"{' and '.join(absent)}; found {', '.join(header) or 'nothing'}"
                )
            continue
        if len(record) > len(header):
            yield BadRow(reader.line_num, f"{len(record)} fields for {len(header)} columns")
            continue
        yield _row(kind, reader.line_num, dict(zip(header, record, strict=False)))


def _chain(head: list[str], rest: Iterator[str]) -> Iterable[str]:
    yield from head
    yield from rest


def report_key(fields: dict[str, Any]) -> tuple[str, str | None, str | None, str | None]:
    """
    The identity of a target in a report line, for --resume.
    """
    return (
        str(fields.get("kind")),
        fields.get("call_uuid"),
        fields.get("stream_id"),
        fields.get("url"),
    )
