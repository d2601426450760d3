"""
The single-stop API: wire format, outcomes, errors and retries, over respx.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest
import respx

import vobiz_async
from vobiz_async import (
    APIStatusError,
    APITimeoutError,
    AsyncVobiz,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    InvalidTargetError,
    NotFoundError,
    Outcome,
    PermissionDeniedError,
    RateLimitError,
    Recording,
    RetryPolicy,
    ServerError,
    Stream,
)

from .conftest import ACCOUNT, AUTH_ID, AUTH_TOKEN, BASE_URL, FakeTime, make_client

STREAM_PATH = "/Call/call-1/Stream/stream-1/"
ALL_STREAMS_PATH = "/Call/call-1/Stream/"
RECORD_PATH = "/Call/call-1/Record/"
REC_URL = "https://media.vobiz.ai/rec/abc.mp3"


# -- wire format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "path"),
    [
        pytest.param("stop_stream", ("call-1", "stream-1"), STREAM_PATH, id="stream"),
        pytest.param("stop_all_streams", ("call-1",), ALL_STREAMS_PATH, id="all-streams"),
        pytest.param("stop_recording", ("call-1",), RECORD_PATH, id="all-recordings"),
    ],
)
async def test_sends_delete_to_documented_path_with_auth_headers(
    vobiz: AsyncVobiz, router: respx.Router, method: str, args: tuple[str, ...], path: str
) -> None:
    """Each stop is a DELETE to the NOTES.md path, trailing slash, auth headers, no body."""
    route = router.delete(path).respond(204)

    result = await getattr(vobiz, method)(*args)

    assert result.outcome is Outcome.STOPPED
    request = route.calls.last.request
    assert request.url == f"{ACCOUNT}{path}"
    assert request.headers["X-Auth-ID"] == AUTH_ID
    assert request.headers["X-Auth-Token"] == AUTH_TOKEN
    assert request.headers["Accept"] == "application/json"
    assert "authorization" not in request.headers
    assert request.content == b""


async def test_user_agent_names_library_python_and_httpx(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The User-Agent says who is calling, for Vobiz's logs and support."""
    route = router.delete(STREAM_PATH).respond(204)
    await vobiz.stop_stream("call-1", "stream-1")
    agent = route.calls.last.request.headers["User-Agent"]
    assert agent.startswith(f"vobiz-async/{vobiz_async.__version__} Python/3.")
    assert f"httpx/{httpx.__version__}" in agent


async def test_recording_url_goes_in_json_body(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """Stopping one recording sends {"URL": url} as JSON; stopping all sends no body."""
    route = router.delete(RECORD_PATH).respond(204)

    await vobiz.stop_recording("call-1", url=REC_URL)
    await vobiz.stop_recording("call-1")

    with_url, without_url = route.calls
    assert json.loads(with_url.request.content) == {"URL": REC_URL}
    assert with_url.request.headers["content-type"] == "application/json"
    assert without_url.request.content == b""
    assert "content-type" not in without_url.request.headers


# -- outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(httpx.Response(204), id="204-empty"),
        pytest.param(
            httpx.Response(200, json={"message": "Stream stopped successfully"}), id="200-json"
        ),
        pytest.param(httpx.Response(202, json={"queued": True}), id="202-json"),
    ],
)
async def test_any_2xx_is_stopped(
    vobiz: AsyncVobiz, router: respx.Router, response: httpx.Response
) -> None:
    """Both documented success shapes, and any other 2xx that is empty or JSON, mean STOPPED."""
    router.delete(STREAM_PATH).mock(return_value=response)
    result = await vobiz.stop_stream("call-1", "stream-1")
    assert result.outcome is Outcome.STOPPED
    assert result.ok
    assert result.status_code == response.status_code
    assert result.attempts == 1
    assert result.error is None


async def test_404_is_not_found_and_raises_nothing(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """A stop that finds nothing is idempotent success, with the API's correlation id."""
    body = {"api_id": "corr-404", "error": "Stream not found"}
    route = router.delete(STREAM_PATH).respond(404, json=body)

    result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.NOT_FOUND
    assert result.ok
    assert result.status_code == 404
    assert result.api_id == "corr-404"
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("method", "args", "path", "described"),
    [
        pytest.param(
            "stop_stream", ("call-1", "stream-1"), STREAM_PATH, "stream 'stream-1'", id="stream"
        ),
        pytest.param("stop_all_streams", ("call-1",), ALL_STREAMS_PATH, "streams on", id="all"),
        pytest.param("stop_recording", ("call-1",), RECORD_PATH, "recordings on", id="recs"),
        pytest.param(
            "stop_recording", ("call-1", REC_URL), RECORD_PATH, f"recording {REC_URL!r}", id="rec"
        ),
    ],
)
async def test_404_with_missing_ok_false_raises_not_found(
    vobiz: AsyncVobiz,
    router: respx.Router,
    method: str,
    args: tuple[str, ...],
    path: str,
    described: str,
) -> None:
    """Callers who need the target to have existed can ask for NotFoundError."""
    router.delete(path).respond(404, json={"api_id": "corr-1", "error": "Stream not found"})

    with pytest.raises(NotFoundError) as info:
        await getattr(vobiz, method)(*args, missing_ok=False)

    assert info.value.status_code == 404
    assert info.value.api_id == "corr-1"
    assert info.value.attempts == 1
    assert described in str(info.value)
    assert "call 'call-1'" in str(info.value)


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        pytest.param(400, BadRequestError, id="400"),
        pytest.param(401, AuthenticationError, id="401"),
        pytest.param(403, PermissionDeniedError, id="403"),
        pytest.param(409, APIStatusError, id="409"),
        pytest.param(422, APIStatusError, id="422"),
    ],
)
async def test_other_4xx_raise_typed_error_without_retry(
    vobiz: AsyncVobiz, router: respx.Router, status: int, error_class: type[APIStatusError]
) -> None:
    """A 4xx other than 404/408/429 will not change on retry: one request, typed error."""
    route = router.delete(STREAM_PATH).respond(status, json={"api_id": "x", "error": "nope"})

    with pytest.raises(error_class) as info:
        await vobiz.stop_stream("call-1", "stream-1")

    assert type(info.value) is error_class
    assert info.value.status_code == status
    assert info.value.attempts == 1
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(
            httpx.Response(400, json={"api_id": "a-1", "error": "Invalid stream id"}),
            "Invalid stream id",
            id="flat-shape",
        ),
        pytest.param(
            httpx.Response(
                400,
                json={
                    "status": "error",
                    "error": {"code": "BAD_INPUT", "message": "Bad call", "details": {}},
                    "timestamp": "2026-01-01T00:00:00Z",
                    "requestId": "req-9",
                },
            ),
            "Bad call (BAD_INPUT)",
            id="nested-shape",
        ),
        pytest.param(httpx.Response(400), "(empty body)", id="empty"),
        pytest.param(
            httpx.Response(400, text="<html><body>Bad Gateway</body></html>"),
            "non-JSON body '<html><body>Bad Gateway</body></html>'",
            id="html",
        ),
        pytest.param(httpx.Response(400, json=["a", "list"]), "non-JSON body", id="json-list"),
        pytest.param(
            httpx.Response(400, text="<p>" + "x" * 500 + "</p>"),
            "x" * 100 + "...'",
            id="long-html-truncated",
        ),
        pytest.param(
            httpx.Response(400, json={"message": "Just a message"}),
            "Just a message",
            id="message-only",
        ),
        pytest.param(
            httpx.Response(400, json={"error": {"code": "ONLY_CODE"}}), "ONLY_CODE", id="code-only"
        ),
    ],
)
async def test_error_message_is_readable_for_every_body_shape(
    vobiz: AsyncVobiz, router: respx.Router, response: httpx.Response, expected: str
) -> None:
    """Both Vobiz error shapes, empty and non-JSON bodies all make a useful message."""
    router.delete(STREAM_PATH).mock(return_value=response)
    with pytest.raises(BadRequestError) as info:
        await vobiz.stop_stream("call-1", "stream-1")
    message = str(info.value)
    assert message.startswith(f"400 Bad Request from DELETE /api/v1/Account/{AUTH_ID}")
    assert expected in message


async def test_api_id_comes_from_either_shape(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """The nested shape's requestId is the api_id too."""
    router.delete(STREAM_PATH).respond(
        403, json={"status": "error", "error": {"message": "no"}, "requestId": "req-7"}
    )
    with pytest.raises(PermissionDeniedError) as info:
        await vobiz.stop_stream("call-1", "stream-1")
    assert info.value.api_id == "req-7"
    assert info.value.response is not None


# -- retries ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retried_statuses_are_retried_until_success(
    vobiz: AsyncVobiz, router: respx.Router, status: int
) -> None:
    """Transient statuses are tried again, and the attempt count says so."""
    route = router.delete(STREAM_PATH)
    route.side_effect = [httpx.Response(status), httpx.Response(204)]

    result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.STOPPED
    assert result.attempts == 2
    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.RemoteProtocolError("Server disconnected"), id="dropped"),
        pytest.param(httpx.ConnectError("refused"), id="refused"),
        pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
    ],
)
async def test_transport_failures_are_retried(
    vobiz: AsyncVobiz, router: respx.Router, failure: Exception
) -> None:
    """No response at all is always worth another try for an idempotent DELETE."""
    route = router.delete(STREAM_PATH)
    route.side_effect = [failure, httpx.Response(204)]

    result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.STOPPED
    assert route.call_count == 2


async def test_404_after_a_retried_attempt_is_not_found(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A lost-but-applied first attempt shows up as 404 on the retry: still success."""
    route = router.delete(STREAM_PATH)
    route.side_effect = [
        httpx.RemoteProtocolError("gone"),
        httpx.Response(404, json={"api_id": "a-404", "error": "Stream not found"}),
    ]

    result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.NOT_FOUND
    assert result.attempts == 2


async def test_gives_up_after_max_attempts_with_last_error(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """When every attempt fails, the last error is raised with the attempt count."""
    route = router.delete(STREAM_PATH).respond(503, json={"error": "busy"})
    async with make_client(router, fake_time, retry=RetryPolicy(max_attempts=3)) as vobiz:
        with pytest.raises(ServerError) as info:
            await vobiz.stop_stream("call-1", "stream-1")
    assert info.value.attempts == 3
    assert route.call_count == 3
    assert len(fake_time.sleeps) == 2


async def test_max_attempts_one_turns_retries_off(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """RetryPolicy(max_attempts=1) sends exactly one request."""
    route = router.delete(STREAM_PATH).respond(503)
    async with make_client(router, fake_time, retry=RetryPolicy(max_attempts=1)) as vobiz:
        with pytest.raises(ServerError):
            await vobiz.stop_stream("call-1", "stream-1")
    assert route.call_count == 1
    assert fake_time.sleeps == []


async def test_backoff_grows_and_is_capped(router: respx.Router, fake_time: FakeTime) -> None:
    """Waits grow exponentially with bounded jitter and never pass wait_max."""
    router.delete(STREAM_PATH).respond(500)
    policy = RetryPolicy(
        max_attempts=6, wait_initial=0.1, wait_max=0.5, wait_jitter=0.05, deadline=None
    )
    async with make_client(router, fake_time, retry=policy) as vobiz:
        with pytest.raises(ServerError):
            await vobiz.stop_stream("call-1", "stream-1")
    assert len(fake_time.sleeps) == 5
    for sleep, base in zip(fake_time.sleeps, [0.1, 0.2, 0.4, 0.5, 0.5], strict=True):
        assert base <= sleep <= min(base + 0.05, 0.5)


@pytest.mark.parametrize(
    ("status", "headers", "low", "high"),
    [
        pytest.param(429, lambda: {"Retry-After": "7"}, 7.0, 7.0, id="seconds"),
        pytest.param(
            503,
            # Made when the test runs, not when it is collected: it is 12 s from now.
            lambda: {"Retry-After": email.utils.formatdate(time.time() + 12, usegmt=True)},
            10.0,
            12.0,
            id="http-date",
        ),
        pytest.param(429, lambda: {"retry-after-ms": "250"}, 0.25, 0.25, id="retry-after-ms"),
        # Garbage is ignored rather than trusted: the policy's first backoff instead.
        pytest.param(429, lambda: {"Retry-After": "soon-ish"}, 0.1, 0.2, id="unreadable"),
    ],
)
async def test_retry_after_sets_the_wait(
    vobiz: AsyncVobiz,
    router: respx.Router,
    fake_time: FakeTime,
    status: int,
    headers: Callable[[], dict[str, str]],
    low: float,
    high: float,
) -> None:
    """The server's wait, in seconds, as an HTTP date or in ms, replaces the backoff."""
    route = router.delete(STREAM_PATH)
    route.side_effect = [httpx.Response(status, headers=headers()), httpx.Response(204)]

    result = await vobiz.stop_stream("call-1", "stream-1")

    assert result.outcome is Outcome.STOPPED
    (slept,) = fake_time.sleeps
    assert low <= slept <= high


async def test_retry_after_over_the_cap_fails_fast(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime
) -> None:
    """A Retry-After longer than max_retry_after ends the retries at once, without sleeping."""
    route = router.delete(STREAM_PATH).respond(429, headers={"Retry-After": "600"})

    with pytest.raises(RateLimitError) as info:
        await vobiz.stop_stream("call-1", "stream-1")

    assert route.call_count == 1
    assert fake_time.sleeps == []
    assert info.value.retry_after == 600.0
    assert "max_retry_after" in str(info.value)


async def test_deadline_bounds_attempts_and_sleeps(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """No sleep is started that would end past the deadline; the real error is raised."""
    route = router.delete(STREAM_PATH).respond(503)
    policy = RetryPolicy(
        max_attempts=100, wait_initial=1.0, wait_max=1.0, wait_jitter=0, deadline=3.5
    )
    async with make_client(router, fake_time, retry=policy) as vobiz:
        with pytest.raises(ServerError) as info:
            await vobiz.stop_stream("call-1", "stream-1")
    assert sum(fake_time.sleeps) <= 3.5
    assert route.call_count == 4
    assert info.value.attempts == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_never_retried_statuses(
    vobiz: AsyncVobiz, router: respx.Router, fake_time: FakeTime, status: int
) -> None:
    """404 and the other 4xx are answered once and never retried."""
    route = router.delete(STREAM_PATH).respond(status)
    (result,) = await vobiz.stop_many([Stream("call-1", "stream-1")])
    assert result.status_code == status
    assert route.call_count == 1
    assert fake_time.sleeps == []


async def test_concurrent_stops_count_their_own_attempts(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Each operation gets a fresh retrier: concurrent retries do not mix counts."""
    import asyncio

    first = router.delete("/Call/a/Stream/s/")
    first.side_effect = [httpx.Response(503), httpx.Response(503), httpx.Response(204)]
    second = router.delete("/Call/b/Stream/s/")
    second.side_effect = [httpx.Response(503), httpx.Response(204)]

    a, b = await asyncio.gather(vobiz.stop_stream("a", "s"), vobiz.stop_stream("b", "s"))

    assert (a.attempts, b.attempts) == (3, 2)


async def test_attempt_timeout_raises_api_timeout_error(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """A server that never answers ends in APITimeoutError after the attempt timeout."""
    import asyncio

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    router.delete(STREAM_PATH).mock(side_effect=hang)
    client = make_client(router, fake_time, timeout=0.05, retry=RetryPolicy(max_attempts=2))
    async with client as vobiz:
        with pytest.raises(APITimeoutError) as info:
            await vobiz.stop_stream("call-1", "stream-1")
    assert info.value.attempts == 2
    assert "no response within 0.05s" in str(info.value)


async def test_attempt_timeout_shrinks_to_the_deadline(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """An attempt never runs past what is left of the deadline, whatever `timeout` says."""
    import asyncio

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    answers = iter([httpx.Response(503)])

    async def answer(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or await hang(request)

    router.delete(STREAM_PATH).mock(side_effect=answer)
    # 0.03s of (injected) backoff leaves 0.02s of the deadline for the second attempt:
    # that attempt's timeout is 0.02s, not the client's 10s.
    policy = RetryPolicy(max_attempts=5, deadline=0.05, wait_initial=0.03, wait_jitter=0)
    async with make_client(router, fake_time, timeout=10.0, retry=policy) as vobiz:
        with pytest.raises(APITimeoutError, match=r"no response within 0\.02s") as info:
            await vobiz.stop_stream("call-1", "stream-1")
    assert info.value.attempts == 2


async def test_sleep_that_overshoots_the_deadline_ends_with_timeout(router: respx.Router) -> None:
    """If the event loop wakes late past the deadline, no further request is sent."""
    route = router.delete(STREAM_PATH).respond(503)
    late = FakeTime()

    async def oversleep(seconds: float) -> None:
        await late.sleep(seconds * 10)

    policy = RetryPolicy(max_attempts=5, deadline=1.0, wait_initial=0.2, wait_jitter=0)
    client = make_client(router, late, sleep=oversleep, retry=policy)
    async with client as vobiz:
        with pytest.raises(APITimeoutError, match=r"deadline of 1\.0s reached"):
            await vobiz.stop_stream("call-1", "stream-1")
    assert route.call_count == 1


# -- safety -------------------------------------------------------------------------


BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a?b=1", id="query"),
    pytest.param("a#b", id="fragment"),
    pytest.param("a%2Fb", id="percent"),
    pytest.param("a b", id="space"),
    pytest.param("a\nb", id="newline"),
    pytest.param("caf\u00e9", id="non-ascii"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_ids_are_refused_before_any_request(
    vobiz: AsyncVobiz, router: respx.Router, bad: object
) -> None:
    """A bad call_uuid or stream_id raises InvalidTargetError and sends nothing."""
    route = router.route()
    with pytest.raises(InvalidTargetError):
        await vobiz.stop_stream(bad, "stream-1")  # type: ignore[arg-type]
    with pytest.raises(InvalidTargetError):
        await vobiz.stop_stream("call-1", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidTargetError):
        await vobiz.stop_all_streams(bad)  # type: ignore[arg-type]
    assert route.call_count == 0


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("", id="empty"),
        pytest.param("ftp://x/y", id="ftp"),
        pytest.param("https://", id="no-host"),
        pytest.param("/rec/abc.mp3", id="relative"),
        pytest.param("http://[::1", id="unparseable"),
        pytest.param(b"https://x/y", id="bytes"),
        # urlsplit strips these, but the raw value is what would be sent.
        pytest.param("https://rec/1.mp3\n", id="trailing-newline"),
        pytest.param(" https://rec/1.mp3", id="leading-space"),
        pytest.param("https://rec/1\t.mp3", id="inner-tab"),
        pytest.param("https://rec/1\x00.mp3", id="nul"),
        pytest.param("https://rec/" + "a" * 3000, id="too-long"),
    ],
)
async def test_invalid_recording_url_is_refused(
    vobiz: AsyncVobiz, router: respx.Router, url: object
) -> None:
    """The recording URL must be an http(s) URL with a host."""
    route = router.route()
    with pytest.raises(InvalidTargetError):
        await vobiz.stop_recording("call-1", url=url)  # type: ignore[arg-type]
    assert route.call_count == 0


def test_invalid_target_error_is_a_value_error() -> None:
    """Code that catches ValueError for bad input keeps working."""
    assert issubclass(InvalidTargetError, ValueError)


async def test_non_target_is_refused(vobiz: AsyncVobiz) -> None:
    """stop() only takes the three target types."""
    with pytest.raises(InvalidTargetError, match="expected a Stream"):
        await vobiz.stop("call-1")  # type: ignore[arg-type]


async def test_redirect_is_never_followed(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """A 3xx is an error; the token is never sent to the redirect target."""
    router.delete(STREAM_PATH).respond(307, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(APIStatusError, match="not followed") as info:
        await vobiz.stop_stream("call-1", "stream-1")
    assert info.value.status_code == 307
    assert info.value.attempts == 1


async def test_redirect_not_followed_even_if_user_client_follows(fake_time: FakeTime) -> None:
    """A user's client with follow_redirects=True still never follows ours."""
    router = respx.Router(assert_all_called=False)
    router.delete(f"{ACCOUNT}{STREAM_PATH}").respond(
        302, headers={"Location": "https://evil.example/"}
    )
    evil = router.delete("https://evil.example/").respond(204)
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(router.async_handler), follow_redirects=True
    )
    async with http, AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, http_client=http) as vobiz:
        with pytest.raises(APIStatusError):
            await vobiz.stop_stream("call-1", "stream-1")
    assert evil.call_count == 0


async def test_token_never_in_repr_message_or_logs(
    vobiz: AsyncVobiz,
    router: respx.Router,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not in reprs, error text or any log record at any level, even if a proxy echoes it."""
    caplog.set_level(logging.DEBUG)
    route = router.delete(STREAM_PATH)
    echoed = {"error": f"bad header X-Auth-Token: {AUTH_TOKEN}"}
    route.side_effect = [
        httpx.Response(503, json=echoed),
        httpx.Response(401, json=echoed),
    ]
    router.delete("/Call/call-1/Stream/x/").respond(401, json=echoed)
    with pytest.raises(AuthenticationError) as info:
        await vobiz.stop_stream("call-1", "stream-1")
    (result,) = await vobiz.stop_many([Stream("call-1", "x")])
    assert result.error is not None

    texts = [repr(vobiz), str(vobiz), str(info.value), repr(info.value), repr(result)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.__dict__) for record in caplog.records]
    assert caplog.records, "expected retry and attempt log records"
    for text in texts:
        assert AUTH_TOKEN not in text


async def test_logs_one_debug_per_attempt_and_one_info_per_retry(
    vobiz: AsyncVobiz, router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators can see each attempt at DEBUG and each retry decision at INFO."""
    caplog.set_level(logging.DEBUG, logger="vobiz_async")
    route = router.delete(STREAM_PATH)
    route.side_effect = [httpx.Response(503), httpx.Response(204)]

    await vobiz.stop_stream("call-1", "stream-1")

    ours = [r for r in caplog.records if r.name == "vobiz_async"]
    debug = [r for r in ours if r.levelno == logging.DEBUG]
    info = [r for r in ours if r.levelno == logging.INFO]
    assert [r.getMessage().split(" -> ")[1].split(" ")[0] for r in debug] == ["503", "204"]
    assert f"DELETE /api/v1/Account/{AUTH_ID}{STREAM_PATH}" in debug[0].getMessage()
    assert len(info) == 1
    assert "retrying in" in info[0].getMessage()
    assert "503" in info[0].getMessage()


async def test_info_records_name_their_event_for_progress_displays(
    vobiz: AsyncVobiz, router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's 429 re-send is event "throttled", a retry "retry": told apart by a display."""
    caplog.set_level(logging.INFO, logger="vobiz_async")
    route = router.delete(STREAM_PATH)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(204),
        httpx.Response(503),
        httpx.Response(204),
    ]

    await vobiz.stop_many([Stream("call-1", "stream-1")] * 2, concurrency=1)

    info = [r for r in caplog.records if r.name == "vobiz_async" and r.levelno == logging.INFO]
    assert [getattr(r, "vobiz_event", None) for r in info] == ["throttled", "retry"]
    assert all(isinstance(getattr(r, "vobiz_wait", None), float) for r in info)


# -- lifecycle and configuration ----------------------------------------------------


async def test_use_after_close_raises_clear_error(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """A closed client refuses work instead of failing somewhere deep in httpx."""
    client = make_client(router, fake_time)
    async with client:
        pass
    assert client.is_closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.stop_stream("call-1", "stream-1")
    with pytest.raises(ClientClosedError):
        await client.__aenter__()
    await client.aclose()  # idempotent


async def test_user_http_client_is_not_closed(router: respx.Router) -> None:
    """A client the caller passed in belongs to the caller."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, http_client=http):
        pass
    assert not http.is_closed
    await http.aclose()


class ClosingTransport(httpx.MockTransport):
    """A mock transport that remembers being closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_own_client_on_a_custom_transport(router: respx.Router) -> None:
    """transport= keeps our pooled client but swaps what is under it; we close it."""
    transport = ClosingTransport(router.async_handler)
    route = router.delete(STREAM_PATH).respond(204)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=BASE_URL, transport=transport) as vobiz:
        result = await vobiz.stop_stream("call-1", "stream-1")
        assert not transport.closed
    assert result.outcome is Outcome.STOPPED
    assert route.calls.last.request.headers["X-Auth-Token"] == AUTH_TOKEN
    assert transport.closed


def test_http_client_and_transport_are_exclusive() -> None:
    """Both at once would leave it unclear whose pool is used."""
    with pytest.raises(ConfigurationError, match="not both"):
        AsyncVobiz(
            "MA_X",
            "t",
            http_client=httpx.AsyncClient(),
            transport=httpx.MockTransport(lambda _: httpx.Response(204)),
        )


def test_environment_supplies_credentials_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """VOBIZ_AUTH_ID, VOBIZ_AUTH_TOKEN and VOBIZ_BASE_URL configure a bare AsyncVobiz()."""
    monkeypatch.setenv("VOBIZ_AUTH_ID", "MA_FROMENV")
    monkeypatch.setenv("VOBIZ_AUTH_TOKEN", "envtoken")
    monkeypatch.setenv("VOBIZ_BASE_URL", "http://127.0.0.1:8080/api/v1/")
    client = AsyncVobiz()
    assert client.auth_id == "MA_FROMENV"
    assert client.base_url == "http://127.0.0.1:8080/api/v1"


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VOBIZ_BASE_URL the client talks to the production API."""
    monkeypatch.delenv("VOBIZ_BASE_URL", raising=False)
    assert AsyncVobiz("MA_X", "t").base_url == "https://api.vobiz.ai/api/v1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({}, "VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN", id="both"),
        pytest.param({"VOBIZ_AUTH_ID": "MA_X"}, "VOBIZ_AUTH_TOKEN", id="token"),
        pytest.param({"VOBIZ_AUTH_TOKEN": "t"}, "VOBIZ_AUTH_ID", id="id"),
    ],
)
def test_missing_credentials_name_the_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    """The error tells the user exactly which variable to set."""
    monkeypatch.delenv("VOBIZ_AUTH_ID", raising=False)
    monkeypatch.delenv("VOBIZ_AUTH_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError, match=f"set {named} "):
        AsyncVobiz()


def test_invalid_auth_id_refused_at_construction() -> None:
    """auth_id is a path segment too, and is checked like one: a bad one is configuration."""
    with pytest.raises(ConfigurationError, match="auth_id"):
        AsyncVobiz("MA/../x", "t")


def test_bad_token_refused_without_echoing_it() -> None:
    """A token with a newline would split headers; the error never shows it."""
    with pytest.raises(ConfigurationError) as info:
        AsyncVobiz("MA_X", "secret\nInjected: yes")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("base_url", "accepted"),
    [
        pytest.param("https://api.example.com/v1", True, id="https"),
        pytest.param("http://127.0.0.1:9/api", True, id="loopback-v4"),
        pytest.param("http://127.9.9.9/api", True, id="loopback-range"),
        pytest.param("http://localhost:1/api", True, id="localhost"),
        pytest.param("http://[::1]:8080/api", True, id="loopback-v6"),
        pytest.param("http://api.vobiz.ai/api/v1", False, id="plain-http-remote"),
        pytest.param("http://10.0.0.5/api", False, id="plain-http-private"),
        pytest.param("ftp://api.vobiz.ai/", False, id="ftp"),
        pytest.param("https://api.vobiz.ai/v1?x=1", False, id="query"),
        pytest.param("https://exa mple.com", False, id="space"),
        pytest.param("https://[::1", False, id="unparseable"),
    ],
)
def test_base_url_must_not_leak_token_in_clear(base_url: str, accepted: bool) -> None:
    """Plain http is refused unless it stays on this machine."""
    if accepted:
        assert AsyncVobiz("MA_X", "t", base_url=base_url).base_url == base_url
    else:
        with pytest.raises(ConfigurationError):
            AsyncVobiz("MA_X", "t", base_url=base_url)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"timeout": 0}, id="timeout-zero"),
        pytest.param({"timeout": -1.0}, id="timeout-negative"),
        pytest.param({"timeout": True}, id="timeout-bool"),
        pytest.param({"timeout": "10"}, id="timeout-str"),
        pytest.param({"max_connections": 0}, id="pool-zero"),
        pytest.param({"max_connections": 2.5}, id="pool-float"),
        pytest.param({"retry": {"max_attempts": 3}}, id="retry-dict"),
        pytest.param({"http_client": "x"}, id="http_client-str"),
        pytest.param({"transport": 42}, id="transport-int"),
        pytest.param({"sleep": None}, id="sleep-none"),
        pytest.param({"clock": 1.0}, id="clock-float"),
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, object]) -> None:
    """Every bad constructor argument is a ConfigurationError (a ValueError) naming it."""
    (name,) = kwargs
    with pytest.raises(ConfigurationError, match=name):
        AsyncVobiz("MA_X", "t", **kwargs)  # type: ignore[arg-type]


def test_configuration_reads_back() -> None:
    """What the client was built with is readable, so apps can log their setup."""
    policy = RetryPolicy(max_attempts=2)
    client = AsyncVobiz(
        "MA_X", "t", base_url="https://api.example.com/v1/", timeout=3, retry=policy
    )
    assert (client.auth_id, client.base_url) == ("MA_X", "https://api.example.com/v1")
    assert client.timeout == 3.0
    assert client.retry is policy
    assert client.max_connections == 100


def test_results_and_targets_are_frozen_values() -> None:
    """Targets hold what they are given, never raise, and compare by value."""
    bad = Stream("a/b", "")
    assert bad == Stream("a/b", "")
    assert Recording("c").url is None
    with pytest.raises(AttributeError):
        bad.call_uuid = "x"  # type: ignore[misc]
