"""
vobiz_async.testing.FakeVobiz: state, records and fault knobs, in process and on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import attrs
import httpx
import pytest

from vobiz_async import (
    AllStreams,
    APIConnectionError,
    APITimeoutError,
    AsyncVobiz,
    AuthenticationError,
    Outcome,
    RateLimitError,
    Recording,
    RetryPolicy,
    ServerError,
    Stream,
)
from vobiz_async._routes import ROUTES, Route
from vobiz_async.testing import FakeVobiz, Faults

ONCE = RetryPolicy(max_attempts=1)


@pytest.fixture
def fake() -> FakeVobiz:
    fake = FakeVobiz()
    fake.add_call("call-1", streams=["s-1", "s-2"], recordings=["https://rec/1", "https://rec/2"])
    return fake


def client_for(fake: FakeVobiz, **kwargs: object) -> AsyncVobiz:
    options: dict[str, object] = {"http_client": fake.http_client(), "retry": ONCE}
    options.update(kwargs)
    return AsyncVobiz(fake.auth_id, fake.auth_token, **options)  # type: ignore[arg-type]


@pytest.fixture
async def vobiz(fake: FakeVobiz) -> AsyncIterator[AsyncVobiz]:
    async with client_for(fake) as client:
        yield client


# -- state ----------------------------------------------------------------------


async def test_stream_stops_once_then_404(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """Stopping a live stream is 204; stopping it again is 404 with the Vobiz body."""
    first = await vobiz.stop_stream("call-1", "s-1")
    second = await vobiz.stop_stream("call-1", "s-1")

    assert first.outcome is Outcome.STOPPED
    assert second.outcome is Outcome.NOT_FOUND
    assert second.api_id is not None
    assert fake.active_streams("call-1") == {"s-2"}
    assert fake.times_stopped(Stream("call-1", "s-1")) == 1


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(Stream("call-1", "nope"), id="unknown-stream"),
        pytest.param(Stream("no-call", "s-1"), id="unknown-call"),
        pytest.param(AllStreams("no-call"), id="all-on-unknown-call"),
        pytest.param(Recording("call-1", "https://rec/unknown"), id="unknown-recording"),
    ],
)
async def test_unknown_ids_answer_404(vobiz: AsyncVobiz, target: Stream) -> None:
    """Only registered calls, streams and recordings exist."""
    assert (await vobiz.stop(target)).outcome is Outcome.NOT_FOUND


async def test_stop_all_streams_stops_what_is_active(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """Stop-all answers 204 every time and leaves no stream running."""
    assert (await vobiz.stop_all_streams("call-1")).outcome is Outcome.STOPPED
    assert (await vobiz.stop_all_streams("call-1")).outcome is Outcome.STOPPED
    assert fake.active_streams("call-1") == set()
    assert fake.times_stopped(AllStreams("call-1")) == 1
    assert (await vobiz.stop_stream("call-1", "s-2")).outcome is Outcome.NOT_FOUND


async def test_recordings_stop_one_by_url_or_all(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """A URL stops that recording only; no URL stops the rest."""
    await vobiz.stop_recording("call-1", url="https://rec/1")
    assert fake.active_recordings("call-1") == {"https://rec/2"}
    await vobiz.stop_recording("call-1")
    assert fake.active_recordings("call-1") == set()
    assert fake.times_stopped(Recording("call-1", "https://rec/1")) == 1
    assert fake.times_stopped(Recording("call-1")) == 1


async def test_open_world_every_id_exists_until_stopped(vobiz: AsyncVobiz) -> None:
    """In the open world any stream can be stopped, exactly once."""
    fake = FakeVobiz(open_world=True)
    async with client_for(fake) as client:
        results = [await client.stop(t) for t in [Stream("x", "y"), Stream("x", "y")]]
        await client.stop_all_streams("z")
        after_all = await client.stop_stream("z", "any")
        recs = [await client.stop_recording("x", url="https://r/1") for _ in range(2)]
        await client.stop_recording("x")
        after_all_recs = await client.stop_recording("x", url="https://r/2")
    assert [r.outcome for r in results] == [Outcome.STOPPED, Outcome.NOT_FOUND]
    assert after_all.outcome is Outcome.NOT_FOUND
    assert [r.outcome for r in recs] == [Outcome.STOPPED, Outcome.NOT_FOUND]
    assert after_all_recs.outcome is Outcome.NOT_FOUND
    assert fake.stopped_more_than_once() == {}


@pytest.mark.parametrize(
    ("auth_id", "auth_token"),
    [
        pytest.param("MA_OTHER", "fake-vobiz-token", id="wrong-id"),
        pytest.param("MA_FAKEVOBIZ", "wrong-token", id="wrong-token"),
    ],
)
async def test_wrong_credentials_answer_401(auth_id: str, auth_token: str) -> None:
    """The fake checks both auth headers, as Vobiz does."""
    fake = FakeVobiz()
    async with AsyncVobiz(auth_id, auth_token, http_client=fake.http_client(), retry=ONCE) as v:
        with pytest.raises(AuthenticationError):
            await v.stop_stream("call-1", "s-1")


async def test_unknown_path_and_method_answer_404(fake: FakeVobiz) -> None:
    """Anything but the three DELETE endpoints is not found."""
    async with fake.http_client() as http:
        base = "https://api.vobiz.ai/api/v1/Account/MA_FAKEVOBIZ"
        assert (await http.get(f"{base}/Call/call-1/Stream/s-1/")).status_code == 404
        assert (await http.delete(f"{base}/Call/call-1/Hangup/")).status_code == 404
        assert (await http.delete(f"{base}/Call/call-1/Stream/s-1")).status_code == 404


async def test_records_every_request(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """Users can assert on what their code sent."""
    await vobiz.stop_stream("call-1", "s-1")
    await vobiz.stop_recording("call-1", url="https://rec/1")
    first, second = fake.requests
    assert first.auth_id == "MA_FAKEVOBIZ"
    assert first.target == Stream("call-1", "s-1")
    assert first.status == 204
    assert second.target == Recording("call-1", "https://rec/1")
    assert json.loads(second.body) == {"URL": "https://rec/1"}
    assert fake.request_count == 2


@pytest.mark.parametrize("route", ROUTES.values(), ids=lambda route: route.kind)
async def test_every_route_has_a_handler(route: Route) -> None:
    """Each route in the library's table is parsed back (query included) and applied."""
    fake = FakeVobiz(open_world=True)
    request = route.request_type(**{name: f"{name}-1" for name in path_fields(route)})
    if route.query:
        request = attrs.evolve(request, offset=3)  # a query that is not the default
    async with fake.http_client() as http:
        answer = await http.request(
            route.method,
            f"https://api.vobiz.ai/api/v1/Account/{fake.auth_id}/"
            + route.path_for(request)
            + route.query_for(request),
            json=route.json_for(request),
            headers={"X-Auth-ID": fake.auth_id, "X-Auth-Token": fake.auth_token},
        )
    (seen,) = fake.requests
    assert seen.target == request
    if route.method == "GET":
        assert answer.status_code == 200
        assert isinstance(answer.json(), dict)
        assert "offset=3" in seen.query
    else:
        assert answer.status_code == 204
        assert fake.times_stopped(request) == 1


def path_fields(route: Route) -> list[str]:
    """The fields a route's path names: enough to build its request."""
    return [name for is_field, name in route.segments if is_field]


# -- faults, in process ---------------------------------------------------------------


async def test_fault_503(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """error_503 answers 503 with an HTML body and applies nothing."""
    fake.faults = Faults(error_503=1.0)
    with pytest.raises(ServerError, match="503"):
        await vobiz.stop_stream("call-1", "s-1")
    assert fake.active_streams("call-1") == {"s-1", "s-2"}
    assert fake.requests[-1].fault == "error_503"


async def test_fault_429_with_retry_after(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """rate_limit_429 answers in the nested error shape with the given Retry-After."""
    fake.faults = Faults(rate_limit_429=1.0, retry_after=2.5)
    with pytest.raises(RateLimitError) as info:
        await vobiz.stop_stream("call-1", "s-1")
    assert info.value.retry_after == 2.5
    assert "Rate limit exceeded (RATE_LIMIT)" in str(info.value)


async def test_fault_drop_before_applies_nothing(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """drop_before loses the request: no response and no state change."""
    fake.faults = Faults(drop_before=1.0)
    with pytest.raises(APIConnectionError):
        await vobiz.stop_stream("call-1", "s-1")
    assert fake.times_stopped(Stream("call-1", "s-1")) == 0


async def test_fault_drop_after_applies_the_stop(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """drop_after applies the stop and loses the answer; a retry then finds nothing."""
    fake.faults = Faults(drop_after=1.0)
    with pytest.raises(APIConnectionError):
        await vobiz.stop_stream("call-1", "s-1")
    assert fake.times_stopped(Stream("call-1", "s-1")) == 1
    fake.faults = Faults()
    assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.NOT_FOUND


async def test_fault_delay_passes_client_timeout(fake: FakeVobiz) -> None:
    """Delay holds the answer past a short client timeout."""
    fake.faults = Faults(delay=1.0, delay_seconds=30.0)
    async with client_for(fake, timeout=0.05) as vobiz:
        with pytest.raises(APITimeoutError):
            await vobiz.stop_stream("call-1", "s-1")


async def test_fault_hang_never_answers(fake: FakeVobiz) -> None:
    """Hang accepts the request and never answers."""
    fake.faults = Faults(hang=1.0)
    async with client_for(fake, timeout=0.05) as vobiz:
        with pytest.raises(APITimeoutError):
            await vobiz.stop_stream("call-1", "s-1")
    assert fake.requests[-1].fault == "hang"


async def test_fault_latency_delays_every_answer(fake: FakeVobiz, vobiz: AsyncVobiz) -> None:
    """Latency applies to every answered request."""
    fake.faults = Faults(latency=0.05)
    started = time.perf_counter()
    await vobiz.stop_stream("call-1", "s-1")
    assert time.perf_counter() - started >= 0.05


async def test_faults_are_seeded_and_reproducible() -> None:
    """The same seed draws the same faults in the same order."""
    faults = Faults(error_503=0.3, rate_limit_429=0.2, drop_before=0.1)
    draws = [await faults_drawn(FakeVobiz(faults=faults, seed=seed), 50) for seed in (4, 4, 5)]
    assert draws[0] == draws[1]
    assert draws[0] != draws[2]
    assert len(set(draws[0])) == 4
    # Pinned: a seed draws the same faults from one version to the next, so a run
    # that failed (the demo, the soak suite) can be replayed with its seed.
    assert draws[0][:7] == [
        "error_503",
        "error_503",
        "rate_limit",
        "error_503",
        "error_503",
        "rate_limit",
        None,
    ]


async def faults_drawn(fake: FakeVobiz, count: int) -> list[str | None]:
    """Send `count` requests; the fault each one met, as the fake recorded it."""
    async with fake.http_client() as http:
        for _ in range(count):
            with contextlib.suppress(httpx.RemoteProtocolError):  # drop_before hangs up
                await http.delete("https://api.vobiz.ai/api/v1/Account/MA_FAKEVOBIZ/")
    return [request.fault for request in fake.requests]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"error_503": 1.5}, id="probability-over-1"),
        pytest.param({"latency": -1}, id="negative-latency"),
        pytest.param({"keepalive_requests": 0}, id="keepalive-zero"),
    ],
)
def test_nonsense_faults_are_refused(kwargs: dict[str, float]) -> None:
    """A fault setting that cannot mean anything fails loudly."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Faults(**kwargs)  # type: ignore[arg-type]


# -- on a real socket ----------------------------------------------------------------


async def test_serves_on_loopback_socket(fake: FakeVobiz) -> None:
    """serve() yields a 127.0.0.1 base URL; /_fake/stats keys each target as kind|fields."""
    async with fake.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        async with AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz:
            await vobiz.stop_recording("call-1", url="https://rec/1")
            report = await vobiz.stop_many(
                [Stream("call-1", "s-1"), Stream("call-1", "s-1"), Recording("call-1")]
            )
            await vobiz.stop_all_streams("call-1")
        async with httpx.AsyncClient() as http:
            stats = (await http.get(base_url.replace("/api/v1", "/_fake/stats"))).json()
    assert [r.outcome for r in report] == [Outcome.STOPPED, Outcome.NOT_FOUND, Outcome.STOPPED]
    assert stats["stopped"] == {
        "recording|call-1|https://rec/1": 1,
        "stream|call-1|s-1": 1,
        "recording|call-1": 1,
        "all_streams|call-1": 1,
    }
    assert stats["stopped_more_than_once"] == 0


async def test_socket_drop_closes_the_connection(fake: FakeVobiz) -> None:
    """On a socket, a dropped request is a real hang-up the client must survive."""
    fake.faults = Faults(drop_before=1.0)
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url, retry=ONCE) as v,
    ):
        with pytest.raises(APIConnectionError):
            await v.stop_stream("call-1", "s-1")


async def test_socket_hang_ends_in_client_timeout(fake: FakeVobiz) -> None:
    """On a socket, a hang holds the connection open without an answer."""
    fake.faults = Faults(hang=1.0)
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url, retry=ONCE, timeout=0.1) as v,
    ):
        with pytest.raises(APITimeoutError):
            await v.stop_stream("call-1", "s-1")


async def test_keepalive_requests_closes_after_k(fake: FakeVobiz) -> None:
    """keepalive_requests=K answers the K-th request on a connection with Connection: close."""
    fake = FakeVobiz(open_world=True, faults=Faults(keepalive_requests=3))
    async with fake.serve() as base_url:
        headers = {"X-Auth-ID": fake.auth_id, "X-Auth-Token": fake.auth_token}
        async with httpx.AsyncClient(headers=headers) as http:
            answers = [
                await http.delete(f"{base_url}/Account/{fake.auth_id}/Call/c{i}/Stream/s/")
                for i in range(6)
            ]
    closes = [r.headers.get("connection") == "close" for r in answers]
    assert closes == [False, False, True, False, False, True]


async def test_idle_keepalive_connections_are_closed(fake: FakeVobiz) -> None:
    """idle_timeout closes a kept-alive connection the client left idle."""
    async with fake.serve(idle_timeout=0.05) as base_url:
        port = int(base_url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = (
            f"DELETE /api/v1/Account/{fake.auth_id}/Call/call-1/Stream/s-1/ HTTP/1.1\r\n"
            f"Host: x\r\nX-Auth-ID: {fake.auth_id}\r\nX-Auth-Token: {fake.auth_token}\r\n\r\n"
        )
        writer.write(request.encode())
        status = await reader.readline()
        rest = await asyncio.wait_for(reader.read(), timeout=5)  # returns at the server's close
        writer.close()
    assert status.startswith(b"HTTP/1.1 204")
    assert b"\r\n\r\n" in rest


async def test_serve_refuses_non_loopback_host(fake: FakeVobiz) -> None:
    """The fake never listens beyond this machine."""
    with pytest.raises(ValueError, match="loopback"):
        async with fake.serve(host="0.0.0.0"):  # noqa: S104
            pass


def test_serves_as_its_own_process() -> None:
    """Python -m vobiz_async.testing serve prints its URL and answers until terminated."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vobiz_async.testing", "serve", "--port", "0", "--open-world"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        headers = {"X-Auth-ID": "MA_FAKEVOBIZ", "X-Auth-Token": "fake-vobiz-token"}
        url = f"{base_url}/Account/MA_FAKEVOBIZ/Call/c/Stream/s/"
        assert httpx.delete(url, headers=headers).status_code == 204
        assert httpx.delete(url, headers=headers).status_code == 404
        stats = httpx.get(base_url.replace("/api/v1", "/_fake/stats")).json()
        assert stats["requests"] == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        proc.stdout.close()


def test_process_refuses_non_loopback_host() -> None:
    """The process front end refuses a public address with exit status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "vobiz_async.testing", "serve", "--host", "0.0.0.0"],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr
