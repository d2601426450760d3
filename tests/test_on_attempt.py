"""
AsyncVobiz(on_attempt=...): one Attempt per request sent, for users of any metrics system.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import attrs
import pytest
import respx

from vobiz_async import (
    AllStreams,
    AsyncVobiz,
    Attempt,
    ConfigurationError,
    Outcome,
    RetryPolicy,
    ServerError,
    Stream,
)
from vobiz_async.testing import FakeVobiz, Faults

from .conftest import AUTH_ID, AUTH_TOKEN, Behaviour, FakeTime, SendPath, make_client

STREAM_PATH = "/Call/call-1/Stream/stream-1/"
NOT_FOUND_BODY = {"api_id": "a-1", "error": "Stream not found"}


def recorder() -> tuple[list[Attempt], Callable[[Attempt], None]]:
    """A list, and an on_attempt that appends to it."""
    seen: list[Attempt] = []
    return seen, seen.append


async def test_one_attempt_per_request_with_its_fate(
    router: respx.Router, fake_time: FakeTime, send_path: SendPath
) -> None:
    """Two 503s then a 204: three Attempts, the first two saying why and how long until the next."""
    router.delete(STREAM_PATH).mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(503), respx.MockResponse(204)]
    )
    seen, hook = recorder()
    async with make_client(router, fake_time, path=send_path, on_attempt=hook) as vobiz:
        result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.STOPPED
    assert [a.number for a in seen] == [1, 2, 3]
    assert [a.status_code for a in seen] == [503, 503, 204]
    assert [a.error_type for a in seen] == ["503", "503", None]
    assert [a.will_retry for a in seen] == [True, True, False]
    assert [a.wait for a in seen] == [*fake_time.sleeps, 0.0]
    assert all(a.target == Stream("call-1", "stream-1") for a in seen)
    assert all(a.duration >= 0 for a in seen)


async def test_a_404_stop_is_not_an_error(router: respx.Router, fake_time: FakeTime) -> None:
    """A Vobiz 404 is a stop that found nothing to stop: no error type, nothing more to send."""
    router.delete(STREAM_PATH).respond(404, json=NOT_FOUND_BODY)
    seen, hook = recorder()
    async with make_client(router, fake_time, on_attempt=hook) as vobiz:
        await vobiz.stop_stream("call-1", "stream-1")

    assert [(a.status_code, a.error_type, a.will_retry) for a in seen] == [(404, None, False)]


async def test_the_last_failure_says_no_retry(router: respx.Router, fake_time: FakeTime) -> None:
    """When retries are spent, the last Attempt has will_retry false and its error type."""
    router.delete(STREAM_PATH).respond(500)
    seen, hook = recorder()
    async with make_client(router, fake_time, on_attempt=hook) as vobiz:
        with pytest.raises(ServerError):
            await vobiz.stop(Stream("call-1", "stream-1"), retry=RetryPolicy(max_attempts=2))

    assert [(a.number, a.error_type, a.will_retry) for a in seen] == [
        (1, "500", True),
        (2, "500", False),
    ]
    assert seen[1].wait == 0.0


async def test_a_timeout_has_no_status_and_its_class_as_error_type(
    raw_server: Callable[[Behaviour], Awaitable[str]],
) -> None:
    """A request that was never answered: no status code; error type names the error class."""

    async def silent(_: int, __: bytes, ___: asyncio.StreamWriter) -> None:
        return None

    base_url = await raw_server(silent)
    seen, hook = recorder()
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, on_attempt=hook) as vobiz:
        result = await vobiz.stop_many(
            [AllStreams("call-1")], timeout=0.05, retry=RetryPolicy(max_attempts=1)
        )

    assert result.counts[Outcome.FAILED] == 1
    assert [(a.status_code, a.error_type, a.will_retry) for a in seen] == [
        (None, "vobiz_async.APITimeoutError", False)
    ]


async def test_a_throttled_resend_in_a_batch_is_reported_with_its_wait(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """A 429 a batch absorbs is a request sent, then sent again after its Retry-After."""
    router.delete(STREAM_PATH).mock(
        side_effect=[
            respx.MockResponse(429, headers={"Retry-After": "2"}),
            respx.MockResponse(204),
        ]
    )
    seen, hook = recorder()
    async with make_client(router, fake_time, on_attempt=hook) as vobiz:
        report = await vobiz.stop_many([Stream("call-1", "stream-1")])

    assert report.ok
    assert [(a.number, a.error_type, a.will_retry) for a in seen] == [
        (1, "429", True),
        (2, None, False),
    ]
    assert seen[0].wait == 2.0


async def test_nothing_reported_for_what_was_never_sent(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """An invalid target, and targets a brake failed unsent, sent no request: no Attempt."""
    router.route(method="DELETE").respond(401)
    seen, hook = recorder()
    targets: list[object] = [Stream("call-1", "bad/id")] + [AllStreams(f"c-{i}") for i in range(10)]
    async with make_client(router, fake_time, on_attempt=hook) as vobiz:
        report = await vobiz.stop_many(targets, concurrency=1)  # type: ignore[arg-type]

    # The first valid target's 401 trips the brake: one request in all.
    assert sum(result.attempts for result in report) == 1
    assert len(seen) == 1


async def test_an_exception_in_the_callback_never_breaks_a_stop(
    router: respx.Router, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """The callback raising is logged once per client, without the token, and the stops go on."""
    router.route(method="DELETE").respond(204)

    def broken(attempt: Attempt) -> None:
        raise RuntimeError(f"metrics backend down; auth was {AUTH_TOKEN}")

    async with make_client(router, fake_time, on_attempt=broken) as vobiz:
        first = await vobiz.stop_stream("call-1", "stream-1")
        report = await vobiz.stop_many([AllStreams(f"call-{i}") for i in range(5)])

    assert first.outcome is Outcome.STOPPED
    assert report.ok
    warnings = [r for r in caplog.records if "on_attempt" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "RuntimeError" in message
    assert "metrics backend down" in message
    assert AUTH_TOKEN not in message
    assert warnings[0].exc_info is None  # a traceback would print the unredacted message


async def test_a_callback_returning_a_coroutine_is_not_left_unawaited(
    router: respx.Router, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync callable that returns a coroutine: closed (no warning later) and logged once."""
    router.route(method="DELETE").respond(204)
    seen: list[Attempt] = []

    async def record(attempt: Attempt) -> None:  # pragma: no cover - never awaited
        seen.append(attempt)

    async with make_client(router, fake_time, on_attempt=lambda a: record(a)) as vobiz:
        await vobiz.stop_stream("call-1", "stream-1")
        await vobiz.stop_stream("call-1", "stream-2")

    assert seen == []
    assert len([r for r in caplog.records if "not awaited" in r.getMessage()]) == 1


async def test_a_cancelled_request_is_reported(fake_time: FakeTime) -> None:
    """A stop cancelled mid-request had sent it: that request is reported, as cancelled."""
    fake = FakeVobiz(open_world=True, faults=Faults(hang=1.0))
    seen, hook = recorder()
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url, on_attempt=hook) as vobiz,
    ):
        task = asyncio.create_task(vobiz.stop_stream("call-1", "stream-1"))
        await fake.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert [(a.number, a.status_code, a.error_type, a.will_retry) for a in seen] == [
        (1, None, "asyncio.exceptions.CancelledError", False)
    ]


def test_attempt_is_small_frozen_and_holds_no_secret() -> None:
    """An Attempt is a frozen value of these fields only: nothing that could carry the token."""
    assert [field.name for field in attrs.fields(Attempt)] == [
        "target",
        "number",
        "status_code",
        "error_type",
        "duration",
        "will_retry",
        "wait",
    ]
    attempt = Attempt(
        target=Stream("c", "s"),
        number=1,
        status_code=204,
        error_type=None,
        duration=0.01,
        will_retry=False,
        wait=0.0,
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        attempt.number = 2  # type: ignore[misc]


class AsyncCallable:
    async def __call__(self, attempt: Attempt) -> None:  # pragma: no cover - refused
        return None


async def async_hook(attempt: Attempt) -> None:  # pragma: no cover - refused
    return None


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param(5, id="not-callable"),
        pytest.param(async_hook, id="async-function"),
        pytest.param(AsyncCallable(), id="async-call"),
    ],
)
def test_on_attempt_must_be_a_plain_callable(hook: object) -> None:
    """Anything but a plain callable is refused at construction, saying what to pass."""
    with pytest.raises(ConfigurationError, match="on_attempt must be"):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, on_attempt=hook)  # type: ignore[arg-type]
