"""
What building a client costs: AsyncVobiz() against plain httpx.AsyncClient().

    python -m benchmarks.construct                 # several fresh processes, medians
    python -m benchmarks.construct child           # one process's timings (what the above spawns)

Each run is a fresh process, imports done first (they are paid once per
process, whatever is built): it times the first construction of each
client, alternating which goes first, then ``--repeat`` more of each. The
ratio is against httpx.AsyncClient() measured in the same process, because
the shared machine's speed drifts. Nothing here sends a request: a client's
pool opens at its first one.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CLIENTS = ("AsyncVobiz", "httpx.AsyncClient")


def time_one(build: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    build()
    return time.perf_counter() - started


def child(repeat: int, vobiz_first: bool) -> dict[str, Any]:
    import httpx

    from vobiz_async import AsyncVobiz

    builders: dict[str, Callable[[], object]] = {
        # Our client builds nothing it has to close: dropping it leaks nothing.
        "AsyncVobiz": lambda: AsyncVobiz("MA_BENCH", "bench-token"),
        # Never opened, so never needs closing either.
        "httpx.AsyncClient": lambda: httpx.AsyncClient(),
    }
    order = list(CLIENTS) if vobiz_first else list(reversed(CLIENTS))
    first = {name: time_one(builders[name]) for name in order}
    again: dict[str, list[float]] = {name: [] for name in CLIENTS}
    for _ in range(repeat):
        for name in order:
            again[name].append(time_one(builders[name]))
    return {name: {"first": first[name], "again": again[name]} for name in CLIENTS}


def measure(runs: int, repeat: int) -> dict[str, Any]:
    """Medians over `runs` fresh processes, in milliseconds, and AsyncVobiz's ratio to httpx."""
    samples = []
    for run in range(runs):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.construct", "child", "--repeat", str(repeat)]
            + (["--httpx-first"] if run % 2 else []),
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result: dict[str, Any] = {"runs": runs, "repeat": repeat}
    for name in CLIENTS:
        result[name] = {
            "first_ms": statistics.median(s[name]["first"] for s in samples) * 1000,
            "again_ms": statistics.median(statistics.median(s[name]["again"]) for s in samples)
            * 1000,
        }
    ours, theirs = result["AsyncVobiz"], result["httpx.AsyncClient"]
    result["ratio_first"] = ours["first_ms"] / theirs["first_ms"]
    result["ratio_again"] = ours["again_ms"] / theirs["again_ms"]
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        "| client | first in a process, ms | each after, ms | vs httpx.AsyncClient() |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in CLIENTS:
        row = result[name]
        ratio = (
            f"{result['ratio_first']:.3f}x / {result['ratio_again']:.3f}x"
            if name == "AsyncVobiz"
            else "1x"
        )
        lines.append(f"| {name}() | {row['first_ms']:.2f} | {row['again_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.construct")
    parser.add_argument("mode", nargs="?", choices=["child"], help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes")
    parser.add_argument("--repeat", type=int, default=20, help="constructions after the first")
    parser.add_argument("--httpx-first", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "child":
        print(json.dumps(child(args.repeat, vobiz_first=not args.httpx_first)))
        return 0
    result = measure(args.runs, args.repeat)
    print(f"median of {args.runs} fresh processes, {args.repeat} constructions after the first")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
