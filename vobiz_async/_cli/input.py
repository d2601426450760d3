"""
Turning what people paste into targets: CSV with or without a header, JSON Lines, arguments.

A row that cannot become a valid target is a BadRow: reported with its line,
counted as failed, never sent. The rest of the input goes on. A problem with
the input as a whole (a header that names no usable column, bytes that are not
UTF-8) is an InputError: said with its line and how to fix it.

What a row must hold is read off the target class: its fields without a
default are required columns, the others optional, in the order declared
(``call_uuid,stream_id``; ``call_uuid[,url]``), which is also the order of the
columns of a CSV without a header and of an identifier given as an argument.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from .._exceptions import InvalidTargetError
from .._targets import STOP_TARGETS, Target, check_target

__all__ = [
    "KNOWN_COLUMNS",
    "BadRow",
    "Columns",
    "InputError",
    "Row",
    "Unit",
    "argument_rows",
    "count_rows",
    "decoded_lines",
    "read_rows",
    "required_columns",
]

#: Every column a stop command reads, whichever the command: what tells a header from data.
KNOWN_COLUMNS = frozenset(field.name for cls in STOP_TARGETS for field in attrs.fields(cls))

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class InputError(Exception):
    """
    The input as a whole is unusable: said with the line, and how to fix it.
    """


class Unit(enum.Enum):
    """
    What a row's number counts, in messages: lines of a file, or arguments.
    """

    LINE = "line"
    ARGUMENT = "argument"
    REPORT_LINE = "report line"


@attrs.frozen
class Row:
    """
    A valid target and the physical line (or argument) it came from.
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


@attrs.frozen
class Columns:
    """
    The columns of one target type: all of them in declared order, and those required.
    """

    target_type: type[Target]
    names: tuple[str, ...]
    required: tuple[str, ...]

    @property
    def usage(self) -> str:
        """
        The columns as help and messages spell them: ``call_uuid[,url]``.
        """
        optional = [f"[,{name}]" for name in self.names if name not in self.required]
        return ",".join(self.required) + "".join(optional)


_COLUMNS: dict[str, Columns] = {}


def columns_of(target_type: type[Target]) -> Columns:
    """
    The columns of ``target_type``, worked out once per type.
    """
    columns = _COLUMNS.get(target_type.kind)
    if columns is None:
        fields = attrs.fields(target_type)
        columns = _COLUMNS[target_type.kind] = Columns(
            target_type,
            tuple(field.name for field in fields),
            tuple(field.name for field in fields if field.default is attrs.NOTHING),
        )
    return columns


def required_columns(target_type: type[Target]) -> tuple[str, ...]:
    """
    The columns a row cannot do without: the target's fields that have no default.
    """
    return columns_of(target_type).required


# -- bytes to text ---------------------------------------------------------------------


def decoded_lines(lines: Iterable[bytes], name: str) -> Iterator[str]:
    """
    Each line of ``lines`` as text: UTF-8, a leading BOM dropped; InputError for anything else.
    """
    for number, raw in enumerate(lines, start=1):
        if number == 1:
            if raw.startswith(UTF16_BOMS) or b"\x00" in raw:
                raise InputError(
                    f"{name} looks like UTF-16 (what Windows PowerShell's > and Out-File "
                    "write), not UTF-8: save it as UTF-8, for example "
                    "Get-Content calls.txt | Out-File -Encoding utf8 calls-utf8.txt "
                    "(or Set-Content -Encoding utf8)"
                )
            raw = raw.removeprefix(UTF8_BOM)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            raise InputError(
                f"line {number} of {name} is not UTF-8 (byte 0x{byte:02X} at column "
                f"{exc.start + 1}; Latin-1 or Windows-1252?): save it as UTF-8 (Excel: "
                "CSV UTF-8; PowerShell: -Encoding utf8; iconv -f latin1 -t utf-8)"
            ) from None


# -- text to rows ----------------------------------------------------------------------


def normalized(name: object) -> str:
    """
    A column name or JSON key as matched: no surrounding blanks or BOM, lower case.
    """
    return str(name).strip().lstrip("\ufeff").strip().lower()


def _target(columns: Columns, fields: dict[str, Any]) -> Target:
    values: dict[str, Any] = {}
    for name in columns.names:
        value = fields.get(name)
        if isinstance(value, str):
            value = value.strip()
        # An optional column left empty is not given: a row without a url stops every recording.
        values[name] = value if name in columns.required else value or None
    return columns.target_type(**values)


def _row(columns: Columns, line: int, fields: dict[str, Any]) -> Row | BadRow:
    missing = [name for name in columns.required if fields.get(name) in (None, "")]
    if missing:
        return BadRow(line, f"missing {', '.join(missing)}", fields)
    try:
        return Row(line, check_target(_target(columns, fields)))
    except InvalidTargetError as exc:
        return BadRow(line, str(exc), fields)


#: One record of the input before it is a target: its fields, or why it has none.
Record = tuple[int, dict[str, Any] | str]


def read_rows(target_type: type[Target], lines: Iterable[str]) -> Iterator[Row | BadRow]:
    """
    Every data row of CSV (with a header or without) or JSON Lines text, lazily.

    JSON Lines is recognised by a first non-blank line that starts with ``{``;
    anything else is CSV. Blank lines are skipped. Line numbers are physical
    lines, the first being 1.
    """
    columns = columns_of(target_type)
    for line, fields in _records(columns, lines):
        yield BadRow(line, fields) if isinstance(fields, str) else _row(columns, line, fields)


def count_rows(target_type: type[Target], lines: Iterable[str]) -> int:
    """
    How many rows ``read_rows`` would yield, without building a target for any.

    About twenty times quicker than reading them: the bar's total, and a check
    of the whole input (its header, its encoding) before anything is sent.
    """
    count = 0
    for _ in _records(columns_of(target_type), lines):
        count += 1
    return count


def argument_rows(target_type: type[Target], values: Iterable[str]) -> Iterator[Row | BadRow]:
    """
    One row per argument, each a header-less CSV row: ``call_uuid`` or ``call_uuid,stream_id``.
    """
    columns = columns_of(target_type)
    for number, value in enumerate(values, start=1):
        cells = next(csv.reader([value]), [])
        if len(cells) > len(columns.names):
            yield BadRow(number, f"{len(cells)} fields where {columns.usage} was expected")
            continue
        yield _row(columns, number, dict(zip(columns.names, cells, strict=False)))


def _records(columns: Columns, lines: Iterable[str]) -> Iterator[Record]:
    lines = iter(lines)
    head: list[str] = []
    for line in lines:
        head.append(line)
        if line.strip():
            break
    else:
        return
    if head[-1].lstrip().lstrip("\ufeff").startswith("{"):
        yield from _jsonl_records(columns, _chain(head, lines))
    else:
        yield from _csv_records(columns, _chain(head, lines))


def _jsonl_records(columns: Columns, lines: Iterable[str]) -> Iterator[Record]:
    first = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except (ValueError, RecursionError) as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
            yield number, f"not valid JSON: {message}"
            continue
        if not isinstance(fields, dict):
            yield number, "a JSON Lines row must be an object"
            continue
        # Keys are matched as CSV headers are: "Call_UUID" is call_uuid. Two
        # spellings of one key that disagree leave no way to tell which is meant.
        normal: dict[str, Any] = {}
        clash = None
        for key, value in fields.items():
            name = normalized(key)
            if name in normal and normal[name] != value:
                clash = name
            normal[name] = value
        if clash is not None:
            yield number, f"the key {clash} is given twice, in two spellings, with two values"
            continue
        fields = normal
        if first and KNOWN_COLUMNS.isdisjoint(fields):
            raise InputError(
                f"line {number}: the JSON object has none of the keys this command reads "
                f"({columns.usage}); found {', '.join(sorted(fields)) or 'no keys'}"
            )
        first = False
        yield number, fields


def _csv_records(columns: Columns, lines: Iterable[str]) -> Iterator[Record]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # A line the csv module refuses (a field over its 128 KiB limit) is
            # that row's failure; the reader goes on with the next line.
            yield reader.line_num, f"not a CSV row: {exc}"
            continue
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = _header(columns, record, reader.line_num)
            if header is not None:
                continue
            # No header: the columns in declared order, and this line is the first row.
            header = list(columns.names)
        if len(record) > len(header):
            yield reader.line_num, f"{len(record)} fields for {len(header)} columns"
            continue
        yield reader.line_num, dict(zip(header, record, strict=False))


def _header(columns: Columns, record: list[str], line: int) -> list[str] | None:
    """
    The header's column names if ``record`` is a header; None if it is the first row of data.

    A header names at least one known column (in any case). A first line that
    names none and has no digit at all (``uuid``, ``Call ID``) is a header with
    the wrong names, not a call to stop: refused, rather than sent as one.
    """
    names = [normalized(cell) for cell in record]
    if not KNOWN_COLUMNS.isdisjoint(names):
        absent = [name for name in columns.required if name not in names]
        if absent:
            raise InputError(
                f"line {line}: the CSV header needs a column named {' and '.join(absent)}; "
                f"found {', '.join(names)}"
            )
        return names
    if not any(character.isdigit() for cell in record for character in cell):
        raise InputError(
            f"line {line} looks like a header ({', '.join(cell.strip() for cell in record)}) "
            f"but names no column this command reads: name it {columns.usage}, or remove "
            "the line if the rest is one identifier per line"
        )
    given = sum(1 for cell in record if cell.strip())
    if given < len(columns.required):
        hint = ""
        if "stream_id" in columns.required:
            hint = "; to stop every stream on each call of a list, use stop-all-streams"
        raise InputError(
            f"line {line} has no header and {given} column where this command needs "
            f"{len(columns.required)}: {','.join(columns.required)} on each line, or a header "
            f"naming them{hint}"
        )
    return None


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest
