"""
The README's examples run as written.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from vobiz_async import AsyncVobiz, RateLimitError, RetryPolicy
from vobiz_async.testing import FakeVobiz, Faults

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
