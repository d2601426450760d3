"""
The demo command's body: a whole batch against a built-in fake Vobiz on loopback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .._client import AsyncVobiz
from .._retry import RetryPolicy
from .._targets import Recording, Stream
from .display import consoles
from .input import BadRow, Row
from .options import DemoOptions, Options, TeardownOptions
from .run import EXIT_FAILED, execute
from .tally import Tally
from .teardown import run_teardown

if TYPE_CHECKING:
    from ..testing import Faults

__all__ = ["batch_options", "demo_faults", "not_found_explained", "run_demo", "run_teardown_demo"]


def batch_options(demo: DemoOptions) -> Options:
    """
    The demo's batch: its own options, nothing to resume, and retries for the fake's faults.
    """
    return Options(
        concurrency=demo.concurrency,
        rate=demo.rate,
        report=demo.report,
        resume=None,
        append=False,
        dry_run=False,
        base_url=None,
        timeout=5.0,
        max_attempts=8,
        quiet=demo.quiet,
        json=demo.json,
    )


def demo_faults(demo: DemoOptions) -> Faults:
    """
    The demo's faults: a realistic latency, a few 503s, 429s and dropped connections.
    """
    from ..testing import Faults

    return Faults(
        latency=demo.latency,
        error_503=0.02,
        # Each 429 pauses the whole batch for its Retry-After, as an account
        # limit should: a handful shows that without stalling the demo.
        rate_limit_429=0.003,
        retry_after=0.1,
        drop_before=0.005,
        drop_after=0.005,
    )


async def run_demo(demo: DemoOptions) -> int:
    """
    Tear down ``demo.count`` streams on a fake with faults; exit 1 if any was stopped twice.
    """
    if demo.teardown:
        return await run_teardown_demo(demo)
    from ..testing import FakeVobiz

    options = batch_options(demo)
    fake = FakeVobiz(open_world=True, seed=2026, record_requests=False, faults=demo_faults(demo))
    count = demo.count
    rows: list[Row | BadRow] = [
        Row(i + 1, Stream(f"demo-call-{i:05d}", f"stream-{i:05d}")) for i in range(count)
    ]
    rows += [Row(count + i + 1, Recording(f"demo-call-{i:05d}")) for i in range(0, count, 10)]
    _, err = consoles()
    async with fake.serve() as base_url:
        if not options.quiet:
            err.print(
                f"fake Vobiz on {base_url}: {demo.latency * 1000:.0f} ms latency, "
                "2% 503, 0.3% 429, 1% dropped connections",
                highlight=False,
            )
        tally = Tally(rows=len(rows))
        status = await execute(
            Stream,
            iter(rows),
            len(rows),
            options,
            lambda: AsyncVobiz(
                fake.auth_id,
                fake.auth_token,
                base_url=base_url,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=options.max_attempts),
            ),
            command="demo",
            tally=tally,
            keep_report=False,
        )
    twice = fake.stopped_more_than_once()
    if not options.quiet:
        err.print(
            f"fake Vobiz's own count: {len(fake.stop_counts)} targets stopped, "
            f"{len(twice)} stopped more than once, {fake.request_count} requests in all",
            highlight=False,
        )
        if tally.not_found:
            err.print(not_found_explained(tally, len(fake.stop_counts)), highlight=False)
    return EXIT_FAILED if twice else status


def not_found_explained(tally: Tally, stopped_by_fake: int) -> str:
    """
    Why a demo has "not found" results, checked against the fake's own count.

    Each is a retry that found its stop already applied: the first request
    stopped the target, and the fake dropped the connection before answering.
    """
    applied_earlier = stopped_by_fake - tally.stopped
    checked = (
        "the fake's count shows each of them stopped, once"
        if applied_earlier == tally.not_found
        else f"the fake's count shows {applied_earlier} of them stopped"
    )
    return (
        f"not found {tally.not_found}: retries that found the stop already applied (the "
        "first request stopped the target, then the fake dropped the connection before "
        f"answering); {checked}: not a miss"
    )


async def run_teardown_demo(demo: DemoOptions) -> int:
    """
    ``teardown --live`` on a fake with ``demo.count`` live calls; exit 1 if anything still runs.

    Each call has one to three streams and a recording. Afterwards the fake
    says, from its own state, whether any stream or recording still runs and
    whether anything was stopped twice.
    """
    from ..testing import FakeVobiz

    fake = FakeVobiz(seed=2026, record_requests=False, faults=demo_faults(demo))
    calls = [f"demo-call-{i:05d}" for i in range(demo.count)]
    for i, call in enumerate(calls):
        streams = {
            f"stream-{i:05d}-{j}": f"wss://bot-{j}.demo.test/media" for j in range(i % 3 + 1)
        }
        fake.add_call(call, streams=streams, recordings=[f"https://rec.demo.test/{i}.mp3"])
    batch = batch_options(demo)
    options = TeardownOptions(
        **{field: getattr(batch, field) for field in attrs.fields_dict(Options)}, live=True
    )
    _, err = consoles()
    async with fake.serve() as base_url:
        if not options.quiet:
            err.print(
                f"fake Vobiz on {base_url}: {demo.count} live calls, "
                f"{demo.latency * 1000:.0f} ms latency, 2% 503, 0.3% 429, 1% dropped connections",
                highlight=False,
            )
        status = await run_teardown(
            None,
            options,
            lambda: AsyncVobiz(
                fake.auth_id,
                fake.auth_token,
                base_url=base_url,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=options.max_attempts),
            ),
        )
    running = [c for c in calls if fake.active_streams(c) or fake.active_recordings(c)]
    twice = fake.stopped_more_than_once()
    if not options.quiet:
        err.print(
            f"fake Vobiz's own count: {len(running)} calls with a stream or recording still "
            f"running, {len(twice)} stopped more than once, {fake.request_count} requests in all",
            highlight=False,
        )
    return EXIT_FAILED if running or twice else status
