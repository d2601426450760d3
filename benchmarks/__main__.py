"""
python -m benchmarks: stop_many against the clients its users would otherwise use.

The fake Vobiz runs in its own process pinned to one core; each client runs
in a fresh process pinned to the other, alternating, several rounds; the
table holds medians and ratios measured in the same run, because the
machines are shared and absolute numbers drift from run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import construct, ratelimit
from .ratelimit import pin, serve_fake

HERE = Path(__file__).parent
RESULTS = HERE / "results"
LABELS = {
    "stop_many": "AsyncVobiz.stop_many",
    "httpx": "httpx.AsyncClient (httpcore)",
    "httpx_aiohttp": "httpx on httpx-aiohttp",
    "aiohttp": "aiohttp directly",
    "vobiz_python": "vobiz-python SDK, 32 threads",
}


def fake_server(latency: float) -> contextlib.AbstractContextManager[str]:
    return serve_fake("--latency", str(latency))


def server_cpu(base_url: str) -> float:
    stats_url = base_url.replace("/api/v1", "/_fake/stats")
    with urllib.request.urlopen(stats_url, timeout=10) as response:  # noqa: S310 - loopback
        return float(json.load(response)["cpu_seconds"])


def run_client(
    kind: str, base_url: str, requests: int, concurrency: int, tag: str
) -> dict[str, Any]:
    before = server_cpu(base_url)
    command = [sys.executable, "-m", "benchmarks.clients", kind, "--base-url", base_url]
    command += ["--requests", str(requests), "--concurrency", str(concurrency), "--tag", tag]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=pin(1), timeout=600
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu"] = server_cpu(base_url) - before
    result["requests"] = requests
    result["concurrency"] = concurrency
    return result


def summarize(runs: list[dict[str, Any]], latency: float) -> dict[str, Any]:
    requests, concurrency = runs[0]["requests"], runs[0]["concurrency"]
    wall = statistics.median(r["wall"] for r in runs)
    summary = {
        "requests": requests,
        "concurrency": concurrency,
        "req_per_s": statistics.median(r["requests"] / r["wall"] for r in runs),
        "cpu_us": statistics.median(r["cpu"] / r["requests"] * 1e6 for r in runs),
        "peak_rss_mib": statistics.median(r["peak_rss"] / 2**20 for r in runs),
        "server_busy": statistics.median(r["server_cpu"] / r["wall"] for r in runs),
    }
    if latency > 0:
        # The ideal is the 100-wide one for every client, threads included:
        # that is the job to do, however a client chooses to do it.
        summary["vs_ideal"] = wall / (requests / 100 * latency)
    return summary


def measure(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [k for k in LABELS if k not in args.skip]
    results: dict[str, Any] = {}
    for latency in args.latencies:
        samples: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        with fake_server(latency) as base_url:
            for round_ in range(args.runs):
                # Rotate the order so no client always runs first or last.
                order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
                for kind in order:
                    requests = args.httpx_requests if kind == "httpx" else args.requests
                    concurrency = 32 if kind == "vobiz_python" else args.concurrency
                    tag = f"l{latency}-r{round_}"
                    sample = run_client(kind, base_url, requests, concurrency, tag)
                    samples[kind].append(sample)
                    print(
                        f"  latency {latency * 1000:.0f} ms, round {round_ + 1}: {kind:<14}"
                        f" {sample['requests'] / sample['wall']:8.0f} req/s",
                        file=sys.stderr,
                    )
        results[f"{latency * 1000:.0f}ms"] = {k: summarize(v, latency) for k, v in samples.items()}
    return results


def measure_memory(sizes: list[int]) -> dict[str, Any]:
    memory = {}
    for size in sizes:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--targets", str(size)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        memory[str(size)] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  memory: {size} targets, peak RSS {memory[str(size)]['peak_rss'] / 2**20:.1f} MiB",
            file=sys.stderr,
        )
    return memory


def table(results: dict[str, Any]) -> str:
    lines = []
    for latency, by_kind in results.items():
        base = by_kind.get("stop_many")
        lines.append(f"\n**{latency} latency**\n")
        header = "| client | requests | req/s | stop_many is | client CPU µs/req | peak RSS MiB |"
        rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
        if latency != "0ms":
            header += " time vs ideal |"
            rule += " ---: |"
        header += " server busy |"
        rule += " ---: |"
        lines += [header, rule]
        for kind, s in by_kind.items():
            ratio = f"{base['req_per_s'] / s['req_per_s']:.2f}x" if base else "n/a"
            row = (
                f"| {LABELS[kind]} | {s['requests']} | {s['req_per_s']:.0f} | {ratio} |"
                f" {s['cpu_us']:.0f} | {s['peak_rss_mib']:.0f} |"
            )
            if "vs_ideal" in s:
                row += f" {s['vs_ideal']:.2f}x |"
            row += f" {s['server_busy']:.0%} |"
            lines.append(row)
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "matplotlib is not installed (pip install -e '.[benchmark]'): no chart", file=sys.stderr
        )
        return False
    latencies = list(results)
    kinds = list(results[latencies[0]])
    fig, axes = plt.subplots(1, len(latencies), figsize=(6 * len(latencies), 4.5))
    if len(latencies) == 1:
        axes = [axes]
    for ax, latency in zip(axes, latencies, strict=True):
        values = [results[latency][k]["req_per_s"] for k in kinds]
        colors = ["#1f77b4" if k == "stop_many" else "#bbbbbb" for k in kinds]
        bars = ax.barh([LABELS[k] for k in kinds], values, color=colors)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3)
        ax.invert_yaxis()
        ax.set_title(f"server latency {latency}, 100 in flight")
        ax.set_xlabel("stop-stream requests per second (median)")
        ax.set_xlim(0, max(values) * 1.25)
    fig.suptitle(f"vobiz-async vs other clients ({machine()})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.system()} {platform.machine()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--httpx-requests", type=int, default=1500, help="plain httpx is ~15x slower: fewer"
    )
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--skip", nargs="*", default=[], choices=list(LABELS))
    parser.add_argument("--memory", type=int, nargs="*", default=[20_000, 500_000])
    parser.add_argument(
        "--construct-runs",
        type=int,
        default=5,
        help="fresh processes timing AsyncVobiz() against httpx.AsyncClient(); 0 to skip",
    )
    parser.add_argument(
        "--rate-limits",
        type=float,
        nargs="*",
        default=ratelimit.DEFAULT_LIMITS,
        help="server limits (req/s) for the rate-limited scenario; none to skip it",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    results = measure(args)
    limited = (
        ratelimit.measure(args.rate_limits, args.runs, ratelimit.DEFAULT_SECONDS)
        if args.rate_limits
        else {}
    )
    memory = measure_memory(args.memory) if args.memory else {}
    built = construct.measure(args.construct_runs, 20) if args.construct_runs else {}
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": machine(),
                "throughput": results,
                "rate_limited": limited,
                "memory": memory,
                "construct": built,
            },
            indent=2,
        )
        + "\n"
    )
    charted = chart(results, RESULTS / "throughput.png")
    if limited and ratelimit.chart(limited, RESULTS / "ratelimit.png"):
        print(f"chart: {RESULTS / 'ratelimit.png'}", file=sys.stderr)
    print(f"\n{stamp}, {machine()}, median of {args.runs} runs, {args.concurrency} in flight")
    print(table(results))
    if limited:
        print("\n**Rate-limited: stop_many against a token bucket it is not told**\n")
        print(ratelimit.table(limited))
    if memory:
        sizes = sorted(memory, key=int)
        growth = (memory[sizes[-1]]["peak_rss"] - memory[sizes[0]]["peak_rss"]) / 2**20
        print(
            "\niter_stop_many peak RSS: "
            + ", ".join(
                f"{int(s):,} targets {memory[s]['peak_rss'] / 2**20:.1f} MiB" for s in sizes
            )
            + f"; growth {growth:+.1f} MiB"
        )
    if built:
        print(f"\n**Construction, median of {args.construct_runs} fresh processes**\n")
        print(construct.table(built))
    if charted:
        print(f"\nchart: {RESULTS / 'throughput.png'}")
    print(f"took {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
