"""
The default transport (httpx on aiohttp) against raw loopback sockets.

These prove that aiohttp's own failures reach the retry policy as the right
errors: httpx-aiohttp maps a server hang-up to httpx.ConnectTimeout, which
must still count as a dropped connection, not a timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import pytest

from vobiz_async import (
    APIConnectError,
    APIConnectionError,
    APITimeoutError,
    AsyncVobiz,
    Outcome,
    RetryPolicy,
)

from .conftest import AUTH_ID, AUTH_TOKEN, NO_CONTENT, Behaviour, FakeTime


async def test_real_transport_sends_documented_request(
    raw_server: Callable[[Behaviour], Awaitable[str]], fake_time: FakeTime
) -> None:
    """Through aiohttp, the request line, headers and JSON body are as documented."""
    seen: list[bytes] = []

    async def answer(_: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        seen.append(request)
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(answer)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url) as vobiz:
        result = await vobiz.stop_recording("call-1", url="https://media.example/r.mp3")

    assert result.outcome is Outcome.STOPPED
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"DELETE /api/v1/Account/{AUTH_ID}/Call/call-1/Record/ HTTP/1.1"
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["x-auth-token"] == AUTH_TOKEN
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"URL": "https://media.example/r.mp3"}


async def test_refused_connection_is_connection_error_and_retried(fake_time: FakeTime) -> None:
    """Nothing listening: APIConnectError (an APIConnectionError), after every attempt."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=f"http://127.0.0.1:{port}/api/v1",
        retry=RetryPolicy(max_attempts=3),
        sleep=fake_time.sleep,
    ) as vobiz:
        with pytest.raises(APIConnectionError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert type(info.value) is APIConnectError
    assert info.value.attempts == 3


async def test_dropped_connection_is_not_a_timeout_and_is_retried(
    raw_server: Callable[[Behaviour], Awaitable[str]], fake_time: FakeTime
) -> None:
    """A server that hangs up mid-request is a dropped connection; our retry succeeds."""
    # aiohttp retries an idempotent request once by itself after a hang-up, so
    # the server drops three requests to be sure our own retry is what recovers.

    async def drop_first(count: int, _: bytes, writer: asyncio.StreamWriter) -> None:
        if count <= 3:
            writer.close()
            return
        writer.write(NO_CONTENT)
        await writer.drain()

    base_url = await raw_server(drop_first)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, sleep=fake_time.sleep) as vobiz:
        result = await vobiz.stop_stream("call-1", "s-1")

    assert result.outcome is Outcome.STOPPED
    assert result.attempts >= 2
    assert len(fake_time.sleeps) == result.attempts - 1


async def test_dropped_connection_error_type(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """With retries off, the hang-up surfaces as APIConnectionError, not APITimeoutError."""

    async def drop(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        writer.close()

    base_url = await raw_server(drop)
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=base_url, retry=RetryPolicy(max_attempts=1)
    ) as vobiz:
        with pytest.raises(APIConnectionError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert type(info.value) is APIConnectionError
    assert "ServerDisconnectedError" in str(info.value)


async def test_hung_server_is_a_timeout(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """A server that accepts and never answers ends in APITimeoutError within the timeout."""
    never = asyncio.Event()

    async def hang(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    base_url = await raw_server(hang)
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=base_url, timeout=0.2, retry=RetryPolicy(max_attempts=1)
    ) as vobiz:
        with pytest.raises(APITimeoutError):
            await vobiz.stop_stream("call-1", "s-1")
    never.set()
