"""
The rate-limited scenario: stop_many against a token-bucket limit it is not told.

    python -m benchmarks.ratelimit                 # every limit, both variants
    python -m benchmarks.ratelimit client ...      # one run (what the above spawns)

The fake Vobiz runs in its own process pinned to one core with a true token
bucket (``serve --limit-rate R --limit-burst R/10``); each client run is a
fresh process pinned to the other. Two variants per limit: ``stop_many`` with
its defaults (it must find the limit) and with ``rate_limit`` set to the true
limit (told it). Goodput is targets stopped per second of the whole run,
against the limit; the 429 share is the server's own count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from .clients import AUTH_ID, AUTH_TOKEN

DEFAULT_LIMITS = [50.0, 800.0]
DEFAULT_SECONDS = 5.0
VARIANTS = {"adaptive": "stop_many, defaults", "told": "stop_many, rate_limit=limit"}


def pin(cpu: int) -> Any:
    """A preexec_fn that pins the child to one core, where the machine has two."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def serve_fake(*args: str) -> Iterator[str]:
    """The open-world fake in its own process pinned to core 0; yields its base URL."""
    command = [sys.executable, "-m", "vobiz_async.testing", "serve", "--open-world", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=pin(0))
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def limited_server(limit: float, retry_after: bool) -> contextlib.AbstractContextManager[str]:
    """The fake behind a token bucket of `limit` a second, burst a tenth of it."""
    args = ["--limit-rate", str(limit), "--limit-burst", str(max(1, round(limit / 10)))]
    args += ["--limit-retry-after", "1"] if retry_after else ["--limit-no-retry-after"]
    return serve_fake(*args)


def stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(  # noqa: S310 - loopback
        base_url.replace("/api/v1", "/_fake/stats"), timeout=10
    ) as answer:
        result: dict[str, Any] = json.load(answer)
    return result


async def client(base_url: str, targets: int, rate_limit: float | None, tag: str) -> dict[str, Any]:
    from vobiz_async import AsyncVobiz, Outcome, Stream

    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url) as vobiz:
        started = time.perf_counter()
        report = await vobiz.stop_many(
            (Stream(f"{tag}-call-{i}", f"{tag}-s-{i}") for i in range(targets)),
            concurrency=100,
            rate_limit=rate_limit,
        )
        wall = time.perf_counter() - started
    done = report.counts[Outcome.STOPPED] + report.counts[Outcome.NOT_FOUND]
    return {"wall": wall, "done": done, "failed": report.counts[Outcome.FAILED]}


#: At least this many targets per run: the issue's incident, 2,000 targets at
#: 100 in flight. The first burst of 100 requests into a bucket that does not
#: hold them (there is no way to know the limit before it) is then a small part
#: of the whole, as in a real teardown of thousands; a batch of a few hundred
#: pays it in full (600 targets at 50/s: a fifth of its requests refused).
MIN_TARGETS = 2000


def run_once(base_url: str, limit: float, variant: str, seconds: float, tag: str) -> dict[str, Any]:
    targets = max(round(limit * seconds), MIN_TARGETS)
    before = stats(base_url)
    command = [sys.executable, "-m", "benchmarks.ratelimit", "client", "--base-url", base_url]
    command += ["--targets", str(targets), "--tag", tag]
    if variant == "told":
        command += ["--rate-limit", str(limit)]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=pin(1), timeout=600
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    after = stats(base_url)
    sent = after["requests"] - before["requests"]
    result["sent"] = sent
    result["throttled"] = after["throttled"] - before["throttled"]
    return result


def measure(limits: list[float], runs: int, seconds: float) -> dict[str, Any]:
    """Medians per limit, Retry-After on and off, per variant."""
    results: dict[str, Any] = {}
    for limit in limits:
        for retry_after in (True, False):
            key = f"{limit:g}/s, Retry-After {'1 s' if retry_after else 'absent'}"
            samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            with limited_server(limit, retry_after) as base_url:
                for round_ in range(runs):
                    for variant in VARIANTS:
                        tag = f"{limit:g}-{retry_after}-{variant}-{round_}"
                        # A fresh bucket for each run: let it refill first.
                        time.sleep(1.0)
                        sample = run_once(base_url, limit, variant, seconds, tag)
                        samples[variant].append(sample)
                        print(
                            f"  {key}: {variant:<8} goodput"
                            f" {sample['done'] / sample['wall'] / limit:6.0%} of the limit,"
                            f" 429s {sample['throttled'] / sample['sent']:5.1%},"
                            f" failed {sample['failed']}",
                            file=sys.stderr,
                        )
            results[key] = {
                variant: {
                    "limit": limit,
                    "goodput_share": statistics.median(s["done"] / s["wall"] / limit for s in got),
                    "share_429": statistics.median(s["throttled"] / s["sent"] for s in got),
                    "failed": max(s["failed"] for s in got),
                }
                for variant, got in samples.items()
            }
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| server limit | client | goodput (% of limit) | 429s (% of requests) | FAILED |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, by_variant in results.items():
        for variant, s in by_variant.items():
            lines.append(
                f"| {key} | {VARIANTS[variant]} | {s['goodput_share']:.0%} |"
                f" {s['share_429']:.1%} | {s['failed']} |"
            )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Any) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = list(results)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(keys) + 1.5))
    height = 0.38
    for offset, (variant, color) in enumerate(zip(VARIANTS, ("#1f77b4", "#bbbbbb"), strict=True)):
        values = [results[k][variant]["goodput_share"] * 100 for k in keys]
        bars = ax.barh(
            [i + offset * height for i in range(len(keys))],
            values,
            height=height,
            color=color,
            label=VARIANTS[variant],
        )
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], padding=3, fontsize=8)
    ax.set_yticks([i + height / 2 for i in range(len(keys))], keys, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(80, color="#d62728", linestyle="--", linewidth=1, label="target: 80%")
    ax.set_xlim(0, 115)
    ax.set_xlabel("goodput, % of the server's limit (median)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8)
    ax.set_title("stop_many against a token-bucket limit it is not told", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratelimit")
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("client")
    one.add_argument("--base-url", required=True)
    one.add_argument("--targets", type=int, required=True)
    one.add_argument("--rate-limit", type=float, default=None)
    one.add_argument("--tag", default="r")
    parser.add_argument("--limits", type=float, nargs="+", default=DEFAULT_LIMITS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per run")
    args = parser.parse_args()
    if args.command == "client":
        result = asyncio.run(client(args.base_url, args.targets, args.rate_limit, args.tag))
        print(json.dumps(result))
        return 0
    print(table(measure(args.limits, args.runs, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
