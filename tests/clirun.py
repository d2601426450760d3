"""
Running the installed vobiz-async console script in a subprocess, as a user does.

Shared by the CLI test modules: the environment, the run itself, a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vobiz_async.testing import FakeVobiz, Faults

SCRIPT = str(Path(sys.executable).parent / "vobiz-async")

#: What no output of the command line may ever hold.
NEVER_SHOWN = ("Traceback", "ExceptionGroup", "Aborted!")


class Run:
    def __init__(self, status: int, stdout: str, stderr: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"<exit {self.status}\nstdout: {self.stdout}\nstderr: {self.stderr}>"

    @property
    def summary(self) -> dict[str, Any]:
        """The --json summary on stdout."""
        data = json.loads(self.stdout)
        assert isinstance(data, dict)
        return data

    def next_command(self) -> list[str]:
        """The command the summary says to run next, as printed on its own line."""
        lines = [
            line.strip()
            for line in (self.stdout + self.stderr).splitlines()
            if line.startswith("  vobiz-async ")
        ]
        assert len(lines) == 1, self
        return split_command(lines[0])


def split_command(line: str) -> list[str]:
    import shlex

    words = shlex.split(line)
    assert words[0] == "vobiz-async"
    return words[1:]


def cli_env(fake: FakeVobiz | None, base_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOBIZ_")}
    if fake is not None:
        env["VOBIZ_AUTH_ID"] = fake.auth_id
        env["VOBIZ_AUTH_TOKEN"] = fake.auth_token
    if base_url is not None:
        env["VOBIZ_BASE_URL"] = base_url
    env.update(extra)
    return env


async def vobiz_async(
    *args: str | Path,
    env: dict[str, str],
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> Run:
    """Run the installed console script without blocking the fake's event loop."""
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    for never in NEVER_SHOWN:
        assert never not in run.stdout + run.stderr, run
    return run


async def through_a_silent_pipe(*args: str | Path) -> tuple[int, str, list[dict[str, object]]]:
    """
    Run a command reading ``-`` against a fake whose first answer is a 503; the pipe then idles.

    c1 is written, and the pipe stays silent until c1's retry has reached the
    fake: the retry must not wait for more input. Then c2, and the end of the
    input. The exit status, stderr and the report (written to ``--report``,
    which ``args`` must name) come back.
    """
    fake = FakeVobiz(open_world=True, faults=Faults(error_503=1.0))
    async with fake.serve() as base_url:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            *map(str, args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(fake, base_url),
        )
        assert proc.stdin is not None
        proc.stdin.write(b"c1\n")
        await proc.stdin.drain()
        await asyncio.wait_for(fake.wait_for_requests(1), timeout=30)
        fake.faults = Faults()
        await asyncio.wait_for(fake.wait_for_requests(2), timeout=30)  # the retry, pipe silent
        proc.stdin.write(b"c2\n")
        proc.stdin.close()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    report = Path(str(args[list(map(str, args)).index("--report") + 1]))
    return proc.returncode, err.decode(), report_lines(report)


def report_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class Terminal:
    """
    A pseudo-terminal of a given width for the command's stdin and stderr.

    ``screen`` is everything written so far; ``lines()`` the text without
    terminal control sequences, split where the terminal would start a line.
    """

    def __init__(self, columns: int = 80, rows: int = 24) -> None:
        self.primary, self.secondary = pty.openpty()
        size = struct.pack("HHHH", rows, columns, 0, 0)
        fcntl.ioctl(self.secondary, termios.TIOCSWINSZ, size)
        self.columns = columns
        self.screen = b""
        self._closed = False
        self.proc: asyncio.subprocess.Process | None = None

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = {**base, "TERM": "xterm-256color", "COLUMNS": str(self.columns), "LINES": "24"}
        env.pop("NO_COLOR", None)
        return env

    async def start(
        self, *args: str | Path, env: dict[str, str], stdin_is_terminal: bool = False
    ) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            *map(str, args),
            stdin=self.secondary if stdin_is_terminal else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.secondary,
            env=self.env(env),
        )
        os.close(self.secondary)
        self.proc = proc
        return proc

    def write(self, data: bytes) -> None:
        os.write(self.primary, data)

    async def read_until(self, text: str, within: float = 60) -> None:
        """Read the terminal until ``text`` shows on it (control sequences aside)."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                arrived.put_nowait(os.read(self.primary, 65536))
            except OSError:  # EIO: the other end is closed and drained
                arrived.put_nowait(b"")

        loop.add_reader(self.primary, readable)
        try:
            async with asyncio.timeout(within):
                while text not in self.text():
                    chunk = await arrived.get()
                    if not chunk:
                        break
                    self.screen += chunk
        finally:
            loop.remove_reader(self.primary)
        assert text in self.text(), self.text()[-3000:]

    def drain(self) -> None:
        """Read what is left once the command has exited."""
        while True:
            try:
                chunk = os.read(self.primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk

    def text(self) -> str:
        return ANSI.sub("", self.screen.decode(errors="replace"))

    def lines(self) -> list[str]:
        return [line for line in re.split(r"[\r\n]", self.text()) if line.strip()]

    def close(self) -> None:
        """Close the terminal; a command still running (a test that failed) is killed."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if not self._closed:
            os.close(self.primary)
            self._closed = True


def written(path: Path, rows: Sequence[str], *, header: str | None = None) -> Path:
    """``path`` with one row per line (and a header first, if any)."""
    lines = ([header] if header is not None else []) + list(rows)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
