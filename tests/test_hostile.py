"""
Honest results and no leaks, against hostile servers on loopback sockets.

Each test here reproduces something an adversary made the client do: report a
stop that did not happen, let the token out, or let one input sink a batch.
They run through the default transport (httpx on aiohttp) on a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import pickle
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest

from vobiz_async import (
    APIConnectionError,
    APIStatusError,
    AsyncVobiz,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    Outcome,
    RateLimitError,
    RetryPolicy,
    Stream,
    UnexpectedResponseError,
    VobizError,
)

from .conftest import AUTH_ID, AUTH_TOKEN, Behaviour, FakeTime, error_chain

Serve = Callable[[Behaviour], Awaitable[str]]
ONCE = RetryPolicy(max_attempts=1)


def answer(status_line: bytes, body: bytes = b"", headers: bytes = b"") -> Behaviour:
    """A behaviour that answers every request with the same raw response."""

    async def reply(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            status_line
            + b"\r\n"
            + headers
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()

    return reply


def client(base_url: str, fake_time: FakeTime | None = None, **kwargs: object) -> AsyncVobiz:
    options: dict[str, object] = {"base_url": base_url, "retry": ONCE}
    if fake_time is not None:
        options.update(sleep=fake_time.sleep, clock=fake_time.clock)
    options.update(kwargs)
    return AsyncVobiz(AUTH_ID, AUTH_TOKEN, **options)  # type: ignore[arg-type]


def assert_no_token(*texts: object) -> None:
    """Not the token, nor any 8-character piece of it, in any form we can think of."""
    pieces = {AUTH_TOKEN[i : i + 8] for i in range(len(AUTH_TOKEN) - 7)}
    for text in texts:
        shown = str(text)
        for piece in pieces | {quote(AUTH_TOKEN, safe="")}:
            assert piece not in shown, f"token piece {piece!r} in {shown[:300]!r}"


def streams(count: int) -> list[Stream]:
    return [Stream(f"call-{i}", f"s-{i}") for i in range(count)]


# -- outcomes that are true ---------------------------------------------------------


async def test_html_404_from_a_wrong_base_url_is_failed_not_not_found(raw_server: Serve) -> None:
    """A server answering every path with an HTML 404 is not Vobiz saying "nothing to stop"."""
    html = b"<html><body><h1>404 Not Found</h1><p>nginx</p></body></html>"
    base_url = await raw_server(
        answer(b"HTTP/1.1 404 Not Found", html, b"Content-Type: text/html\r\n")
    )
    async with client(base_url) as vobiz:
        report = await vobiz.stop_many(streams(5))
    assert report.counts[Outcome.NOT_FOUND] == 0
    assert report.counts[Outcome.FAILED] == 5
    error = report.results[0].error
    assert isinstance(error, UnexpectedResponseError)
    assert error.status_code == 404
    assert "not from the Vobiz API" in str(error)
    assert "base URL" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"api_id": "a-1", "error": "Stream not found"}', id="flat"),
        pytest.param(
            b'{"status": "error", "error": {"code": "NOT_FOUND", "message": "gone"}}',
            id="nested",
        ),
    ],
)
async def test_404_in_a_vobiz_error_shape_is_not_found(raw_server: Serve, body: bytes) -> None:
    """Either documented error body on a 404 is the API's own answer: NOT_FOUND."""
    base_url = await raw_server(
        answer(b"HTTP/1.1 404 Not Found", body, b"Content-Type: application/json\r\n")
    )
    async with client(base_url) as vobiz:
        result = await vobiz.stop_stream("call-1", "s-1")
    assert result.outcome is Outcome.NOT_FOUND


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>nginx</html>", id="html"),
        pytest.param(b'{"detail": "Not Found"}', id="json-not-vobiz"),
        pytest.param(b'["a"]', id="json-list"),
    ],
)
async def test_404_without_a_vobiz_body_is_failed(raw_server: Serve, body: bytes) -> None:
    """Only the API's error shapes make a 404 a NOT_FOUND; a router's 404 is a failure."""
    base_url = await raw_server(answer(b"HTTP/1.1 404 Not Found", body))
    async with client(base_url) as vobiz:
        with pytest.raises(UnexpectedResponseError, match="check the base URL"):
            await vobiz.stop_stream("call-1", "s-1")


async def test_captive_portal_200_html_is_not_a_stop(raw_server: Serve) -> None:
    """A 2xx must be empty or JSON to count: a portal's HTML page stopped nothing."""
    portal = b"<html><body>Please log in to the hotel wifi</body></html>"
    base_url = await raw_server(answer(b"HTTP/1.1 200 OK", portal, b"Content-Type: text/html\r\n"))
    async with client(base_url) as vobiz:
        (result,) = await vobiz.stop_many(streams(1))
    assert result.outcome is Outcome.FAILED
    assert isinstance(result.error, UnexpectedResponseError)
    assert result.status_code == 200
    assert "not from the Vobiz API" in str(result.error)


async def test_400_with_retry_after_does_not_blame_retry_after(raw_server: Serve) -> None:
    """A 400 is never retried, so its message never says Retry-After was the reason."""
    base_url = await raw_server(
        answer(b"HTTP/1.1 400 Bad Request", b'{"error": "bad id"}', b"Retry-After: 600\r\n")
    )
    async with client(base_url) as vobiz:
        with pytest.raises(BadRequestError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert "max_retry_after" not in str(info.value)
    assert "bad id" in str(info.value)


async def test_targets_failed_by_a_brake_say_so_with_zero_attempts(
    raw_server: Serve, fake_time: FakeTime
) -> None:
    """After a 401, the rest fail unsent: their errors say so and carry attempts=0."""
    base_url = await raw_server(answer(b"HTTP/1.1 401 Unauthorized", b'{"error": "bad token"}'))
    async with client(base_url, fake_time) as vobiz:
        report = await vobiz.stop_many(streams(20), concurrency=2)
    sent = [r for r in report if r.attempts > 0]
    unsent = [r for r in report if r.attempts == 0]
    assert len(sent) <= 2
    assert len(unsent) >= 18
    for result in unsent:
        assert isinstance(result.error, AuthenticationError)
        assert result.error.attempts == 0
        assert "not sent" in str(result.error)
        for other in sent:
            assert f"/Call/{other.target.call_uuid}/" not in str(result.error)


async def test_refused_connection_cause_chain_has_no_connect_timeout() -> None:
    """Refused is refused: httpx-aiohttp's ConnectTimeout label is not in the chain."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}/api/v1") as vobiz:
        with pytest.raises(APIConnectionError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    names = [type(e).__name__ for e in error_chain(info.value, causes_only=True)]
    assert "ConnectTimeout" not in names, names
    assert "Timeout" not in str(info.value)


# -- one bad input never sinks the batch --------------------------------------------


async def test_huge_identifier_is_that_targets_failure_only(raw_server: Serve) -> None:
    """A 64 KiB id is refused with a clear error; the batch reports every target."""
    base_url = await raw_server(answer(b"HTTP/1.1 204 No Content"))
    huge = Stream("c" * 65536, "s")
    async with client(base_url) as vobiz:
        report = await vobiz.stop_many([*streams(3), huge, *streams(3)])
    assert len(report) == 7
    assert report.counts[Outcome.STOPPED] == 6
    failed = report.failed[0]
    assert failed.target == huge
    assert "too long" in str(failed.error)
    assert failed.attempts == 0


async def test_error_raised_while_sending_is_that_targets_failure(fake_time: FakeTime) -> None:
    """Whatever raises inside one target's send (here a caller's hook) fails that target only."""
    import httpx

    async def hook(request: httpx.Request) -> None:
        if "boom" in request.url.path:
            raise RuntimeError("hook exploded")

    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(204)),
        event_hooks={"request": [hook]},
    )
    async with http, client("https://api.vobiz.test/api/v1", fake_time, http_client=http) as vobiz:
        report = await vobiz.stop_many([Stream("ok", "s"), Stream("boom", "s"), Stream("b", "s")])
        with pytest.raises(VobizError, match="hook exploded"):
            await vobiz.stop_stream("boom", "s")
    assert [r.outcome for r in report] == [Outcome.STOPPED, Outcome.FAILED, Outcome.STOPPED]
    assert "RuntimeError: hook exploded" in str(report.results[1].error)


async def test_aclose_while_retrying_is_client_closed(raw_server: Serve) -> None:
    """Closing the client under a retrying stop ends it with ClientClosedError."""
    from vobiz_async import ClientClosedError

    base_url = await raw_server(answer(b"HTTP/1.1 503 Service Unavailable", b""))
    clients: list[AsyncVobiz] = []

    async def close_while_waiting(_: float) -> None:
        await clients[0].aclose()

    clients.append(client(base_url, retry=RetryPolicy(max_attempts=5), sleep=close_while_waiting))
    with pytest.raises(ClientClosedError) as info:
        await clients[0].stop_stream("call-1", "s-1")
    assert info.value.attempts == 1


async def test_aclose_during_a_batch_gives_failed_results(raw_server: Serve) -> None:
    """In a batch, a client closed mid-way fails the remaining targets, no ExceptionGroup."""
    from vobiz_async import ClientClosedError

    base_url = await raw_server(answer(b"HTTP/1.1 204 No Content"))
    vobiz = client(base_url)

    async def close_after_three(result: object) -> None:
        close_after_three.seen += 1  # type: ignore[attr-defined]
        if close_after_three.seen == 3:  # type: ignore[attr-defined]
            await vobiz.aclose()

    close_after_three.seen = 0  # type: ignore[attr-defined]
    report = await vobiz.stop_many(streams(10), concurrency=1, on_result=close_after_three)
    assert len(report) == 10
    assert report.counts[Outcome.STOPPED] == 3
    assert all(isinstance(r.error, ClientClosedError) for r in report.failed)


async def test_infinite_rate_limit_means_no_limit(raw_server: Serve) -> None:
    """rate_limit=inf is "as fast as allowed", not a ZeroDivisionError."""
    base_url = await raw_server(answer(b"HTTP/1.1 204 No Content"))
    async with client(base_url) as vobiz:
        report = await vobiz.stop_many(streams(5), rate_limit=float("inf"))
    assert report.ok
    with pytest.raises(ValueError, match="rate_limit"):
        await vobiz.stop_many(streams(1), rate_limit=float("nan"))


async def test_huge_concurrency_costs_what_is_in_flight(raw_server: Serve) -> None:
    """concurrency=200000 for 10 targets starts a handful of workers and widens no pool for good."""
    base_url = await raw_server(answer(b"HTTP/1.1 204 No Content"))
    peak_workers = 0

    def count_workers(_: object) -> None:
        nonlocal peak_workers
        alive = [t for t in asyncio.all_tasks() if "fan_out" in repr(t.get_coro())]
        peak_workers = max(peak_workers, len(alive))

    async with client(base_url, max_connections=4) as vobiz:
        report = await vobiz.stop_many(streams(10), concurrency=200_000, on_result=count_workers)
        assert vobiz.max_connections == 4
    assert report.ok
    assert 1 <= peak_workers <= 11


# -- the token never escapes --------------------------------------------------------


async def test_echoed_headers_in_a_malformed_status_line_do_not_leak(
    raw_server: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer echoing our request into a broken status line: no token in error, log or cause."""
    caplog.set_level(logging.DEBUG)

    async def echo(_: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        head = request.partition(b"\r\n\r\n")[0].replace(b"\r\n", b" ")
        writer.write(b"HTTP/1.1 BROKEN " + head + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    base_url = await raw_server(echo)
    async with client(base_url, retry=RetryPolicy(max_attempts=2, wait_initial=0.01)) as vobiz:
        with pytest.raises(APIConnectionError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    chain = error_chain(info.value)
    assert_no_token(*chain, *(repr(e) for e in chain), *(e.args for e in chain))
    assert_no_token(*(r.getMessage() for r in caplog.records))


# The snippet keeps 117 characters: these offsets cut the token after 29, 20 and 10 of them.
@pytest.mark.parametrize("offset", [60, 85, 94, 104])
async def test_token_straddling_the_snippet_edge_does_not_leak(
    raw_server: Serve, offset: int
) -> None:
    """Redaction runs before truncation: no piece of the token survives the cut."""
    body = b"<p>" + b"x" * offset + AUTH_TOKEN.encode() + b"y" * 200 + b"</p>"
    base_url = await raw_server(answer(b"HTTP/1.1 400 Bad Request", body))
    async with client(base_url) as vobiz:
        with pytest.raises(BadRequestError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert_no_token(str(info.value))


async def test_url_encoded_token_in_location_does_not_leak(raw_server: Serve) -> None:
    """A redirect echoing the token URL-encoded shows no piece of it."""
    location = b"https://evil.example/steal?t=" + quote(AUTH_TOKEN, safe="").encode()
    base_url = await raw_server(
        answer(b"HTTP/1.1 302 Found", b"", b"Location: " + location + b"\r\n")
    )
    async with client(base_url) as vobiz:
        with pytest.raises(APIStatusError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert "not followed" in str(info.value)
    assert_no_token(str(info.value))


async def test_errors_hold_no_clear_token_and_pickle_without_it(raw_server: Serve) -> None:
    """The response an error keeps, its request, and its pickled form hold no token."""
    echoed = b'{"error": "bad header X-Auth-Token: ' + AUTH_TOKEN.encode() + b'"}'
    base_url = await raw_server(
        answer(b"HTTP/1.1 429 Too Many Requests", echoed, b"Retry-After: 600\r\n")
    )
    async with client(base_url) as vobiz:
        (result,) = await vobiz.stop_many(streams(1))
    error = result.error
    assert isinstance(error, RateLimitError)
    assert error.response is not None
    assert_no_token(error.response.request.headers, error.response.text, error.response.headers)

    data = pickle.dumps(error)
    assert AUTH_TOKEN.encode() not in data
    copy = pickle.loads(data)  # noqa: S301 - our own error, pickled just above
    assert type(copy) is RateLimitError
    assert (copy.status_code, copy.retry_after, copy.attempts) == (429, 600.0, 1)
    assert str(copy) == str(error)
    assert_no_token(str(copy))


def test_base_url_with_userinfo_is_refused() -> None:
    """https://user:pw@host would be sent as Basic auth and shown in repr: refused."""
    with pytest.raises(ConfigurationError, match="user") as info:
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url="https://user:pw@api.vobiz.ai/api/v1")
    assert "pw" not in str(info.value)


# -- bounded by construction ---------------------------------------------------------


async def test_huge_body_is_not_read_whole(raw_server: Serve) -> None:
    """A 500 MB answer is not read: the client stops after a small cap and fails the stop."""
    written = 0
    chunk = b"<p>" + b"x" * 65533

    async def flood(_: int, __: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        total = 500 * 1024 * 1024
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        try:
            while written < total:
                writer.write(chunk)
                written += len(chunk)
                await writer.drain()
        except ConnectionError:
            return

    base_url = await raw_server(flood)
    async with client(base_url) as vobiz:
        (result,) = await vobiz.stop_many(streams(1))
    assert result.outcome is Outcome.FAILED
    assert written < 50 * 1024 * 1024, "the client kept reading"


async def test_compressed_body_is_neither_asked_for_nor_decoded(raw_server: Serve) -> None:
    """We ask for identity; a gzip bomb sent anyway is not inflated into memory."""
    seen: list[bytes] = []
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))

    async def reply(_: int, request: bytes, writer: asyncio.StreamWriter) -> None:
        seen.append(request)
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb
        )
        await writer.drain()

    base_url = await raw_server(reply)
    async with client(base_url) as vobiz:
        with pytest.raises(APIStatusError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert b"accept-encoding: identity" in seen[0].lower()
    assert info.value.response is not None
    assert len(info.value.response.content) <= 64 * 1024


# -- found by review: each failed before its fix -----------------------------------


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Busy"])
async def test_deeply_nested_json_is_that_targets_failure(
    raw_server: Serve, status_line: bytes
) -> None:
    """A body of fifty thousand `[` (RecursionError in json) fails one target, not the batch."""
    base_url = await raw_server(answer(status_line, b"[" * 50_000))
    async with client(base_url) as vobiz:
        report = await vobiz.stop_many(streams(3))
    assert report.counts[Outcome.FAILED] == 3
    assert all(isinstance(r.error, APIStatusError) for r in report)


async def test_a_frameworks_json_404_is_not_vobiz(raw_server: Serve) -> None:
    """Spring's default 404 has an "error" key too; only Vobiz's shapes are NOT_FOUND."""
    body = b'{"timestamp": "2026-01-01", "status": 404, "error": "Not Found", "path": "/x"}'
    base_url = await raw_server(answer(b"HTTP/1.1 404 Not Found", body))
    async with client(base_url) as vobiz:
        (result,) = await vobiz.stop_many(streams(1))
    assert result.outcome is Outcome.FAILED
    assert isinstance(result.error, UnexpectedResponseError)


async def test_token_in_the_reason_phrase_is_masked_in_the_response(raw_server: Serve) -> None:
    """A status line echoing the token: not in the message, nor in the response we keep."""
    line = b"HTTP/1.1 400 echo X-Auth-Token " + AUTH_TOKEN.encode()
    base_url = await raw_server(answer(line, b'{"error": "no"}'))
    async with client(base_url) as vobiz:
        with pytest.raises(BadRequestError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    response = info.value.response
    assert response is not None
    assert_no_token(str(info.value), repr(response), response.reason_phrase)


async def test_token_cut_by_the_body_cap_leaves_no_piece(raw_server: Serve) -> None:
    """The body is cut at 64 KiB; a token straddling the cut leaves nothing behind."""
    body = b"x" * (64 * 1024 - 12) + AUTH_TOKEN.encode() + b"y" * 100
    base_url = await raw_server(answer(b"HTTP/1.1 400 Bad Request", body))
    async with client(base_url) as vobiz:
        with pytest.raises(BadRequestError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert info.value.response is not None
    assert_no_token(info.value.response.content.decode())


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(quote(AUTH_TOKEN).encode(), id="quote-keeping-slash"),
        pytest.param(base64.b64encode(b"X-Auth-Token: " + AUTH_TOKEN.encode()), id="base64"),
        pytest.param(base64.b64encode(b"Token: " + AUTH_TOKEN.encode()), id="base64-shifted"),
    ],
)
async def test_other_encodings_of_the_token_are_masked(raw_server: Serve, echo: bytes) -> None:
    """URL-encoded with "/" kept, and base64 at any alignment: masked in the message."""
    base_url = await raw_server(answer(b"HTTP/1.1 400 Bad Request", b"<p>next=" + echo + b"</p>"))
    async with client(base_url) as vobiz:
        with pytest.raises(BadRequestError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert echo.decode()[6:-6] not in str(info.value)
    assert info.value.response is not None
    assert echo.decode()[6:-6] not in info.value.response.text
