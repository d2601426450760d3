"""
Reading targets from CSV or JSON Lines, one row at a time, keeping line numbers.

A row that cannot become a valid target is a BadRow: reported with its line,
counted as failed, never sent. The rest of the file goes on.

What a row must hold is read off the target class: its fields without a
default are required columns, the others optional.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import attrs

from .._exceptions import InvalidTargetError
from .._targets import Target, check_target

__all__ = ["BadRow", "InputError", "Row", "count_rows", "read_rows", "required_columns"]


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


def required_columns(target_type: type[Target]) -> tuple[str, ...]:
    """
    The columns a row cannot do without: the target's fields that have no default.
    """
    return tuple(field.name for field in attrs.fields(target_type) if _is_required(field))


def _is_required(field: attrs.Attribute[Any]) -> bool:
    return field.default is attrs.NOTHING


def _target(target_type: type[Target], fields: dict[str, Any]) -> Target:
    values: dict[str, Any] = {}
    for field in attrs.fields(target_type):
        value = fields.get(field.name)
        if isinstance(value, str):
            value = value.strip()
        # An optional column left empty is not given: a row without a url stops every recording.
        values[field.name] = value if _is_required(field) else value or None
    return target_type(**values)


def _row(target_type: type[Target], line: int, fields: dict[str, Any]) -> Row | BadRow:
    missing = [name for name in required_columns(target_type) if fields.get(name) in (None, "")]
    if missing:
        return BadRow(line, f"missing {', '.join(missing)}", fields)
    try:
        return Row(line, check_target(_target(target_type, fields)))
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


def read_rows(target_type: type[Target], stream: IO[str]) -> Iterator[Row | BadRow]:
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
        yield from _read_jsonl(target_type, head, rest)
    else:
        yield from _read_csv(target_type, head, rest)


def count_rows(target_type: type[Target], source: IO[str]) -> int | None:
    """
    Rows in a seekable file, read once up front so the bar can show done/total.
    """
    if source is sys.stdin or not source.seekable():
        return None
    total = sum(1 for _ in read_rows(target_type, source))
    source.seek(0)
    return total


def _read_jsonl(
    target_type: type[Target], head: list[str], rest: Iterator[str]
) -> Iterator[Row | BadRow]:
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
        yield _row(target_type, number, fields)


def _read_csv(
    target_type: type[Target], head: list[str], rest: Iterator[str]
) -> Iterator[Row | BadRow]:
    reader = csv.reader(_chain(head, rest))
    header: list[str] | None = None
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in record]
            absent = [name for name in required_columns(target_type) if name not in header]
            if absent:
                raise InputError(
                    f"line {reader.line_num}: the CSV header needs a column named "
                    f"{' and '.join(absent)}; found {', '.join(header) or 'nothing'}"
                )
            continue
        if len(record) > len(header):
            yield BadRow(reader.line_num, f"{len(record)} fields for {len(header)} columns")
            continue
        yield _row(target_type, reader.line_num, dict(zip(header, record, strict=False)))


def _chain(head: list[str], rest: Iterator[str]) -> Iterable[str]:
    yield from head
    yield from rest
