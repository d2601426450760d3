"""
The vobiz-async console script, run for real in a subprocess against a loopback fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vobiz_async import AllStreams, Recording, Stream
from vobiz_async.testing import FakeVobiz, Faults

from .clirun import SCRIPT, cli_env, report_lines, vobiz_async
from .conftest import REPORT_COLUMNS


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeVobiz, str]]:
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        yield fake, base_url


async def test_stop_streams_from_csv_writes_report(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Every row is stopped once, and the report has one line per target."""
    fake, base_url = served
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\n" + "".join(f"c{i},s{i}\n" for i in range(20)))
    report = tmp_path / "report.jsonl"

    run = await vobiz_async(
        "stop-streams", csv_file, "--report", report, env=cli_env(fake, base_url)
    )

    assert run.status == 0, run
    assert all(fake.times_stopped(Stream(f"c{i}", f"s{i}")) == 1 for i in range(20))
    lines = report_lines(report)
    assert len(lines) == 20
    assert list(lines[0]) == REPORT_COLUMNS
    assert {line["outcome"] for line in lines} == {"stopped"}
    assert "stopped" in run.stdout
    assert "20" in run.stdout


async def test_stop_recordings_from_jsonl(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """JSON Lines is told apart from CSV by content; url is optional; --base-url is honoured."""
    fake, base_url = served
    rows = [{"call_uuid": "c1", "url": "https://rec/1"}, {"call_uuid": "c2"}]
    jsonl = tmp_path / "recs.txt"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")

    run = await vobiz_async(
        "stop-recordings", jsonl, "--json", "--base-url", base_url, env=cli_env(fake, None)
    )

    assert run.status == 0, run
    assert json.loads(run.stdout)["stopped"] == 2
    assert fake.times_stopped(Recording("c1", "https://rec/1")) == 1
    assert fake.times_stopped(Recording("c2")) == 1


async def test_stop_all_streams_from_stdin(served: tuple[FakeVobiz, str]) -> None:
    """FILE may be - for standard input, as from a log query piped in."""
    fake, base_url = served
    run = await vobiz_async(
        "stop-all-streams",
        "-",
        "--json",
        env=cli_env(fake, base_url),
        stdin=b"call_uuid\nx1\nx2\nx3\n",
    )
    assert run.status == 0, run
    summary = json.loads(run.stdout)
    assert summary["stopped"] == 3
    assert summary["total"] is None
    assert all(fake.times_stopped(AllStreams(f"x{i}")) == 1 for i in (1, 2, 3))


async def test_bad_rows_are_reported_by_line_and_the_rest_goes_on(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A bad row is failed with its line number; nothing is sent for it; exit status 1."""
    fake, base_url = served
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text(
        "call_uuid,stream_id\ngood1,s\nmissing-stream,\nbad/call,s\na,b,c\n\ngood2,s\n"
    )
    report = tmp_path / "report.jsonl"

    run = await vobiz_async(
        "stop-streams", csv_file, "--report", report, env=cli_env(fake, base_url)
    )

    assert run.status == 1, run
    assert "line 3: missing stream_id" in run.stderr
    assert "line 4: call_uuid must not contain" in run.stderr
    assert "line 5: 3 fields for 2 columns" in run.stderr
    bad = sorted((line["line"], line["outcome"]) for line in report_lines(report) if "line" in line)
    assert bad == [(3, "failed"), (4, "failed"), (5, "failed")]
    assert fake.request_count == 2
    assert fake.times_stopped(Stream("good2", "s")) == 1


async def test_bad_jsonl_rows(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """Broken JSON and non-object lines are bad rows, by physical line."""
    fake, base_url = served
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"call_uuid": "ok", "stream_id": "s"}\n{not json\n[1, 2]\n')
    run = await vobiz_async("stop-streams", jsonl, env=cli_env(fake, base_url))
    assert run.status == 1, run
    assert "line 2: not valid JSON" in run.stderr
    assert "line 3: a JSON Lines row must be an object" in run.stderr


async def test_huge_identifier_is_a_bad_row_and_rate_inf_means_no_limit(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A 64 KiB call_uuid fails its own row (no traceback); `--rate inf` is no ceiling."""
    fake, base_url = served
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("call_uuid\nok1\n" + "c" * 65536 + "\nok2\n")
    report = tmp_path / "report.jsonl"

    run = await vobiz_async(
        "stop-all-streams",
        csv_file,
        "--rate",
        "inf",
        "--report",
        report,
        env=cli_env(fake, base_url),
    )

    assert run.status == 1, run
    assert "Traceback" not in run.stderr
    assert "line 3: call_uuid is too long: 65536 characters" in run.stderr
    assert fake.times_stopped(AllStreams("ok1")) == 1
    assert fake.times_stopped(AllStreams("ok2")) == 1
    assert [line["outcome"] for line in report_lines(report)].count("failed") == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(["--rate", "nan"], "must be a number", id="rate-nan"),
        pytest.param(
            ["--report", "/nonexistent/dir/r.jsonl"], "cannot write the report", id="report"
        ),
    ],
)
async def test_bad_options_exit_2_without_a_traceback(
    served: tuple[FakeVobiz, str], tmp_path: Path, args: list[str], said: str
) -> None:
    """--rate nan and an unwritable --report are usage errors, said in a line, exit 2."""
    fake, base_url = served
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("call_uuid\nc1\n")
    run = await vobiz_async("stop-all-streams", csv_file, *args, env=cli_env(fake, base_url))
    assert run.status == 2, run
    assert said in run.stderr
    assert "Traceback" not in run.stderr
    assert fake.request_count == 0


async def test_dry_run_sends_nothing(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """--dry-run validates and counts, and the server sees no request at all."""
    fake, _ = served
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\nc1,s1\nc2,s2\n")
    run = await vobiz_async(
        "stop-streams", csv_file, "--dry-run", "--json", env=cli_env(fake, None), cwd=tmp_path
    )
    assert run.status == 0, run
    assert json.loads(run.stdout) == {
        "dry_run": True,
        "would_send": 2,
        "bad_rows": 0,
        "skipped": 0,
        "duplicates": 0,
        "refused": None,
    }
    assert sorted(os.listdir(tmp_path)) == ["streams.csv"]  # no report
    assert fake.request_count == 0


async def test_missing_credentials_exit_2_naming_variables(tmp_path: Path) -> None:
    """Bad configuration is exit status 2, and says which variable to set."""
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\nc1,s1\n")
    run = await vobiz_async("stop-streams", csv_file, env=cli_env(None, None))
    assert run.status == 2, run
    assert "VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in run.stderr


async def test_header_without_required_column_is_usage_error(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A file for the wrong command is refused whole, before anything is sent."""
    fake, base_url = served
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("call_uuid\nc1\n")
    run = await vobiz_async("stop-streams", csv_file, env=cli_env(fake, base_url))
    assert run.status == 2, run
    assert "stream_id" in run.stderr
    assert fake.request_count == 0


async def test_failures_exit_1_with_errors_in_report(tmp_path: Path) -> None:
    """When the API keeps failing, the run says so with exit status 1."""
    fake = FakeVobiz(open_world=True, faults=Faults(error_503=1.0))
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\nc1,s1\n")
    report = tmp_path / "r.jsonl"
    async with fake.serve() as base_url:
        run = await vobiz_async(
            "stop-streams",
            csv_file,
            "--max-attempts",
            "2",
            "--report",
            report,
            "--rate",
            "50",
            env=cli_env(fake, base_url),
        )
    assert run.status == 1, run
    (line,) = report_lines(report)
    assert line["outcome"] == "failed"
    assert line["attempts"] == 2
    assert "503" in str(line["error"])
    assert fake.auth_token not in report.read_text()


async def test_interrupted_run_resumes_without_stopping_anything_twice(tmp_path: Path) -> None:
    """SIGINT mid-run exits 130; --resume finishes; the server saw each target exactly once."""
    fake = FakeVobiz(open_world=True, faults=Faults(latency=0.02))
    count = 600
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\n" + "".join(f"c{i},s{i}\n" for i in range(count)))
    report = tmp_path / "report.jsonl"
    async with fake.serve() as base_url:
        env = cli_env(fake, base_url)
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-streams",
            str(csv_file),
            "--report",
            str(report),
            "--concurrency",
            "10",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        await asyncio.wait_for(fake.wait_for_requests(100), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 130
        first = json.loads(out)
        assert first["interrupted"] is True
        assert 0 < first["not_attempted"] < count
        done_first = report_lines(report)
        assert len(done_first) == count - first["not_attempted"]
        in_flight = [line for line in done_first if line["outcome"] == "interrupted"]
        assert len(in_flight) == first["interrupted_in_flight"]

        run = await vobiz_async(
            "stop-streams", csv_file, "--resume", report, "--report", report, "--json", env=env
        )

    assert run.status == 0, run
    second = json.loads(run.stdout)
    assert second["skipped"] == len(done_first) - len(in_flight)
    assert fake.stopped_more_than_once() == {}
    assert all(fake.times_stopped(Stream(f"c{i}", f"s{i}")) == 1 for i in range(count))
    assert len(report_lines(report)) == count + len(in_flight)


async def test_progress_bar_on_a_terminal(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """In a real pseudo-terminal, stderr shows a live bar with done/total."""
    fake, base_url = served
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\n" + "".join(f"p{i},s{i}\n" for i in range(40)))
    primary, secondary = pty.openpty()
    env = cli_env(fake, base_url, TERM="xterm-256color", COLUMNS="160")
    env.pop("NO_COLOR", None)
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        "stop-streams",
        str(csv_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    text = screen.decode(errors="replace")
    assert "stopping" in text
    assert "40/40" in text
    assert "━" in text  # rich's bar
    assert "\x1b[" in text  # drawn live, with terminal control sequences


async def test_plain_progress_lines_when_not_a_terminal(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Piped to a file, progress comes as periodic plain lines, not a bar."""
    fake, base_url = served
    fake.faults = Faults(latency=0.05)
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\n" + "".join(f"q{i},s{i}\n" for i in range(60)))
    run = await vobiz_async(
        "stop-streams", csv_file, "--concurrency", "1", env=cli_env(fake, base_url)
    )
    assert run.status == 0, run
    assert "progress: " in run.stderr
    assert "/60 done" in run.stderr
    assert "\x1b[" not in run.stderr


async def test_demo_needs_no_credentials() -> None:
    """Demo runs the whole job against its own loopback fake and checks its counters."""
    run = await vobiz_async(
        "demo", "--count", "300", "--latency", "0", "--json", env=cli_env(None, None)
    )
    assert run.status == 0, run
    summary = json.loads(run.stdout)
    assert summary["stopped"] + summary["not_found"] == 330
    assert summary["failed"] == 0
    assert "0 stopped more than once" in run.stderr


async def test_python_dash_m_runs_the_same_command() -> None:
    """Python -m vobiz_async is the console script too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vobiz_async",
        "--help",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    for command in ("stop-streams", "stop-all-streams", "stop-recordings", "demo"):
        assert command in out.decode()


async def test_resume_survives_a_report_cut_short(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A half-written last line (a crash mid-write) is ignored; that target is redone, once."""
    fake, base_url = served
    csv_file = tmp_path / "streams.csv"
    csv_file.write_text("call_uuid,stream_id\nr1,s\nr2,s\nr3,s\n")
    report = tmp_path / "report.jsonl"
    done = {"kind": "stream", "call_uuid": "r1", "stream_id": "s", "url": None}
    report.write_text(
        json.dumps({**done, "outcome": "stopped"}) + "\n" + '{"kind": "stream", "call_uu'
    )

    run = await vobiz_async(
        "stop-streams",
        csv_file,
        "--resume",
        report,
        "--report",
        tmp_path / "new.jsonl",
        "--quiet",
        "--json",
        env=cli_env(fake, base_url),
    )

    assert run.status == 0, run
    assert "line 2 of" in run.stderr
    summary = json.loads(run.stdout)
    assert (summary["skipped"], summary["stopped"]) == (1, 2)
    assert fake.times_stopped(Stream("r1", "s")) == 0
    assert fake.times_stopped(Stream("r2", "s")) == 1


async def test_demo_explains_its_not_found_count() -> None:
    """Not found in the demo are retries that found the stop already applied: said, and checked."""
    run = await vobiz_async(
        "demo", "--count", "2000", "--latency", "0", "--json", env=cli_env(None, None)
    )
    assert run.status == 0, run
    not_found = run.summary["not_found"]
    assert not_found > 0  # 0.5% of answers are dropped after the stop was applied
    assert f"not found {not_found}: retries that found the stop already applied" in run.stderr
    assert "the fake's count shows each of them stopped, once" in run.stderr
