"""
The command line never loses the record: reports are kept, never truncated, and say what to do next.

Each test runs the installed console script against a fake Vobiz on loopback.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vobiz_async import AllStreams
from vobiz_async.testing import FakeVobiz, Faults

from .clirun import SCRIPT, cli_env, report_lines, vobiz_async, written

CALLS = [f"call-{i:03d}" for i in range(20)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeVobiz, str]]:
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        yield fake, base_url


async def test_rerunning_with_the_same_report_never_truncates_it(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Up-arrow, Enter: the second run refuses the existing report, naming --resume and --append."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS, header="call_uuid")
    report = tmp_path / "run1.jsonl"
    env = cli_env(fake, base_url)
    first = await vobiz_async("stop-all-streams", calls, "--report", report, env=env, cwd=tmp_path)
    assert first.status == 0, first
    kept = report.read_text()

    again = await vobiz_async("stop-all-streams", calls, "--report", report, env=env, cwd=tmp_path)

    assert again.status == 2, again
    assert "--resume" in again.stderr
    assert "--append" in again.stderr
    assert report.read_text() == kept
    assert fake.request_count == len(CALLS)


async def test_append_adds_to_an_existing_report(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """--append keeps what the report held and adds this run's lines after it."""
    fake, base_url = served
    report = tmp_path / "r.jsonl"
    env = cli_env(fake, base_url)
    one = written(tmp_path / "one.csv", ["a1"], header="call_uuid")
    two = written(tmp_path / "two.csv", ["a2"], header="call_uuid")
    await vobiz_async("stop-all-streams", one, "--report", report, env=env, cwd=tmp_path)
    run = await vobiz_async(
        "stop-all-streams", two, "--report", report, "--append", env=env, cwd=tmp_path
    )
    assert run.status == 0, run
    assert [line["call_uuid"] for line in report_lines(report)] == ["a1", "a2"]


async def test_a_dry_run_writes_no_report(served: tuple[FakeVobiz, str], tmp_path: Path) -> None:
    """--dry-run --report neither empties an existing report nor creates one."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS, header="call_uuid")
    existing = tmp_path / "existing.jsonl"
    existing.write_text('{"kind": "all_streams", "call_uuid": "x", "outcome": "stopped"}\n')
    kept = existing.read_text()
    env = cli_env(fake, base_url)
    fresh = tmp_path / "fresh.jsonl"

    for report, flags in ((existing, ["--append"]), (fresh, [])):
        run = await vobiz_async(
            "stop-all-streams", calls, "--dry-run", "--report", report, *flags, env=env
        )
        assert run.status == 0, run
    assert existing.read_text() == kept
    assert not fresh.exists()
    assert sorted(os.listdir(tmp_path)) == ["calls.txt", "existing.jsonl"]
    assert fake.request_count == 0


async def test_every_real_run_keeps_a_report_named_in_the_summary(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Without --report, a report is written in the current directory, and the summary names it."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS, header="call_uuid")
    run = await vobiz_async("stop-all-streams", calls, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 0, run
    (name,) = fnmatch.filter(os.listdir(tmp_path), "vobiz-async-stop-all-streams-*.jsonl")
    report = tmp_path / name
    assert report.name in run.stdout
    assert len(report_lines(report)) == len(CALLS)


async def test_the_printed_retry_command_retries_just_the_failures(tmp_path: Path) -> None:
    """The summary's command, run as printed, sends again only what failed, into the same report."""
    fake = FakeVobiz(open_world=True, faults=Faults(error_503=1.0))
    written(tmp_path / "calls.txt", CALLS, header="call_uuid")
    written(tmp_path / "half.txt", CALLS[:10], header="call_uuid")
    report = tmp_path / "run1.jsonl"
    async with fake.serve() as base_url:
        env = cli_env(fake, base_url)
        fake.faults = Faults()
        # Half the calls go through, then everything fails.
        first_half = await vobiz_async(
            "stop-all-streams", "half.txt", "--report", "run1.jsonl", env=env, cwd=tmp_path
        )
        assert first_half.status == 0, first_half
        fake.faults = Faults(error_503=1.0)
        run = await vobiz_async(
            "stop-all-streams",
            "calls.txt",
            "--resume",
            "run1.jsonl",
            "--max-attempts",
            "1",
            env=env,
            cwd=tmp_path,
        )
        assert run.status == 1, run
        command = run.next_command()
        assert command[:2] == ["retry-failed", "run1.jsonl"], command
        sent_before = fake.request_count
        fake.faults = Faults()

        retry = await vobiz_async(*command, "--json", env=env, cwd=tmp_path)

    assert retry.status == 0, retry
    assert retry.summary["stopped"] == 10
    assert fake.request_count - sent_before == 10
    assert all(fake.times_stopped(AllStreams(call)) == 1 for call in CALLS)
    outcomes = [line["outcome"] for line in report_lines(report)]
    assert outcomes == ["stopped"] * 10 + ["failed"] * 10 + ["stopped"] * 10


async def test_the_printed_resume_command_finishes_an_interrupted_run(tmp_path: Path) -> None:
    """After Ctrl-C the summary's command, as printed, finishes the job into the same report."""
    fake = FakeVobiz(open_world=True, faults=Faults(latency=0.05))
    calls = [f"c{i}" for i in range(300)]
    csv_file = written(tmp_path / "calls.csv", calls, header="call_uuid")
    async with fake.serve() as base_url:
        env = cli_env(fake, base_url)
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-all-streams",
            "calls.csv",
            "--report",
            "run1.jsonl",
            "--concurrency",
            "5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        await asyncio.wait_for(fake.wait_for_requests(20), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 130, err.decode()
        lines = [
            line.strip()
            for line in (out + err).decode().splitlines()
            if line.startswith("  vobiz-async ")
        ]
        assert lines == [
            "vobiz-async stop-all-streams calls.csv --concurrency 5 --resume run1.jsonl"
        ]
        finish = await vobiz_async(*lines[0].split()[1:], env=env, cwd=tmp_path)
    assert finish.status == 0, finish
    assert csv_file.exists()
    assert fake.stopped_more_than_once() == {}
    assert all(fake.times_stopped(AllStreams(call)) == 1 for call in calls)


async def test_resuming_into_a_report_cut_mid_line_starts_a_fresh_line(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A report whose last line a crash cut short gets a newline before the new lines."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", ["r1", "r2", "r3"], header="call_uuid")
    report = tmp_path / "run1.jsonl"
    done = {"kind": "all_streams", "call_uuid": "r1", "stream_id": None, "url": None}
    report.write_text(json.dumps({**done, "outcome": "stopped"}) + "\n" + '{"kind": "all_str')

    run = await vobiz_async(
        "stop-all-streams", calls, "--resume", report, env=cli_env(fake, base_url), cwd=tmp_path
    )

    assert run.status == 0, run
    text = report.read_text().splitlines()
    assert text[1] == '{"kind": "all_str'
    assert sorted(json.loads(line)["call_uuid"] for line in text[2:]) == ["r2", "r3"]
    assert fake.times_stopped(AllStreams("r1")) == 0


async def test_a_report_naming_the_input_is_refused(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """--report calls.csv would overwrite the input: refused, the input untouched, nothing sent."""
    fake, base_url = served
    calls = written(tmp_path / "calls.csv", CALLS, header="call_uuid")
    kept = calls.read_text()
    for flags in (["--report", "calls.csv"], ["--report", "./calls.csv", "--append"]):
        run = await vobiz_async(
            "stop-all-streams", "calls.csv", *flags, env=cli_env(fake, base_url), cwd=tmp_path
        )
        assert run.status == 2, run
        assert "input" in run.stderr
    assert calls.read_text() == kept
    assert fake.request_count == 0


async def test_retry_failed_with_nothing_left_says_so(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """A report with every target stopped or not found: nothing sent, exit 0, said in a line."""
    fake, base_url = served
    report = tmp_path / "run1.jsonl"
    done = {"kind": "all_streams", "call_uuid": "x1", "stream_id": None, "url": None}
    report.write_text(
        json.dumps({**done, "outcome": "failed"})
        + "\n"
        + json.dumps({**done, "outcome": "stopped"})
    )
    run = await vobiz_async("retry-failed", report, env=cli_env(fake, base_url), cwd=tmp_path)
    assert run.status == 0, run
    assert "nothing to retry" in run.stdout
    assert fake.request_count == 0


async def test_retry_failed_leaves_bad_input_rows_to_be_fixed(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """Bad input rows cannot be retried from a report: their input lines are named; the rest go."""
    fake, base_url = served
    calls = written(tmp_path / "calls.csv", ["ok1,s1", "missing-stream,", "ok2,s2"])
    report = tmp_path / "run1.jsonl"
    env = cli_env(fake, base_url)
    fake.faults = Faults(error_503=1.0)
    first = await vobiz_async(
        "stop-streams", calls, "--report", report, "--max-attempts", "1", env=env, cwd=tmp_path
    )
    assert first.status == 1, first
    fake.faults = Faults()
    run = await vobiz_async("retry-failed", report, "--json", env=env, cwd=tmp_path)
    assert run.status == 0, run
    assert "input lines 2" in run.stderr
    assert run.summary["stopped"] == 2


async def test_a_report_other_than_the_resumed_one_is_not_overwritten_either(
    served: tuple[FakeVobiz, str], tmp_path: Path
) -> None:
    """--resume A --report B with B holding lines: refused, B kept, nothing sent."""
    fake, base_url = served
    calls = written(tmp_path / "calls.txt", CALLS[:3], header="call_uuid")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("")
    b.write_text('{"kind": "all_streams", "call_uuid": "z", "outcome": "stopped"}\n')
    run = await vobiz_async(
        "stop-all-streams",
        calls,
        "--resume",
        a,
        "--report",
        b,
        env=cli_env(fake, base_url),
        cwd=tmp_path,
    )
    assert run.status == 2, run
    assert "never overwritten" in run.stderr
    assert b.read_text().count("\n") == 1
    assert fake.request_count == 0
