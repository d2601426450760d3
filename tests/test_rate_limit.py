"""
stop_many against a real token-bucket limit it was never told, on loopback sockets.

The fake Vobiz runs as its own process (``python -m vobiz_async.testing serve
--limit-rate ...``), so that its bucket and the client do not share an event
loop. The promise, for limits from tens to hundreds of requests a second, with
and without Retry-After, in either error shape: no target FAILED, goodput at
least 80% of the limit, and at most 10% of the requests sent answered 429.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from vobiz_async import AsyncVobiz, Outcome, Stream
from vobiz_async.testing import DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN

pytestmark = pytest.mark.slow


class LimitedFake:
    """The fake Vobiz in a subprocess, behind a token bucket."""

    def __init__(self, args: list[str]) -> None:
        command = [sys.executable, "-m", "vobiz_async.testing", "serve", "--open-world", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        stats_url = self.base_url.removesuffix("/api/v1") + "/_fake/stats"
        with urllib.request.urlopen(stats_url, timeout=10) as answer:  # noqa: S310 - loopback
            stats: dict[str, Any] = json.load(answer)
        return stats

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def limited() -> Iterator[list[LimitedFake]]:
    started: list[LimitedFake] = []
    yield started
    for fake in started:
        fake.close()


# (limit, burst, targets): 16-20 s at each limit, so that the first burst of
# `concurrency` requests into an empty bucket, and the last throttled targets
# waiting out their Retry-After, are a small part of the whole.
LIMITS = [
    pytest.param(20, 5, 1000, id="20/s", marks=pytest.mark.soak),  # 50 s a run: soak only
    pytest.param(50, 10, 2000, id="50/s"),  # the 2,000 targets: 40 s a run
    pytest.param(150, 15, 3000, id="150/s"),
    pytest.param(250, 25, 4000, id="250/s"),
    # 500/s on loopback needs both processes at full speed: on two shared cores
    # under other load the pair falls short of the limit itself. The algorithm
    # at 500 to 2,000/s is shown on a simulated clock (test_flow_simulated.py).
    pytest.param(500, 50, 8000, id="500/s", marks=pytest.mark.soak),
]


@pytest.mark.parametrize(
    ("retry_after", "body"),
    [
        pytest.param("1", "nested", id="retry-after"),
        pytest.param(None, "flat", id="no-retry-after"),
    ],
)
@pytest.mark.parametrize(("limit", "burst", "targets"), LIMITS)
def test_unknown_limit_is_found_and_nothing_fails(
    limited: list[LimitedFake],
    limit: int,
    burst: int,
    targets: int,
    retry_after: str | None,
    body: str,
) -> None:
    """Zero FAILED, goodput >= 80% of the limit, 429s <= 10% of requests: defaults only."""
    args = ["--limit-rate", str(limit), "--limit-burst", str(burst), "--limit-body", body]
    args += ["--limit-no-retry-after"] if retry_after is None else ["--limit-retry-after", "1"]
    fake = LimitedFake(args)
    limited.append(fake)

    async def run() -> tuple[float, dict[Outcome, int]]:
        async with AsyncVobiz(DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN, base_url=fake.base_url) as vobiz:
            started = time.monotonic()
            report = await vobiz.stop_many(
                (Stream(f"call-{i}", f"s-{i}") for i in range(targets)), concurrency=100
            )
            return time.monotonic() - started, report.counts

    elapsed, counts = asyncio.run(run())
    stats = fake.stats()
    goodput = (counts[Outcome.STOPPED] + counts[Outcome.NOT_FOUND]) / elapsed
    share_429 = stats["throttled"] / stats["requests"]
    summary = f"goodput {goodput:.0f}/s of {limit}/s, 429s {share_429:.1%}, {counts}"
    assert counts[Outcome.FAILED] == 0, summary
    assert counts[Outcome.STOPPED] == targets, summary
    assert goodput >= 0.8 * limit, summary
    assert share_429 <= 0.10, summary
    assert stats["stopped_more_than_once"] == 0
