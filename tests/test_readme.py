"""
The README's examples run as written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from vobiz_async import AllStreams, AsyncVobiz, RateLimitError, Recording, RetryPolicy, Stream
from vobiz_async.testing import FakeVobiz, Faults

from .clirun import cli_env
from .conftest import Behaviour, FakeTime

README = Path(__file__).parent.parent / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {after_heading!r}"
    return match.group(1)


async def test_fake_vobiz_example_passes() -> None:
    """The example pytest test for users' bots is a passing test."""
    namespace: dict[str, Any] = {}
    exec(python_block("## Testing your code against a fake Vobiz"), namespace)  # noqa: S102
    await namespace["test_bot_stops_its_stream_exactly_once"]()


def test_setup_is_two_commands_that_ci_mirrors() -> None:
    """The README's set-up is the demo command and .ci/run, which runs the dev checks."""
    text = README.read_text()
    assert "pip install -e '.[cli]' && .venv/bin/vobiz-async demo" in text
    assert "$ bash .ci/run" in text
    ci = (README.parent / ".ci" / "run").read_text()
    for step in (
        "python3 -m venv .venv",
        "pip install",
        "-e '.[dev]'",
        "ruff check .",
        "ruff format --check .",
        "mypy --strict vobiz_async",
        "pytest --cov",
    ):
        assert step in ci, step


def console_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```console\n(.*?)```", section, re.DOTALL)
    assert match, f"no console block after {after_heading!r}"
    return match.group(1)


CALLS = [f"0f6c1a52-8d3b-4c1e-9a7f-{i:012d}" for i in range(10)]
LOGGED = [f"9b2e4d10-1111-4c1e-9a7f-{i:012d}" for i in range(4)]
STREAMS = [("5c1d0e7a-2222-4c1e-9a7f-000000000001", f"stream-{i}") for i in range(3)]


async def test_incident_commands_run_as_written_in_order(tmp_path: Path) -> None:
    """
    "During an incident", run as written, in order, against the fake: each exit status as said.

    The first real run meets a server answering 503 and exits 1; the command
    the README gives next is the one the summary printed, and finds the server
    healthy; --resume then has nothing left to send. Every call is stopped once.
    """
    export, *steps = [
        line.removeprefix("$ ")
        for line in console_block("### From a list of calls").splitlines()
        if line.startswith("$ ")
    ]
    assert export.startswith("export VOBIZ_AUTH_ID=")
    (tmp_path / "calls.txt").write_text("".join(f"{call}\n" for call in CALLS))
    (tmp_path / "streams.jsonl").write_text(
        "".join(json.dumps({"call_uuid": c, "stream_id": s}) + "\n" for c, s in STREAMS)
    )
    (tmp_path / "app.log").write_text(
        "".join(
            f"12:00:0{i} INFO hangup call={call} reason=busy\n" for i, call in enumerate(LOGGED)
        )
    )
    fake = FakeVobiz(auth_id="MA_XXXXXX", auth_token="...", open_world=True)
    statuses = []
    async with fake.serve() as base_url:
        env = cli_env(None, base_url)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        printed: list[str] = []
        for number, command in enumerate(steps):
            fake.faults = Faults(error_503=1.0) if number == 1 else Faults()
            sent_before = fake.request_count
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                f"{export}\n{command}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=tmp_path,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            said = (out + err).decode()
            assert "Traceback" not in said, said
            statuses.append(proc.returncode)
            if number == 1:
                printed = [
                    line.strip() for line in said.splitlines() if line.startswith("  vobiz-")
                ]
            if number == 3:
                assert fake.request_count == sent_before, said  # --resume: nothing left to send

    assert statuses == [0, 1, 0, 0, 0, 0, 0, 0], statuses
    assert [shlex.split(line) for line in printed] == [shlex.split(steps[2], comments=True)]
    one = "0f6c1a52-8d3b-4c1e-9a7f-5d2b8e1c0042"
    for call in [*CALLS, *LOGGED, one]:
        assert fake.times_stopped(AllStreams(call)) == 1, call
    assert all(fake.times_stopped(Recording(call)) == 1 for call in CALLS)
    assert all(fake.times_stopped(Stream(c, s)) == 1 for c, s in STREAMS)
    assert fake.stopped_more_than_once() == {}
    run1 = (tmp_path / "run1.jsonl").read_text().splitlines()
    outcomes = [json.loads(line)["outcome"] for line in run1]
    assert outcomes == ["failed"] * len(CALLS) + ["stopped"] * len(CALLS)


def test_fake_vobiz_example_passes_in_a_fresh_project(tmp_path: Path) -> None:
    """
    The example passes when copied into a project with no pytest configuration.

    pytest-asyncio's default strict mode collects it and runs it, not skips it.
    """
    (tmp_path / "test_bot.py").write_text(python_block("## Testing your code against a fake Vobiz"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bot.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout


async def handler_answers(app: Any, times: int = 1) -> list[httpx.Response]:
    """Run the app's lifespan and stop the same stream `times` times through its handler."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        return [await http.post("/calls/call-1/streams/stream-1/stop") for _ in range(times)]


async def test_web_handler_recipe_stops_and_keeps_its_deadline(
    monkeypatch: pytest.MonkeyPatch, raw_server: Callable[[Behaviour], Awaitable[str]]
) -> None:
    """The FastAPI recipe: 200 for a stop, 502 saying why when refused, 504 within 2 s when hung."""
    namespace: dict[str, Any] = {}
    exec(python_block("#### Inside a web handler"), namespace)  # noqa: S102
    app = namespace["app"]
    fake = FakeVobiz(open_world=True)
    monkeypatch.setenv("VOBIZ_AUTH_ID", fake.auth_id)
    monkeypatch.setenv("VOBIZ_AUTH_TOKEN", fake.auth_token)
    async with fake.serve() as base_url:
        monkeypatch.setenv("VOBIZ_BASE_URL", base_url)
        stopped, again = await handler_answers(app, times=2)
        monkeypatch.setenv("VOBIZ_AUTH_TOKEN", "not-the-token")
        (refused,) = await handler_answers(app)

    async def silent(_: int, __: bytes, ___: asyncio.StreamWriter) -> None:
        return None

    monkeypatch.setenv("VOBIZ_BASE_URL", await raw_server(silent))
    started = time.perf_counter()
    (hung,) = await handler_answers(app)
    held = time.perf_counter() - started

    assert (stopped.status_code, stopped.json()) == (200, {"stopped": True, "outcome": "stopped"})
    assert again.json()["outcome"] == "not_found"
    assert refused.status_code == 502
    assert "401" in refused.json()["error"]
    assert "not-the-token" not in refused.text
    assert (hung.status_code, hung.json()) == (504, {"stopped": None})
    # A deadline of 2 s, against 52 s with the client's defaults.
    assert held < 10


class Statsd:
    """Records what the README's on_attempt example sends to a statsd client."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[str]]] = []

    def timing(self, name: str, value: float, tags: list[str]) -> None:
        self.sent.append(("timing", name, tags))

    def increment(self, name: str, tags: list[str]) -> None:
        self.sent.append(("increment", name, tags))


async def test_on_attempt_example_counts_requests_and_retries(
    monkeypatch: pytest.MonkeyPatch, fake_time: FakeTime
) -> None:
    """The README's on_attempt callback, against a fake that always throttles: two tries."""
    fake = FakeVobiz(open_world=True, faults=Faults(rate_limit_429=1.0, retry_after=0.0))
    monkeypatch.setenv("VOBIZ_AUTH_ID", fake.auth_id)
    monkeypatch.setenv("VOBIZ_AUTH_TOKEN", fake.auth_token)
    statsd = Statsd()
    namespace: dict[str, Any] = {"statsd": statsd}
    exec(python_block("### `on_attempt`, for any metrics system"), namespace)  # noqa: S102
    await namespace["vobiz"].aclose()

    async with AsyncVobiz(
        fake.auth_id,
        fake.auth_token,
        transport=fake.transport(),
        on_attempt=namespace["count"],
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    ) as vobiz:
        with pytest.raises(RateLimitError):
            await vobiz.stop_stream("call-1", "stream-1", retry=RetryPolicy(max_attempts=2))

    assert statsd.sent == [
        ("timing", "vobiz.request", ["kind:stream"]),
        ("increment", "vobiz.retry", ["reason:429"]),
        ("timing", "vobiz.request", ["kind:stream"]),
    ]


async def test_start_from_what_is_running_runs_as_written_in_order(tmp_path: Path) -> None:
    """
    "Start from what is running", run as written, in order, against the fake: every step exit 0.

    The dry runs send no DELETE; --streams-to stops bot-3's streams and nothing
    else; the teardown of everything then stops the rest, --resume has nothing
    left to send, and the last dry run finds no stream to bot-3 still running.
    (It used to say "it should find nothing left", which it never could:
    teardown does not end calls.)
    """
    export, *steps = [
        line.removeprefix("$ ")
        for line in console_block("### Start from what is running").splitlines()
        if line.startswith("$ ")
    ]
    assert export.startswith("export VOBIZ_AUTH_ID=")
    fake = FakeVobiz(auth_id="MA_XXXXXX", auth_token="...", page_limit=3)
    calls = [f"4d7e9c21-3333-4c1e-9a7f-{i:012d}" for i in range(5)]
    for i, call in enumerate(calls):
        fake.add_call(
            call,
            streams={f"s-{i}-{j}": f"wss://bot-{j}.example.com/media" for j in range(5)},
            recordings=[f"https://rec/{i}"],
        )
    (tmp_path / "calls.csv").write_text("call_uuid\n" + "".join(f"{c}\n" for c in calls))
    statuses, said_by_step = [], []
    async with fake.serve() as base_url:
        env = cli_env(None, base_url)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        for command in steps:
            deletes_before = sum(1 for r in fake.requests if r.method == "DELETE")
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f"{export}\n{command}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=env, cwd=tmp_path,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            said = (out + err).decode()
            assert "Traceback" not in said, said
            statuses.append(proc.returncode)
            sent = sum(1 for r in fake.requests if r.method == "DELETE") - deletes_before
            said_by_step.append((command, said, sent))
            if "--streams-to" in command and "--report" in command:
                for i, call in enumerate(calls):
                    assert fake.active_streams(call) == {f"s-{i}-{j}" for j in (0, 1, 2, 4)}

    assert statuses == [0] * len(steps), said_by_step
    for command, said, sent in said_by_step:
        if "--dry-run" in command or "--resume" in command:
            assert sent == 0, (command, said)
    last_check = said_by_step[-2]
    assert "--dry-run" in last_check[0], last_check
    assert "0 running to wss://bot-3.example.com/" in last_check[1], last_check
    assert all(not fake.active_streams(call) for call in calls)
    assert all(not fake.active_recordings(call) for call in calls)
    assert fake.stopped_more_than_once() == {}
