"""
The command line accepts what people paste: plain lists, arguments, Excel's BOM, slow pipes.

Each test runs the installed console script against a fake Vobiz on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vobiz_async import AllStreams, Recording, Stream
from vobiz_async.testing import FakeVobiz

from .clirun import (
    NEVER_SHOWN,
    cli_env,
    report_lines,
    through_a_silent_pipe,
    vobiz_async,
    written,
)

UUIDS = [f"0f6c1a52-8d3b-4c1e-9a7f-{i:012d}" for i in range(1, 6)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeVobiz, str]]:
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        yield fake, base_url


async def test_a_plain_list_of_uuids_is_data(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """One UUID per line, no header: the first line is a target like the rest."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", UUIDS)
    run = await vobiz_async(
        "stop-all-streams", calls, "--json", env=cli_env(fake, base_url), cwd=tmp_path
    )
    assert run.status == 0, run
    assert run.summary["stopped"] == len(UUIDS)
    assert all(fake.times_stopped(AllStreams(uuid)) == 1 for uuid in UUIDS)


async def test_a_plain_list_piped_to_dash(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """The same list on standard input: stopped, a JSON summary, no traceback."""
    fake, base_url = served
    run = await vobiz_async(
        "stop-all-streams",
        "-",
        "--json",
        env=cli_env(fake, base_url),
        stdin="".join(f"{uuid}\n" for uuid in UUIDS).encode(),
        cwd=tmp_path,
    )
    assert run.status == 0, run
    assert run.summary["stopped"] == len(UUIDS)
    assert all(fake.times_stopped(AllStreams(uuid)) == 1 for uuid in UUIDS)


async def test_headerless_rows_take_the_columns_in_order(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """No header: stop-streams reads call_uuid,stream_id; stop-recordings call_uuid,url."""
    fake, base_url = served
    streams = written(tmp_path / "streams.csv", ["c1,s1", "c2,s2"])
    recordings = written(tmp_path / "recs.csv", ["c1,https://rec/1", "c2"])
    env = cli_env(fake, base_url)
    assert (await vobiz_async("stop-streams", streams, env=env, cwd=tmp_path)).status == 0
    assert (await vobiz_async("stop-recordings", recordings, env=env, cwd=tmp_path)).status == 0
    assert fake.times_stopped(Stream("c1", "s1")) == fake.times_stopped(Stream("c2", "s2")) == 1
    assert fake.times_stopped(Recording("c1", "https://rec/1")) == 1
    assert fake.times_stopped(Recording("c2")) == 1


async def test_too_few_columns_without_a_header_is_refused_whole(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A list of call UUIDs given to stop-streams names what is missing; nothing is sent."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", UUIDS)
    run = await vobiz_async("stop-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 2, run
    assert "stream_id" in run.stderr
    assert "stop-all-streams" in run.stderr  # what the user probably meant
    assert fake.request_count == 0


async def test_a_header_with_no_known_column_is_refused(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A first line such as "uuid" is a header with the wrong name, not a call to stop."""
    fake, base_url = served
    calls = written(tmp_path / "calls.csv", UUIDS, header="uuid")
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 2, run
    assert "line 1" in run.stderr
    assert "call_uuid" in run.stderr
    assert fake.request_count == 0


async def test_identifiers_as_arguments(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """UUIDs typed after the command are targets; for stop-streams each is call_uuid,stream_id."""
    fake, base_url = served
    env = cli_env(fake, base_url)
    run = await vobiz_async("stop-all-streams", *UUIDS[:2], "--json", env=env, cwd=tmp_path)
    assert run.status == 0, run
    assert run.summary["stopped"] == 2
    assert fake.times_stopped(AllStreams(UUIDS[0])) == fake.times_stopped(AllStreams(UUIDS[1])) == 1
    run = await vobiz_async("stop-streams", "c9,s9", env=env, cwd=tmp_path)
    assert run.status == 0, run
    assert fake.times_stopped(Stream("c9", "s9")) == 1


async def test_a_mistyped_file_name_is_not_taken_for_an_identifier(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """calls.cvs does not exist: it is said so, exit 2, rather than "stopped" as a call UUID."""
    fake, base_url = served
    written(tmp_path / "calls.csv", UUIDS)
    run = await vobiz_async(
        "stop-all-streams", "calls.cvs", env=cli_env(fake, base_url), cwd=tmp_path
    )
    assert run.status == 2, run
    assert "calls.cvs" in run.stderr
    assert "no such file" in run.stderr
    assert fake.request_count == 0


async def test_a_file_and_identifiers_are_not_mixed(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """One file, or -, or identifiers: a mix is refused before anything is sent."""
    fake, base_url = served
    written(tmp_path / "calls.txt", UUIDS)
    run = await vobiz_async(
        "stop-all-streams", "calls.txt", UUIDS[0], env=cli_env(fake, base_url), cwd=tmp_path
    )
    assert run.status == 2, run
    assert fake.request_count == 0


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
async def test_a_utf8_bom_is_ignored(
    served: tuple[FakeVobiz, str], tmp_path: Path, header: bool
) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: it is not part of the header or the first UUID."""
    fake, base_url = served
    calls = tmp_path / "calls.csv"
    calls.write_bytes(b"\xef\xbb\xbf" + (b"call_uuid\r\n" if header else b"") + b"c1\r\nc2\r\n")
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 0, run
    assert fake.times_stopped(AllStreams("c1")) == fake.times_stopped(AllStreams("c2")) == 1


async def test_latin1_file_gives_the_line_and_a_hint_and_sends_nothing(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A file in Latin-1 is refused before anything is sent: its line, and how to fix it."""
    fake, base_url = served
    calls = tmp_path / "calls.csv"
    calls.write_bytes(b"call_uuid,note\nc1,ok\nc2,caf\xe9\nc3,ok\n")
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 2, run
    assert "line 3" in run.stderr
    assert "UTF-8" in run.stderr
    assert fake.request_count == 0


async def test_powershell_utf16_gets_a_powershell_hint(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Windows PowerShell's `>` writes UTF-16: the hint says how to write UTF-8 there."""
    fake, base_url = served
    calls = tmp_path / "calls.txt"
    calls.write_bytes("\ufeffc1\r\nc2\r\n".encode("utf-16-le"))
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 2, run
    assert "UTF-16" in run.stderr
    assert "-Encoding utf8" in run.stderr
    assert fake.request_count == 0


async def test_bad_bytes_on_stdin_mid_batch_lose_nothing_done(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Stops sent before the bad line finish and are in the report; exit 2 names the line."""
    fake, base_url = served
    report = tmp_path / "r.jsonl"
    run = await vobiz_async(
        "stop-all-streams",
        "-",
        "--report",
        report,
        "--json",
        env=cli_env(fake, base_url),
        stdin=b"c1\nc2\ncaf\xe9\nc4\n",
        cwd=tmp_path,
    )
    assert run.status == 2, run
    assert "line 3" in run.stderr
    assert "UTF-8" in run.stderr
    assert {line["call_uuid"] for line in report_lines(report)} == {"c1", "c2"}
    assert fake.times_stopped(AllStreams("c1")) == fake.times_stopped(AllStreams("c2")) == 1
    assert fake.times_stopped(AllStreams("c4")) == 0
    assert run.summary["stopped"] == 2


async def test_a_slowly_fed_pipe_does_not_stall_requests_in_flight(tmp_path: Path) -> None:
    """
    While standard input is idle, requests already read go on: sent, answered, retried.

    The first request is answered 503; its retry must go out while the pipe
    stays silent. Reading the pipe on the event loop froze all of that until
    the next line came (and then timed the requests out).
    """
    status, err, report = await through_a_silent_pipe(
        "stop-all-streams", "-", "--report", tmp_path / "r.jsonl", "--timeout", "2"
    )
    assert status == 0, err
    lines = {line["call_uuid"]: line for line in report}
    assert lines["c1"]["outcome"] == "stopped"
    assert lines["c1"]["attempts"] == 2
    assert lines["c2"]["outcome"] == "stopped"


async def test_duplicates_are_skipped_and_counted(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """The same call twice is sent once; the summary counts the duplicate."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", ["c1", "c2", "c1", " c2 ", "c3"])
    report = tmp_path / "r.jsonl"
    run = await vobiz_async(
        "stop-all-streams",
        calls,
        "--json",
        "--report",
        report,
        env=cli_env(fake, base_url),
        cwd=tmp_path,
    )
    assert run.status == 0, run
    assert (run.summary["stopped"], run.summary["duplicates"]) == (3, 2)
    assert fake.request_count == 3
    assert len(report_lines(report)) == 3


async def test_jsonl_keys_are_read_in_any_case(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """JSON Lines keys are matched like CSV headers: Call_UUID is call_uuid."""
    fake, base_url = served
    rows = [{"Call_UUID": "c1", "Stream_ID": "s1"}, {"CALL_UUID": "c2", " stream_id ": "s2"}]
    jsonl = tmp_path / "streams.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = await vobiz_async("stop-streams", jsonl, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 0, run
    assert fake.times_stopped(Stream("c1", "s1")) == fake.times_stopped(Stream("c2", "s2")) == 1


@pytest.mark.parametrize(
    ("content", "source"),
    [
        pytest.param(b"", "file", id="empty-file"),
        pytest.param(b"call_uuid\n\n", "file", id="header-only"),
        pytest.param(b"\n  \n", "stdin", id="blank-stdin"),
    ],
)
async def test_an_input_with_no_targets_is_an_error(
    served: tuple[FakeVobiz, str], tmp_path: Path, content: bytes, source: str
) -> None:
    """Nothing to stop is not a success: exit 2, saying the input holds no targets."""
    fake, base_url = served
    calls = tmp_path / "calls.csv"
    calls.write_bytes(content)
    args = [calls] if source == "file" else ["-"]
    run = await vobiz_async(
        "stop-all-streams",
        *args,
        env=cli_env(fake, base_url),
        stdin=content if source == "stdin" else None,
        cwd=tmp_path,
    )
    assert run.status == 2, run
    assert "no targets" in run.stderr
    for never in NEVER_SHOWN:
        assert never not in run.stderr


@pytest.mark.parametrize("where", ["file", "stdin"])
async def test_an_over_long_line_is_that_rows_failure(
    served: tuple[FakeVobiz, str], tmp_path: Path, where: str
) -> None:
    """
    A 200,000-character line (a paste gone wrong) is one bad row, named by its line.

    It used to be "unexpected error (a bug...)" from a file, and from standard
    input a TaskGroup traceback with the rows before it applied and unreported.
    """
    fake, base_url = served
    rows = ["c-1", "x" * 200_000, "c-2"]
    report = tmp_path / "r.jsonl"
    if where == "file":
        args: list[str | Path] = [written(tmp_path / "calls.txt", rows)]
        stdin = None
    else:
        args, stdin = ["-"], "".join(f"{row}\n" for row in rows).encode()
    run = await vobiz_async(
        "stop-all-streams", *args, "--report", report, env=cli_env(fake, base_url),
        stdin=stdin, cwd=tmp_path,
    )  # fmt: skip

    assert run.status == 1, run
    assert "Traceback" not in run.stderr
    assert "line 2: not a CSV row" in run.stderr
    assert fake.times_stopped(AllStreams("c-1")) == 1
    assert fake.times_stopped(AllStreams("c-2")) == 1
    outcomes = sorted(str(line["outcome"]) for line in report_lines(report))
    assert outcomes == ["failed", "stopped", "stopped"]


async def test_a_key_given_twice_in_two_spellings_is_that_rows_failure(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """
    {"Call_UUID": "j1", "call_uuid": "j9"}: which call is meant? A bad row, not a guess.

    It used to send j9 without a word. The same value twice is no conflict.
    """
    fake, base_url = served
    rows = [
        json.dumps({"Call_UUID": "j1", "call_uuid": "j9"}),
        json.dumps({"CALL_UUID": "j2", "call_uuid": "j2"}),
    ]
    run = await vobiz_async(
        "stop-all-streams", written(tmp_path / "calls.jsonl", rows),
        env=cli_env(fake, base_url), cwd=tmp_path,
    )  # fmt: skip

    assert run.status == 1, run
    assert "line 1: the key call_uuid is given twice" in run.stderr
    assert fake.times_stopped(AllStreams("j9")) == 0
    assert fake.times_stopped(AllStreams("j1")) == 0
    assert fake.times_stopped(AllStreams("j2")) == 1
