"""
Shared fixtures: a respx router behind the client, and a clock that sleeps instantly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from vobiz_async import AsyncVobiz, RetryPolicy

AUTH_ID = "MA_TESTACCOUNT"
AUTH_TOKEN = "tok_s3cr3t_do_not_leak_9f8e7d"
BASE_URL = "https://api.vobiz.test/api/v1"
ACCOUNT = f"{BASE_URL}/Account/{AUTH_ID}"


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


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=ACCOUNT, assert_all_called=False)


def make_client(router: respx.Router, fake_time: FakeTime, **kwargs: object) -> AsyncVobiz:
    http = httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))
    options: dict[str, object] = {
        "base_url": BASE_URL,
        "http_client": http,
        "sleep": fake_time.sleep,
        "clock": fake_time.clock,
        "retry": RetryPolicy(),
    }
    options.update(kwargs)
    return AsyncVobiz(AUTH_ID, AUTH_TOKEN, **options)  # type: ignore[arg-type]


@pytest.fixture
async def vobiz(router: respx.Router, fake_time: FakeTime) -> AsyncIterator[AsyncVobiz]:
    client = make_client(router, fake_time)
    async with client:
        yield client
    await client._http.aclose()
