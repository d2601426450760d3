"""
The command line's parts in process: what the route table and the option classes decide.
"""

from __future__ import annotations

import io

import attrs
import pytest
from click.testing import CliRunner

from vobiz_async import AllStreams, Outcome, Recording, StopResult, Stream
from vobiz_async._cli.commands import cli
from vobiz_async._cli.input import InputError, Row, read_rows
from vobiz_async._cli.options import DemoOptions, Options, RetryOptions
from vobiz_async._cli.report import result_line

from .conftest import REPORT_COLUMNS


@pytest.mark.parametrize(
    ("target", "named"),
    [
        (Stream("c1", "s1"), {"call_uuid": "c1", "stream_id": "s1", "url": None}),
        (AllStreams("c2"), {"call_uuid": "c2", "stream_id": None, "url": None}),
        (
            Recording("c3", "https://rec/3"),
            {"call_uuid": "c3", "stream_id": None, "url": "https://rec/3"},
        ),
    ],
)
def test_report_lines_have_the_same_columns_for_every_kind(
    target: Stream | AllStreams | Recording, named: dict[str, object]
) -> None:
    """Every line names its target by kind and every stop route's fields, None where absent."""
    line = result_line(StopResult(target, Outcome.STOPPED, status_code=204, attempts=1))
    assert list(line) == REPORT_COLUMNS
    assert line == {
        "kind": target.kind,
        **named,
        "outcome": "stopped",
        "status_code": 204,
        "attempts": 1,
        "elapsed": 0.0,
        "error": None,
    }


def test_required_columns_are_the_target_fields_without_default() -> None:
    """A stream row needs stream_id; a recording row may leave its url empty to stop them all."""
    with pytest.raises(InputError, match="needs a column named stream_id"):
        list(read_rows(Stream, io.StringIO("call_uuid\nc1\n")))
    rows = list(read_rows(Recording, io.StringIO("call_uuid,url\n c1 , \nc2,https://rec/2\n")))
    assert rows == [Row(2, Recording("c1")), Row(3, Recording("c2", "https://rec/2"))]
    assert list(read_rows(AllStreams, io.StringIO("call_uuid\nc1\n"))) == [Row(2, AllStreams("c1"))]


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("stop-streams", Options),
        ("stop-all-streams", Options),
        ("stop-recordings", Options),
        ("retry-failed", RetryOptions),
        ("demo", DemoOptions),
    ],
)
def test_every_option_field_is_a_flag_of_its_command(
    command: str, options: type[Options | RetryOptions | DemoOptions]
) -> None:
    """Each field of the options class is one --flag of the command, in --help order."""
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    flags = [f"--{field.name.replace('_', '-')} " for field in attrs.fields(options)]
    positions = [result.output.index(flag) for flag in flags]
    assert positions == sorted(positions)
