"""
python -m vobiz_async.testing serve: the fake Vobiz in its own process.

Prints its base URL as the first line on stdout, then the credentials it
accepts and where its counters are (GET /_fake/stats), and serves until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ._fake import DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN, FakeVobiz
from ._faults import Faults
from ._limit import RateLimit
from ._server import STATS_PATH
from ._wire import API_PREFIX


def build_parser() -> argparse.ArgumentParser:
    """
    The serve command's options, one per Faults field.
    """
    parser = argparse.ArgumentParser(prog="python -m vobiz_async.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the fake Vobiz on a loopback port")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--auth-id", default=DEFAULT_AUTH_ID)
    serve.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    serve.add_argument(
        "--open-world",
        action="store_true",
        help="every stream and recording exists until stopped (demo, benchmarks)",
    )
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--idle-timeout", type=float, default=75.0)
    serve.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    for name in ("error-503", "rate-limit-429", "drop-before", "drop-after", "delay", "hang"):
        serve.add_argument(f"--{name}", type=float, default=0.0, metavar="P")
    serve.add_argument("--retry-after", type=float, default=1.0)
    serve.add_argument("--delay-seconds", type=float, default=5.0)
    serve.add_argument("--keepalive-requests", type=int, default=None)
    limit = serve.add_argument_group("a true token-bucket rate limit (RateLimit)")
    limit.add_argument("--limit-rate", type=float, default=None, metavar="PER_SECOND")
    limit.add_argument("--limit-burst", type=int, default=1)
    limit.add_argument("--limit-retry-after", type=float, default=1.0, metavar="SECONDS")
    limit.add_argument(
        "--limit-no-retry-after", action="store_true", help="send 429s without Retry-After"
    )
    limit.add_argument("--limit-body", choices=("nested", "flat"), default="nested")
    return parser


async def serve(args: argparse.Namespace) -> None:
    """
    Serve until SIGINT or SIGTERM; the first stdout line is the base URL.
    """
    faults = Faults(
        latency=args.latency,
        error_503=args.error_503,
        rate_limit_429=args.rate_limit_429,
        retry_after=args.retry_after,
        drop_before=args.drop_before,
        drop_after=args.drop_after,
        delay=args.delay,
        delay_seconds=args.delay_seconds,
        hang=args.hang,
        keepalive_requests=args.keepalive_requests,
    )
    fake = FakeVobiz(
        auth_id=args.auth_id,
        auth_token=args.auth_token,
        open_world=args.open_world,
        faults=faults,
        seed=args.seed,
        record_requests=False,  # a long-lived process must not grow without bound
        rate_limit=None
        if args.limit_rate is None
        else RateLimit(
            rate=args.limit_rate,
            burst=args.limit_burst,
            retry_after=None if args.limit_no_retry_after else args.limit_retry_after,
            body=args.limit_body,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake.serve(host=args.host, port=args.port, idle_timeout=args.idle_timeout) as url:
        origin = url.removesuffix(API_PREFIX)
        print(url, flush=True)  # the first line is the base URL, and only that: scripts read it
        print(
            f"accepts VOBIZ_AUTH_ID={fake.auth_id} VOBIZ_AUTH_TOKEN={fake.auth_token}\n"
            f"counters at {origin}{STATS_PATH}",
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """
    Exit status 0 after a clean stop, 2 for a refused configuration.
    """
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
