"""
What an 80-column terminal shows: a progress line that fits, and why it is waiting when it waits.

Each test runs the installed console script in a pseudo-terminal against a fake Vobiz.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from vobiz_async import AllStreams
from vobiz_async.testing import FakeVobiz, Faults, RateLimit

from .clirun import NEVER_SHOWN, SCRIPT, Terminal, cli_env, written

ELAPSED = re.compile(r"\d:\d\d:\d\d")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """An 80-column pseudo-terminal, closed (and its command killed) however the test ends."""
    opened = Terminal(columns=80)
    yield opened
    opened.close()


async def finish(terminal: Terminal, proc: asyncio.subprocess.Process) -> int:
    status = await asyncio.wait_for(proc.wait(), timeout=60)
    terminal.drain()
    terminal.close()
    for never in NEVER_SHOWN:
        assert never not in terminal.text()
    return status


async def test_the_progress_line_fits_80_columns(tmp_path: Path, terminal: Terminal) -> None:
    """done/total, elapsed and eta are all on the bar's line at 80 columns, none cut off."""
    fake = FakeVobiz(open_world=True, faults=Faults(latency=0.01))
    calls = written(
        tmp_path / "calls.txt", [f"call-{i:05d}" for i in range(300)], header="call_uuid"
    )
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams",
            calls,
            "--concurrency",
            "5",
            "--report",
            tmp_path / "r.jsonl",
            env=cli_env(fake, base_url),
        )
        await terminal.read_until("300/300")
        assert await finish(terminal, proc) == 0
    bars = [line for line in terminal.lines() if "300/300" in line]
    assert bars, terminal.text()
    assert any("eta" in line and ELAPSED.search(line) for line in bars), bars
    assert max(len(line) for line in terminal.lines()) <= 80, terminal.lines()
    assert any("stopped 300" in line for line in terminal.lines()), terminal.lines()


async def test_a_terminal_waiting_on_stdin_says_so(tmp_path: Path, terminal: Terminal) -> None:
    """Reading targets from the terminal says so, and Ctrl-D ends the input."""
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams",
            "-",
            "--report",
            tmp_path / "r.jsonl",
            env=cli_env(fake, base_url),
            stdin_is_terminal=True,
        )
        await terminal.read_until("Ctrl-D")
        terminal.write(b"c1\nc2\n")
        await terminal.read_until("waiting for input")
        terminal.write(b"\x04")
        assert await finish(terminal, proc) == 0
    assert fake.times_stopped(AllStreams("c1")) == fake.times_stopped(AllStreams("c2")) == 1


async def test_ctrl_c_while_waiting_for_input_exits_130(tmp_path: Path, terminal: Terminal) -> None:
    """Ctrl-C before any target came in: exit 130, one line, no traceback and no "Aborted!"."""
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams",
            "-",
            "--report",
            tmp_path / "r.jsonl",
            env=cli_env(fake, base_url),
            stdin_is_terminal=True,
        )
        await terminal.read_until("Ctrl-D")
        proc.send_signal(signal.SIGINT)
        assert await finish(terminal, proc) == 130
    assert "interrupted" in terminal.text()
    assert fake.request_count == 0


async def test_a_429_pause_is_visible(tmp_path: Path, terminal: Terminal) -> None:
    """While the server's rate limit holds the batch back, the screen says so."""
    fake = FakeVobiz(open_world=True, rate_limit=RateLimit(rate=4, burst=1, retry_after=1.0))
    calls = written(tmp_path / "calls.txt", [f"call-{i}" for i in range(16)], header="call_uuid")
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams", calls, "--report", tmp_path / "r.jsonl", env=cli_env(fake, base_url)
        )
        await terminal.read_until("429")
        assert proc.returncode is None  # on screen while it runs, not in the summary
        proc.send_signal(signal.SIGINT)
        assert await finish(terminal, proc) == 130


async def test_a_hung_request_is_visible(tmp_path: Path, terminal: Terminal) -> None:
    """Requests that get no answer show as such, rather than a frozen 0.0/s."""
    fake = FakeVobiz(open_world=True, faults=Faults(hang=1.0))
    calls = written(tmp_path / "calls.txt", [f"call-{i}" for i in range(10)], header="call_uuid")
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams",
            calls,
            "--concurrency",
            "3",
            "--report",
            tmp_path / "r.jsonl",
            env=cli_env(fake, base_url),
        )
        await terminal.read_until("no answer for")
        proc.send_signal(signal.SIGINT)
        assert await finish(terminal, proc) == 130
    assert "may have been applied" in terminal.text()


async def test_failure_reasons_show_while_running(tmp_path: Path, terminal: Terminal) -> None:
    """The commonest failure reason is on screen during the run, not only in the report."""
    fake = FakeVobiz(open_world=True, faults=Faults(error_503=1.0))
    calls = written(tmp_path / "calls.txt", [f"call-{i}" for i in range(200)], header="call_uuid")
    async with fake.serve() as base_url:
        proc = await terminal.start(
            "stop-all-streams",
            calls,
            "--max-attempts",
            "1",
            "--rate",
            "20",
            "--report",
            tmp_path / "r.jsonl",
            env=cli_env(fake, base_url),
        )
        await terminal.read_until("503 Service Unavailable")
        assert proc.returncode is None  # on screen while it runs, not in the summary
        proc.send_signal(signal.SIGINT)
        assert await finish(terminal, proc) == 130


async def test_plain_progress_from_a_pipe_shows_no_made_up_rate_nor_ctrl_d(tmp_path: Path) -> None:
    """
    Off a terminal: no rate before one is measured, and no "Ctrl-D" for a pipe.

    The first progress line comes before any rate can be; a pipe that waits
    is said to, without telling anyone to type Ctrl-D.
    """
    fake = FakeVobiz(open_world=True)
    async with fake.serve() as base_url:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            "stop-all-streams",
            "-",
            "--report",
            str(tmp_path / "r.jsonl"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(fake, base_url),
        )
        assert proc.stdin is not None
        assert proc.stderr is not None
        proc.stdin.write(b"c1\n")
        await proc.stdin.drain()
        await asyncio.wait_for(fake.wait_for_requests(1), timeout=30)
        async with asyncio.timeout(60):
            line = ""
            while not line.startswith("progress:"):
                line = (await proc.stderr.readline()).decode()
                assert line
        proc.stdin.close()
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, rest.decode()
    assert "waiting for input" in line, line
    assert "Ctrl-D" not in line
    assert "/s" not in line
    for never in NEVER_SHOWN:
        assert never not in rest.decode()
