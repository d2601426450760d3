"""
vobiz-async teardown, run for real in a subprocess against a loopback fake.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from vobiz_async import AllStreams, Recording, Stream
from vobiz_async._cli.commands import cli
from vobiz_async._cli.options import TeardownOptions
from vobiz_async.testing import FakeVobiz, Faults

from .clirun import SCRIPT, cli_env, report_lines, through_a_silent_pipe, vobiz_async, written
from .conftest import REPORT_COLUMNS

BOT_3 = "wss://bot-3.example.com/"


def seed(fake: FakeVobiz, calls: int, *, streams: int = 5) -> list[str]:
    """`calls` live calls; stream j of each goes to bot-j, so each has one stream to bot-3."""
    uuids = [f"call-{i}" for i in range(calls)]
    for i, call in enumerate(uuids):
        fake.add_call(
            call,
            streams={f"s-{i}-{j}": f"wss://bot-{j}.example.com/media" for j in range(streams)},
            recordings=[f"https://rec/{i}"],
        )
    return uuids


@pytest.fixture
async def live() -> AsyncIterator[tuple[FakeVobiz, str, list[str]]]:
    """Six live calls with five streams each, three a page, on a loopback fake."""
    fake = FakeVobiz(page_limit=3)
    calls = seed(fake, 6)
    async with fake.serve() as base_url:
        yield fake, base_url, calls


def deletes(fake: FakeVobiz) -> Counter[object]:
    """How many DELETEs the fake received per target."""
    return Counter(r.target for r in fake.requests if r.method == "DELETE")


async def test_dry_run_lists_and_sends_no_delete(
    live: tuple[FakeVobiz, str, list[str]],
) -> None:
    """--live --dry-run: the plan (calls, a few examples), GETs only, exit 0."""
    fake, base_url, _ = live
    run = await vobiz_async("teardown", "--live", "--dry-run", env=cli_env(fake, base_url))

    assert run.status == 0, run
    assert {r.method for r in fake.requests} == {"GET"}
    assert "nothing was stopped" in run.stdout
    assert "6 live calls: every stream, every recording" in run.stdout
    assert "would send 12 stop requests (6 all_streams, 6 recording)" in run.stdout
    assert "streams on call 'call-0'" in run.stdout


async def test_dry_run_with_streams_to_counts_the_matching_streams(
    live: tuple[FakeVobiz, str, list[str]],
) -> None:
    """Each call's streams are listed (every page); the matches are counted and shown."""
    fake, base_url, _ = live
    run = await vobiz_async(
        "teardown", "--live", "--streams-to", BOT_3, "--dry-run", "--json",
        env=cli_env(fake, base_url),
    )  # fmt: skip

    assert run.status == 0, run
    plan = json.loads(run.stdout)
    assert plan["calls"] == 6
    assert plan["streams_listed"] == 30
    assert plan["streams_matched"] == 6
    assert plan["by_kind"] == {"stream": 6, "recording": 6}
    assert plan["would_send"] == 12
    assert plan["examples"]["stream"][0] == f"stream 's-0-3' on call 'call-0' -> {BOT_3}media"
    assert {r.method for r in fake.requests} == {"GET"}
    # One live list, then two pages (3 + 2 streams) per call.
    assert len(fake.requests) == 1 + 6 * 2


async def test_live_teardown_stops_everything_and_reports_each_target(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """--live --report: every stream and recording stops, once; one line per target."""
    fake, base_url, calls = live
    report = tmp_path / "incident-42.jsonl"
    run = await vobiz_async(
        "teardown", "--live", "--report", report, "--json", env=cli_env(fake, base_url)
    )

    assert run.status == 0, run
    summary = json.loads(run.stdout)
    assert (summary["stopped"], summary["calls"], summary["failed"]) == (12, 6, 0)
    assert all(not fake.active_streams(c) and not fake.active_recordings(c) for c in calls)
    lines = report_lines(report)
    assert all(list(line) == REPORT_COLUMNS for line in lines)
    assert {(line["kind"], line["call_uuid"], line["outcome"]) for line in lines} == {
        (kind, call, "stopped") for call in calls for kind in ("all_streams", "recording")
    }
    assert set(deletes(fake).values()) == {1}


async def test_streams_to_stops_only_the_matching_streams(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """
    --streams-to --no-recordings: bot-3's streams stop, nothing else is touched.

    The report says per call what was listed (every stream, which matched)
    and what was stopped.
    """
    fake, base_url, calls = live
    report = tmp_path / "r.jsonl"
    run = await vobiz_async(
        "teardown", "--live", "--streams-to", BOT_3, "--no-recordings", "--report", report,
        env=cli_env(fake, base_url),
    )  # fmt: skip

    assert run.status == 0, run
    stopped = {Stream(call, f"s-{i}-3") for i, call in enumerate(calls)}
    assert set(fake.stop_counts) == stopped
    assert set(deletes(fake)) == stopped
    for i, call in enumerate(calls):
        assert fake.active_streams(call) == {f"s-{i}-{j}" for j in (0, 1, 2, 4)}
        assert fake.active_recordings(call) == {f"https://rec/{i}"}
    lines = report_lines(report)
    listed = {line["call_uuid"]: line for line in lines if line["kind"] == "list_streams"}
    assert set(listed) == set(calls)
    first = listed["call-0"]
    assert (first["outcome"], first["listed"], first["matched"]) == ("listed", 5, 1)
    streams = first["streams"]
    assert isinstance(streams, list)
    assert [s["stream_id"] for s in streams if s["matched"]] == ["s-0-3"]
    stop_lines = [line for line in lines if line["kind"] == "stream"]
    assert {(line["call_uuid"], line["stream_id"]) for line in stop_lines} == {
        (s.call_uuid, s.stream_id) for s in stopped
    }
    assert "6 live calls: 30 streams listed, 6 running to" in run.stdout


async def test_calls_from_a_file_stdin_or_arguments(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """calls.csv, - and call UUIDs name the calls: those are torn down, no others."""
    fake, base_url, _ = live
    env = cli_env(fake, base_url)
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("call_uuid\ncall-0\ncall-1\n")

    from_file = await vobiz_async("teardown", csv_file, "--json", env=env)
    from_stdin = await vobiz_async(
        "teardown", "-", "--no-recordings", "--json", env=env, stdin=b'{"call_uuid": "call-2"}\n'
    )
    from_args = await vobiz_async("teardown", "call-3", "call-4", "--json", env=env)

    assert [json.loads(r.stdout)["stopped"] for r in (from_file, from_stdin, from_args)] == [
        4,
        1,
        4,
    ]
    assert not any(r.method == "GET" for r in fake.requests)  # nothing listed: calls given
    assert set(deletes(fake)) == {
        *(AllStreams(f"call-{i}") for i in range(5)),
        *(Recording(f"call-{i}") for i in (0, 1, 3, 4)),
    }
    assert fake.active_streams("call-5") == {f"s-5-{j}" for j in range(5)}


async def test_a_bad_row_is_reported_and_the_rest_torn_down(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """A row without a valid call UUID fails with its line number; exit 1; the rest go on."""
    fake, base_url, _ = live
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("call_uuid\ncall-0\nbad/call\n")
    report = tmp_path / "r.jsonl"
    run = await vobiz_async("teardown", csv_file, "--report", report, env=cli_env(fake, base_url))

    assert run.status == 1, run
    assert "line 3: call_uuid must not contain" in run.stderr
    assert [line["line"] for line in report_lines(report) if "line" in line] == [3]
    assert not fake.active_streams("call-0")


async def test_a_dry_run_on_calls_given_sends_nothing_but_checks_the_configuration(
    tmp_path: Path,
) -> None:
    """
    Without --live or --streams-to there is nothing to list: no request at all.

    What the real run would refuse, the dry run refuses too (exit 2): it used
    to plan without credentials and exit 0, and the real run then failed.
    """
    fake = FakeVobiz()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/api/v1"
    run = await vobiz_async(
        "teardown", "c1", "c2", "--dry-run", "--json", env=cli_env(fake, nowhere)
    )
    assert run.status == 0, run
    plan = json.loads(run.stdout)
    assert (plan["calls"], plan["would_send"]) == (2, 4)

    refused = await vobiz_async("teardown", "c1", "c2", "--dry-run", env=cli_env(None, None))
    assert refused.status == 2, refused
    assert "VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in refused.stderr
    bad_url = await vobiz_async(
        "teardown", "c1", "--dry-run", env=cli_env(fake, "ftp://vobiz.example/api/v1")
    )
    assert bad_url.status == 2, bad_url


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param([], "give call UUIDs, a FILE", id="nothing"),
        pytest.param(["--live", "call-1"], "--live tears down every live call", id="both"),
        pytest.param(["calls.cvs"], "no such file: calls.cvs", id="typo"),
        pytest.param(["a b"], "neither a file nor a call UUID", id="bad-uuid"),
        pytest.param(["--live", "--streams-to", " "], "must be a URL prefix", id="blank-prefix"),
    ],
)
async def test_bad_usage_exits_2_and_sends_nothing(
    live: tuple[FakeVobiz, str, list[str]], args: list[str], said: str
) -> None:
    """What cannot be right is refused in one line, exit 2, before any request."""
    fake, base_url, _ = live
    run = await vobiz_async("teardown", *args, env=cli_env(fake, base_url))
    assert run.status == 2, run
    assert said in run.stderr
    assert "Traceback" not in run.stderr
    assert fake.request_count == 0


async def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    """--live needs the API: without credentials, exit 2 naming the variables."""
    run = await vobiz_async("teardown", "--live", env=cli_env(None, None))
    assert run.status == 2, run
    assert "VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in run.stderr


async def test_a_live_list_refused_exits_2_with_the_reason(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """Wrong credentials: 'could not list the live calls', the 401 said, exit 2, no token."""
    fake, base_url, _ = live
    report = tmp_path / "r.jsonl"
    env = cli_env(fake, base_url, VOBIZ_AUTH_TOKEN="wrong-token-9x")
    run = await vobiz_async("teardown", "--live", "--report", report, env=env)

    assert run.status == 2, run
    assert "authentication failed (401): check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in run.stderr
    assert "could not list the live calls" in run.stderr
    assert "401" in run.stderr
    assert "Traceback" not in run.stderr
    (line,) = report_lines(report)
    assert (line["kind"], line["outcome"]) == ("list_live_calls", "failed")
    assert "wrong-token-9x" not in run.stderr + run.stdout + report.read_text()
    assert not any(r.method == "DELETE" for r in fake.requests)


async def test_interrupted_teardown_resumes_without_stopping_anything_twice(
    tmp_path: Path,
) -> None:
    """
    SIGINT mid-teardown exits 130; --live --resume finishes, skipping what the report has.

    Only a stop in flight at the signal (sent, its answer never reported) is sent again.
    """
    fake = FakeVobiz(faults=Faults(latency=0.02))
    calls = seed(fake, 300, streams=1)
    report = tmp_path / "report.jsonl"
    async with fake.serve() as base_url:
        env = cli_env(fake, base_url)
        proc = await asyncio.create_subprocess_exec(
            SCRIPT, "teardown", "--live", "--report", str(report), "--concurrency", "10",
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        await asyncio.wait_for(fake.wait_for_requests(100), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 130
        assert json.loads(out)["interrupted"] is True
        done_first = [line for line in report_lines(report) if line["outcome"] == "stopped"]
        assert 0 < len(done_first) < 600

        run = await vobiz_async(
            "teardown", "--live", "--resume", report, "--report", report, "--json", env=env
        )

    assert run.status == 0, run
    assert json.loads(run.stdout)["skipped"] == len(done_first)
    assert all(not fake.active_streams(c) and not fake.active_recordings(c) for c in calls)
    twice = {target for target, sent in deletes(fake).items() if sent > 1}
    reported = {(line["kind"], line["call_uuid"]) for line in done_first}
    assert len(twice) <= 10  # --concurrency: at most what was in flight
    assert not {(t.kind, t.call_uuid) for t in twice if isinstance(t, AllStreams | Recording)} & (
        reported
    )
    assert max(deletes(fake).values()) <= 2
    assert len(report_lines(report)) == 600


async def test_demo_shows_a_live_teardown() -> None:
    """Demo --teardown: teardown --live on the built-in fake; it confirms nothing still runs."""
    run = await vobiz_async(
        "demo", "--teardown", "--count", "200", "--latency", "0", "--json",
        env=cli_env(None, None),
    )  # fmt: skip
    assert run.status == 0, run
    summary = json.loads(run.stdout)
    assert (summary["calls"], summary["stopped"], summary["failed"]) == (200, 400, 0)
    assert "0 calls with a stream or recording still running" in run.stderr


def test_every_teardown_option_is_a_flag_in_order() -> None:
    """Each TeardownOptions field is one --flag of teardown, in --help order."""
    result = CliRunner().invoke(cli, ["teardown", "--help"])
    assert result.exit_code == 0, result.output
    flags = [f"\n  --{field.name.replace('_', '-')} " for field in attrs.fields(TeardownOptions)]
    positions = [result.output.index(flag) for flag in flags]  # as options, not in the text
    assert positions == sorted(positions)


async def test_a_call_that_has_ended_is_said_and_not_a_failure(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """--streams-to on a call that is gone: its listing answers 404, NOT_FOUND, exit 0."""
    fake, base_url, _ = live
    report = tmp_path / "r.jsonl"
    run = await vobiz_async(
        "teardown", "call-0", "call-gone", "--streams-to", BOT_3, "--no-recordings",
        "--report", report, env=cli_env(fake, base_url),
    )  # fmt: skip
    assert run.status == 0, run
    assert "0 could not be listed (see the report), 1 had ended" in run.stdout
    gone = [line for line in report_lines(report) if line["call_uuid"] == "call-gone"]
    assert [(line["kind"], line["outcome"]) for line in gone] == [("list_streams", "not_found")]
    assert fake.times_stopped(Stream("call-0", "s-0-3")) == 1


async def test_a_file_without_a_call_uuid_column_is_refused(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """Refused whole, exit 2, before anything is sent."""
    fake, base_url, _ = live
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("uuid\ncall-0\n")
    run = await vobiz_async("teardown", csv_file, env=cli_env(fake, base_url))
    assert run.status == 2, run
    assert "call_uuid" in run.stderr
    assert fake.request_count == 0


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
async def test_latin1_calls_stop_at_the_bad_line_with_a_hint_and_lose_nothing(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path, via_stdin: bool
) -> None:
    """
    A calls file saved as Latin-1: the calls before the bad line are torn down and reported.

    Then the line and a hint on screen, exit 2, no traceback (it was "unexpected
    error (a bug)", exit 1).
    """
    fake, base_url, _ = live
    data = b"\xef\xbb\xbfcall_uuid\ncall-0\ncall-1\ncaf\xe9-2\ncall-3\n"
    report = tmp_path / "r.jsonl"
    if via_stdin:
        run = await vobiz_async(
            "teardown", "-", "--report", report, env=cli_env(fake, base_url), stdin=data
        )
    else:
        calls = tmp_path / "calls.csv"
        calls.write_bytes(data)
        run = await vobiz_async("teardown", calls, "--report", report, env=cli_env(fake, base_url))

    assert run.status == 2, run
    assert "line 4" in run.stderr, run.stderr
    assert "not UTF-8" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not fake.active_streams("call-0")
    assert not fake.active_streams("call-1")
    assert fake.active_streams("call-3")  # after the bad line: not read, not stopped
    stopped = {line.get("call_uuid") for line in report_lines(report)}
    assert {"call-0", "call-1"} <= stopped


async def test_a_slowly_fed_pipe_does_not_stall_a_teardown_in_flight(tmp_path: Path) -> None:
    """
    `... | vobiz-async teardown -`: while the pipe is idle, the calls already read go on.

    The first stop is answered 503; its retry must go out while the pipe
    stays silent. Read on the event loop, the pipe froze it until the next line.
    """
    status, err, report = await through_a_silent_pipe(
        "teardown", "-", "--no-recordings", "--report", tmp_path / "r.jsonl", "--timeout", "2"
    )
    assert status == 0, err
    lines = {line["call_uuid"]: line for line in report}
    assert lines["c1"]["outcome"] == "stopped"
    assert lines["c1"]["attempts"] == 2
    assert lines["c2"]["outcome"] == "stopped"


# -- what is printed next never stops more than was asked ----------------------------------


async def test_a_failed_listing_is_retried_by_listing_again_never_by_stopping_all(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """
    --streams-to, every listing answered 503: the printed next step lists again.

    A failed listing used to be reported as a failed all_streams stop, and
    the retry-failed command the summary printed then stopped every stream on
    the call, the healthy ones to bot-0, 1, 2 and 4 included. Now the report
    says the listing failed, retry-failed refuses to guess, and the printed
    command is the teardown again with --resume: it stops bot-3's streams and
    nothing else.
    """
    fake, base_url, calls = live
    report = tmp_path / "r.jsonl"
    env = cli_env(fake, base_url)
    fake.faults = Faults(error_503=1.0)
    run = await vobiz_async(
        "teardown", *calls[:2], "--streams-to", BOT_3, "--no-recordings",
        "--max-attempts", "1", "--report", report, env=env,
    )  # fmt: skip

    assert run.status == 1, run
    assert {line["kind"] for line in report_lines(report)} == {"list_streams"}
    assert {line["outcome"] for line in report_lines(report)} == {"failed"}
    again = run.next_command()
    assert again[0] == "teardown"
    assert again[-2:] == ["--resume", str(report)]
    fake.faults = Faults()
    retried = await vobiz_async("retry-failed", report, env=env)
    assert retried.status == 1, retried
    assert "never completed" in retried.stdout + retried.stderr
    assert "teardown" in retried.stdout + retried.stderr
    assert not any(r.method == "DELETE" for r in fake.requests)

    finished = await vobiz_async(*again, env=env, cwd=tmp_path)

    assert finished.status == 0, finished
    assert set(deletes(fake)) == {Stream(call, f"s-{i}-3") for i, call in enumerate(calls[:2])}
    for i, call in enumerate(calls[:2]):
        assert fake.active_streams(call) == {f"s-{i}-{j}" for j in (0, 1, 2, 4)}


async def test_a_failed_live_list_is_never_reported_all_clear(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """
    The live list answered 503: the next step is teardown --live --resume, not retry-failed.

    retry-failed on that report used to say "nothing to retry: every target
    is stopped or not found" and exit 0, with every stream still running.
    """
    fake, base_url, calls = live
    report = tmp_path / "r.jsonl"
    env = cli_env(fake, base_url)
    fake.faults = Faults(error_503=1.0)
    run = await vobiz_async(
        "teardown", "--live", "--max-attempts", "1", "--report", report, env=env
    )

    assert run.status == 1, run
    assert run.next_command() == [
        "teardown",
        "--live",
        "--max-attempts",
        "1",
        "--resume",
        str(report),
    ]
    fake.faults = Faults()
    retried = await vobiz_async("retry-failed", report, env=env)
    assert retried.status == 1, retried
    assert "nothing to retry" not in retried.stdout
    assert "never completed" in retried.stdout + retried.stderr

    finished = await vobiz_async(*run.next_command(), env=env, cwd=tmp_path)

    assert finished.status == 0, finished
    assert all(not fake.active_streams(call) for call in calls)


async def test_wrong_credentials_say_401_and_exit_2(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """Calls given, wrong token: the stop commands' 401 message, the rest not attempted, exit 2."""
    fake, base_url, calls = live
    env = cli_env(fake, base_url, VOBIZ_AUTH_TOKEN="wrong-token-9x")
    run = await vobiz_async("teardown", *calls, "--report", tmp_path / "r.jsonl", env=env)

    assert run.status == 2, run
    assert "authentication failed (401): check VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN" in run.stderr
    assert "not attempted" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr


async def test_a_wrong_base_url_stops_early_saying_why(tmp_path: Path) -> None:
    """A closed loopback port: "cannot connect ... check the base URL", exit 2, in seconds."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    fake = FakeVobiz()
    env = cli_env(fake, f"http://127.0.0.1:{port}/api/v1")
    calls = [f"call-{i}" for i in range(200)]
    run = await vobiz_async("teardown", *calls, "--report", tmp_path / "r.jsonl", env=env)

    assert run.status == 2, run
    assert "cannot connect" in run.stderr
    assert "check the base URL" in run.stderr


async def test_duplicate_calls_are_torn_down_once_and_an_empty_input_is_an_error(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """
    A call pasted twice is sent once and counted; a file with no call is exit 2.

    Both used to pass silently: the duplicate's stops went out twice, and an
    empty or header-only file "tore down 0 calls" with exit 0.
    """
    fake, base_url, _ = live
    env = cli_env(fake, base_url)
    calls = written(tmp_path / "calls.txt", ["call-0", "call-1", "call-0"])
    run = await vobiz_async("teardown", calls, "--json", env=env, cwd=tmp_path)

    assert run.status == 0, run
    assert run.summary["duplicates"] == 1
    assert deletes(fake)[AllStreams("call-0")] == 1
    for empty in ([], ["call_uuid"]):
        path = written(tmp_path / f"empty-{len(empty)}.csv", empty)
        refused = await vobiz_async("teardown", path, env=env, cwd=tmp_path)
        assert refused.status == 2, refused
        assert "no calls in the input" in refused.stderr


async def test_a_report_naming_the_input_is_refused(
    live: tuple[FakeVobiz, str, list[str]], tmp_path: Path
) -> None:
    """--report calls.csv --append on calls.csv: refused, exit 2, the input intact, nothing sent."""
    fake, base_url, _ = live
    calls = written(tmp_path / "calls.csv", ["call-0"], header="call_uuid")
    before = calls.read_bytes()
    run = await vobiz_async(
        "teardown", calls, "--report", calls, "--append", env=cli_env(fake, base_url)
    )

    assert run.status == 2, run
    assert "is the input file" in run.stderr
    assert calls.read_bytes() == before
    assert not fake.requests
