"""
The demo command's body: a whole batch against a built-in fake Vobiz on loopback.
"""

from __future__ import annotations

from .._client import AsyncVobiz
from .._retry import RetryPolicy
from .._targets import Recording, Stream
from .display import consoles
from .input import BadRow, Row
from .options import DemoOptions, Options
from .run import EXIT_FAILED, execute
from .tally import Tally

__all__ = ["batch_options", "not_found_explained", "run_demo"]


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


async def run_demo(demo: DemoOptions) -> int:
    """
    Tear down ``demo.count`` streams on a fake with faults; exit 1 if any was stopped twice.
    """
    from ..testing import FakeVobiz, Faults

    options = batch_options(demo)
    fake = FakeVobiz(
        open_world=True,
        seed=2026,
        record_requests=False,
        faults=Faults(
            latency=demo.latency,
            error_503=0.02,
            # Each 429 pauses the whole batch for its Retry-After, as an account
            # limit should: a handful shows that without stalling the demo.
            rate_limit_429=0.003,
            retry_after=0.1,
            drop_before=0.005,
            drop_after=0.005,
        ),
    )
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
