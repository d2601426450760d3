"""
Shared fixtures: a clean environment, a mocked API, a clock that sleeps instantly.

The respx router sits behind the client on both of its send paths.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

import httpx
import pytest
import respx

from vobiz_async import AsyncVobiz, RetryPolicy

AUTH_ID = "MA_TESTACCOUNT"
# "+", "/" and "=" change under URL-encoding: a leak of an encoded echo shows.
AUTH_TOKEN = "tok_s3cr3t+do/not=leak_9f8e7d"
BASE_URL = "https://api.vobiz.test/api/v1"
ACCOUNT = f"{BASE_URL}/Account/{AUTH_ID}"


def error_chain(error: BaseException | None, *, causes_only: bool = False) -> list[BaseException]:
    """An error and what it was raised from (and, unless `causes_only`, during)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ if causes_only else error.__cause__ or error.__context__
    return chain


#: The columns of every CLI report line, in order.
REPORT_COLUMNS = [
    "kind",
    "call_uuid",
    "stream_id",
    "url",
    "outcome",
    "status_code",
    "attempts",
    "elapsed",
    "error",
]


class FakeTime:
    """
    A monotonic clock that advances only when the code under test sleeps.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    Leave soak tests out unless the -m expression names them.

    Deselecting here rather than with `-m "not soak"` in addopts keeps them out
    of any other -m the developer types, such as the quick loop's "not slow".
    """
    if "soak" in config.getoption("markexpr"):
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


#: The variables the default transport reads when trust_env is on (either case).
NETWORK_VARIABLES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"}
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    No test sees the developer's VOBIZ_*, proxy or CA variables: every test is hermetic.

    A machine's HTTPS_PROXY would send the loopback TLS tests to its proxy.
    """
    for name in list(os.environ):
        if name.startswith("VOBIZ_") or name.upper() in NETWORK_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _in_a_scratch_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test runs in its own empty directory: a command's default report lands there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=ACCOUNT, assert_all_called=False)


#: How a client reaches the mock: our own pool on a transport (what users get by
#: default, minus the socket), or the caller's httpx.AsyncClient.
SendPath = Literal["own-pool", "http-client"]
SEND_PATHS: tuple[SendPath, ...] = ("own-pool", "http-client")


def make_client(
    router: respx.Router, fake_time: FakeTime, *, path: SendPath = "own-pool", **kwargs: object
) -> AsyncVobiz:
    mock = httpx.MockTransport(router.async_handler)
    options: dict[str, object] = {
        "base_url": BASE_URL,
        "sleep": fake_time.sleep,
        "clock": fake_time.clock,
        "retry": RetryPolicy(),
    }
    if path == "own-pool":
        options["transport"] = mock
    else:
        options["http_client"] = httpx.AsyncClient(transport=mock)
    options.update(kwargs)
    return AsyncVobiz(AUTH_ID, AUTH_TOKEN, **options)  # type: ignore[arg-type]


@pytest.fixture(params=SEND_PATHS)
def send_path(request: pytest.FixtureRequest) -> SendPath:
    """Each test that takes it runs on both send paths."""
    path: SendPath = request.param
    return path


@pytest.fixture
async def vobiz(
    router: respx.Router, fake_time: FakeTime, send_path: SendPath
) -> AsyncIterator[AsyncVobiz]:
    async with make_client(router, fake_time, path=send_path) as client:
        yield client


Behaviour = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 request, head and body; None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


class RawServers:
    """Bare HTTP/1.1 servers on 127.0.0.1, plain or TLS, closed when the test ends."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> str:
        count = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal count
            self.writers.append(writer)
            while (request := await read_request(reader)) is not None:
                count += 1
                await behaviour(count, request, writer)
                if writer.is_closing():
                    return

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
        self.servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/v1"

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Behaviour], Awaitable[str]]]:
    """Start a bare HTTP/1.1 server on 127.0.0.1 whose every connection runs `behaviour`."""
    servers = RawServers()
    yield servers.start
    await servers.close()


@pytest.fixture
async def raw_tls_server() -> AsyncIterator[Callable[[ssl.SSLContext], Awaitable[str]]]:
    """Start a TLS server on 127.0.0.1 with the given context, answering every request 204."""
    servers = RawServers()

    async def no_content(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(NO_CONTENT)
        await writer.drain()

    async def start(tls: ssl.SSLContext) -> str:
        return await servers.start(no_content, tls)

    yield start
    await servers.close()


NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
