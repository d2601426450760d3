"""
teardown(): every live call (or the calls given), listed and stopped, checked against the fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from vobiz_async import (
    AllStreams,
    AsyncVobiz,
    AuthenticationError,
    InvalidTargetError,
    Outcome,
    Recording,
    RetryPolicy,
    ServerError,
    StopResult,
    Stream,
    StreamInfo,
    StreamListing,
    Target,
)
from vobiz_async.testing import FakeVobiz, Faults, RateLimit

from .conftest import FakeTime, make_client
from .test_readme import python_block

BOT_3 = "wss://bot-3.example.com/"
PATIENT = RetryPolicy(max_attempts=20, wait_initial=0.001, wait_max=0.01)


def seeded(calls: int = 6, *, streams: int = 3, **options: object) -> FakeVobiz:
    """
    `calls` live calls with `streams` streams each; stream j of call i goes to bot-j.

    So bot-3 has one stream on each call with four or more streams, and bot-0 one
    on every call.
    """
    fake = FakeVobiz(**options)  # type: ignore[arg-type]
    for i in range(calls):
        fake.add_call(
            f"call-{i}",
            streams={f"s-{i}-{j}": f"wss://bot-{j}.example.com/media/{i}" for j in range(streams)},
            recordings=[f"https://rec/{i}"],
        )
    return fake


def client(fake: FakeVobiz, **options: object) -> AsyncVobiz:
    settings: dict[str, object] = {"transport": fake.transport(), "retry": PATIENT}
    settings.update(options)
    return AsyncVobiz(fake.auth_id, fake.auth_token, **settings)  # type: ignore[arg-type]


def deletes(fake: FakeVobiz) -> list[Target]:
    """The stop targets the fake received, in order."""
    return [r.target for r in fake.requests if r.method == "DELETE" and r.target is not None]  # type: ignore[misc]


# -- every live call ---------------------------------------------------------------------


async def test_every_live_call_loses_all_its_streams_and_recordings_on_a_socket() -> None:
    """One stop-all for streams and one for recordings per live call; nothing else sent."""
    fake = seeded(calls=30, live_page_size=7)
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz,
    ):
        report = await vobiz.teardown()

    calls = [f"call-{i}" for i in range(30)]
    assert report.ok
    assert report.counts[Outcome.STOPPED] == 60
    assert {r.target for r in report} == {
        *(AllStreams(c) for c in calls),
        *(Recording(c) for c in calls),
    }
    assert all(fake.active_streams(c) == set() for c in calls)
    assert all(fake.active_recordings(c) == set() for c in calls)
    assert fake.stopped_more_than_once() == {}
    # The live list, read page by page, is the only thing listed.
    assert [r.method for r in fake.requests].count("GET") == 5


async def test_calls_given_sync_or_async_are_torn_down_and_no_others() -> None:
    """calls= a list or an async iterable: those calls only, the live list never read."""
    fake = seeded(calls=4)

    async def two() -> AsyncIterator[str]:
        yield "call-2"
        yield "call-3"

    async with client(fake) as vobiz:
        first = await vobiz.teardown(["call-0", "call-1"], recordings=False)
        second = await vobiz.teardown(two(), streams=False)

    assert [r.target for r in first] == [AllStreams("call-0"), AllStreams("call-1")]
    assert [r.target for r in second] == [Recording("call-2"), Recording("call-3")]
    assert not any(r.method == "GET" for r in fake.requests)
    assert fake.active_recordings("call-0") == {"https://rec/0"}
    assert fake.active_streams("call-2") == {"s-2-0", "s-2-1", "s-2-2"}


# -- streams_to ---------------------------------------------------------------------------


@pytest.mark.parametrize("paging", ["meta", "page"])
async def test_streams_to_stops_exactly_the_matching_streams(paging: str) -> None:
    """
    Seven streams a call, at three a page: only bot-3's are stopped, each once.

    Checked against the fake's own record of what it stopped and what still runs.
    """
    fake = seeded(calls=5, streams=7, paging=paging, page_limit=3)
    fake.add_call("call-quiet", streams={"q": "wss://bot-1.example.com/x"})
    async with client(fake) as vobiz:
        report = await vobiz.teardown(streams_to=BOT_3, recordings=False)

    expected = {Stream(f"call-{i}", f"s-{i}-3") for i in range(5)}
    assert report.ok
    assert {r.target for r in report} == expected
    assert set(fake.stop_counts) == expected
    assert fake.stopped_more_than_once() == {}
    for i in range(5):
        assert fake.active_streams(f"call-{i}") == {f"s-{i}-{j}" for j in range(7) if j != 3}
    assert fake.active_streams("call-quiet") == {"q"}
    assert set(deletes(fake)) == expected  # nothing else was even asked for


async def test_streams_to_with_recordings_stops_every_recording_too() -> None:
    """recordings=True (the default) still stops each call's recordings, with one request each."""
    fake = seeded(calls=3, streams=5)
    async with client(fake) as vobiz:
        report = await vobiz.teardown(streams_to=BOT_3)
    assert {r.target for r in report} == {
        *(Stream(f"call-{i}", f"s-{i}-3") for i in range(3)),
        *(Recording(f"call-{i}") for i in range(3)),
    }


async def test_a_predicate_selects_streams_by_any_field() -> None:
    """streams_to may be a callable on StreamInfo: here, the outbound track only."""
    fake = FakeVobiz()
    fake.add_call("call-1")
    fake.start_stream("call-1", "wss://a/1", stream_id="in")
    fake.start_stream("call-1", "wss://a/1", stream_id="out", audio_track="outbound")
    seen: list[StreamInfo] = []

    def outbound(info: StreamInfo) -> bool:
        seen.append(info)
        return info.audio_track == "outbound"

    async with client(fake) as vobiz:
        report = await vobiz.teardown(["call-1"], streams_to=outbound, recordings=False)

    assert [r.target for r in report] == [Stream("call-1", "out")]
    assert fake.active_streams("call-1") == {"in"}
    assert sorted(info.stream_id for info in seen) == ["in", "out"]


async def test_streams_that_already_ended_are_listed_but_not_stopped() -> None:
    """A completed stream going to bot-3 is in the listing and gets no DELETE."""
    fake = seeded(calls=1, streams=5)
    listings: list[StreamListing] = []
    async with client(fake) as vobiz:
        await vobiz.stop_stream("call-0", "s-0-3")
        fake.requests.clear()
        report = await vobiz.teardown(
            streams_to=BOT_3, recordings=False, on_listing=listings.append
        )

    assert len(report) == 0
    assert deletes(fake) == []
    (listing,) = listings
    assert listing.call_uuid == "call-0"
    assert [(i.stream_id, i.status) for i in listing.streams][3] == ("s-0-3", "completed")
    assert listing.matched == ()


async def test_on_listing_sees_every_stream_listed_and_those_matched() -> None:
    """The hook (sync or async) gets each call's listing before its stops go out."""
    fake = seeded(calls=3, streams=5)
    order: list[str] = []

    async def hook(listing: StreamListing) -> None:
        order.append(f"listed {listing.call_uuid} {len(listing.streams)} {len(listing.matched)}")

    def result(r: StopResult) -> None:
        order.append(f"stopped {r.target.describe()}")

    async with client(fake) as vobiz:
        await vobiz.teardown(
            streams_to=BOT_3, recordings=False, on_listing=hook, on_result=result, concurrency=1
        )

    assert order == [
        "listed call-0 5 1",
        "stopped stream 's-0-3' on call 'call-0'",
        "listed call-1 5 1",
        "stopped stream 's-1-3' on call 'call-1'",
        "listed call-2 5 1",
        "stopped stream 's-2-3' on call 'call-2'",
    ]


async def test_listing_and_stopping_overlap() -> None:
    """The first stop goes out while later calls are still to be listed."""
    fake = seeded(calls=20, streams=5)
    async with client(fake) as vobiz:
        await vobiz.teardown(streams_to=BOT_3, recordings=False, concurrency=4)
    methods = [r.method for r in fake.requests]
    first_delete = methods.index("DELETE")
    last_get = len(methods) - 1 - methods[::-1].index("GET")
    assert first_delete < last_get / 2


async def test_skip_leaves_targets_unsent_and_without_a_result() -> None:
    """Skip is asked about each target; True means no request and no result for it."""
    fake = seeded(calls=3, streams=5)
    asked: list[Target] = []

    def skip(target: Target) -> bool:
        asked.append(target)
        return isinstance(target, Recording) or target == Stream("call-1", "s-1-3")

    async with client(fake) as vobiz:
        report = await vobiz.teardown(streams_to=BOT_3, skip=skip)

    assert {r.target for r in report} == {Stream("call-0", "s-0-3"), Stream("call-2", "s-2-3")}
    assert set(deletes(fake)) == {r.target for r in report}
    assert len(asked) == 6


# -- calls that end, and failures ----------------------------------------------------------


async def test_calls_that_end_mid_teardown_are_not_found_not_failed() -> None:
    """Hung up after being listed live: their stops answer 404, which is NOT_FOUND."""
    fake = seeded(calls=4)

    def hang_up_two(result: StopResult) -> None:
        if result.target == AllStreams("call-0"):
            fake.end_call("call-2")
            fake.end_call("call-3")

    async with client(fake) as vobiz:
        report = await vobiz.teardown(on_result=hang_up_two, concurrency=1)

    outcomes = {(r.target.kind, r.target.call_uuid): r.outcome for r in report}
    assert report.ok
    assert outcomes == {
        ("all_streams", "call-0"): Outcome.STOPPED,
        ("recording", "call-0"): Outcome.STOPPED,
        ("all_streams", "call-1"): Outcome.STOPPED,
        ("recording", "call-1"): Outcome.STOPPED,
        ("all_streams", "call-2"): Outcome.NOT_FOUND,
        ("recording", "call-2"): Outcome.NOT_FOUND,
        ("all_streams", "call-3"): Outcome.NOT_FOUND,
        ("recording", "call-3"): Outcome.NOT_FOUND,
    }


async def test_a_call_that_ends_before_its_listing_is_not_found() -> None:
    """With streams_to, a 404 on the listing is one NOT_FOUND result for AllStreams(call)."""
    fake = seeded(calls=3, streams=5)

    def hang_up(listing: StreamListing) -> None:
        if listing.call_uuid == "call-0":
            fake.end_call("call-1")

    async with client(fake) as vobiz:
        report = await vobiz.teardown(
            streams_to=BOT_3, recordings=False, on_listing=hang_up, concurrency=1
        )

    assert report.ok
    results = {r.target: r for r in report}
    ended = results[AllStreams("call-1")]
    assert ended.outcome is Outcome.NOT_FOUND
    assert ended.status_code == 404
    assert ended.error is None
    assert results[Stream("call-2", "s-2-3")].outcome is Outcome.STOPPED


async def test_a_listing_that_fails_is_that_calls_failed_result(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """One call's listing answers 500 every time: FAILED for AllStreams(call), nothing sent."""
    good = {"objects": [{"stream_id": "s-1", "service_url": BOT_3 + "m", "status": "in-progress"}]}
    router.get("/Call/bad/Stream/").respond(500, text="boom")
    router.get("/Call/good/Stream/").respond(200, json=good)
    stops = router.delete(path__regex=r"/Call/\w+/(Stream/s-1|Record)/").respond(204)
    async with make_client(router, fake_time) as vobiz:
        report = await vobiz.teardown(["bad", "good"], streams_to=BOT_3)

    results = {r.target: r for r in report}
    failed = results[AllStreams("bad")]
    assert failed.outcome is Outcome.FAILED
    assert isinstance(failed.error, ServerError)
    assert failed.attempts == 5
    assert "GET /api/v1/Account/MA_TESTACCOUNT/Call/bad/Stream/" in str(failed.error)
    assert results[Stream("good", "s-1")].outcome is Outcome.STOPPED
    # The failed call's recordings are still stopped; its streams are not touched.
    assert results[Recording("bad")].outcome is Outcome.STOPPED
    assert {c.request.url.path.split("/Call/")[1] for c in stops.calls} == {
        "good/Stream/s-1/",
        "good/Record/",
        "bad/Record/",
    }


async def test_a_bad_call_uuid_fails_alone() -> None:
    """An invalid call UUID is that call's failure; nothing is sent for it."""
    fake = seeded(calls=1, streams=5)
    async with client(fake) as vobiz:
        report = await vobiz.teardown(["call-0", "no/slashes"], streams_to=BOT_3)
    bad = [r for r in report if r.target.call_uuid == "no/slashes"]
    assert [r.target for r in bad] == [AllStreams("no/slashes"), Recording("no/slashes")]
    assert all(isinstance(r.error, InvalidTargetError) and r.attempts == 0 for r in bad)
    assert fake.active_streams("call-0") == {"s-0-0", "s-0-1", "s-0-2", "s-0-4"}


async def test_gets_ride_out_503s_and_429s_like_the_stops() -> None:
    """The fake fails a third of all requests, GETs included: everything still stops once."""
    fake = seeded(
        calls=40,
        streams=5,
        seed=5,
        live_page_size=10,
        faults=Faults(error_503=0.2, rate_limit_429=0.1, retry_after=0),
    )
    async with client(fake) as vobiz:
        report = await vobiz.teardown(streams_to=BOT_3, concurrency=10)

    assert report.ok, [str(r.error) for r in report.failed[:3]]
    assert set(fake.stop_counts) == {
        *(Stream(f"call-{i}", f"s-{i}-3") for i in range(40)),
        *(Recording(f"call-{i}") for i in range(40)),
    }
    assert fake.stopped_more_than_once() == {}
    faulted_gets = {r.fault for r in fake.requests if r.method == "GET"}
    assert {"error_503", "rate_limit"} <= faulted_gets


async def test_gets_share_the_batchs_flow_control_under_a_real_rate_limit() -> None:
    """A 200/s token bucket in front of GETs and DELETEs alike: no target fails."""
    fake = seeded(calls=60, streams=5, rate_limit=RateLimit(rate=200, burst=20, retry_after=0.05))
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz,
    ):
        report = await vobiz.teardown(streams_to=BOT_3, concurrency=50)

    assert report.ok, [str(r.error) for r in report.failed[:3]]
    assert len(fake.stop_counts) == 120
    assert fake.throttled_count > 0  # the limit was met, and ridden out
    assert fake.stopped_more_than_once() == {}


async def test_a_live_list_that_cannot_be_read_is_raised(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """Bad credentials on the live list: AuthenticationError, and no stop is sent."""
    route = router.route().respond(401, json={"api_id": "a", "error": "Authentication failed"})
    async with make_client(router, fake_time) as vobiz:
        with pytest.raises(AuthenticationError, match="Authentication failed"):
            await vobiz.teardown()
    assert route.call_count == 1


async def test_a_live_list_failing_midway_is_raised_after_the_stops_found(
    router: respx.Router, fake_time: FakeTime
) -> None:
    """Page two answers 500: page one's calls are still torn down, then ServerError."""

    def live(request: httpx.Request) -> httpx.Response:
        if "offset=2" in str(request.url):
            return httpx.Response(500, text="down")
        meta = {"next": "/Call/?status=live&offset=2", "limit": 2}
        return httpx.Response(200, json={"calls": ["c-1", "c-2"], "meta": meta})

    router.get("/Call/").mock(side_effect=live)
    stops = router.route(method="DELETE").respond(204)
    seen: list[StopResult] = []
    async with make_client(router, fake_time) as vobiz:
        with pytest.raises(ServerError, match="500"):
            await vobiz.teardown(on_result=seen.append)
    assert stops.call_count == 4
    assert {r.target for r in seen} == {
        AllStreams("c-1"),
        Recording("c-1"),
        AllStreams("c-2"),
        Recording("c-2"),
    }


# -- iter_teardown, arguments -----------------------------------------------------------------


async def test_iter_teardown_yields_each_result_as_it_completes() -> None:
    """The streaming form: one result per request, the same as teardown would report."""
    fake = seeded(calls=5, streams=5)
    async with client(fake) as vobiz, vobiz.iter_teardown(streams_to=BOT_3) as results:
        targets = [result.target async for result in results]
    assert sorted(map(repr, targets)) == sorted(
        repr(t) for i in range(5) for t in (Stream(f"call-{i}", f"s-{i}-3"), Recording(f"call-{i}"))
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        pytest.param(
            {"streams": False, "recordings": False}, ValueError, "nothing to stop", id="nothing"
        ),
        pytest.param(
            {"streams": False, "streams_to": BOT_3}, ValueError, "needs streams=True", id="off"
        ),
        pytest.param({"streams_to": ""}, ValueError, "leave it None", id="empty-prefix"),
        pytest.param({"streams_to": 3}, TypeError, "not int", id="number"),
        pytest.param({"calls": "call-1"}, TypeError, "write \\['call-1'\\]", id="one-str"),
        pytest.param({"calls": 7}, TypeError, "not int", id="not-iterable"),
        pytest.param({"skip": True}, TypeError, "skip must be callable", id="skip"),
        pytest.param({"concurrency": 0}, ValueError, "concurrency", id="concurrency"),
    ],
)
async def test_arguments_that_make_no_sense_are_refused_at_the_call(
    kwargs: dict[str, object], error: type[Exception], says: str
) -> None:
    """Refused before anything is sent, by teardown and iter_teardown alike."""
    fake = seeded(calls=1)
    async with client(fake) as vobiz:
        with pytest.raises(error, match=says):
            await vobiz.teardown(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(error, match=says):
            vobiz.iter_teardown(**kwargs)  # type: ignore[arg-type]
    assert fake.request_count == 0


async def test_cancelling_a_teardown_leaves_no_task_behind() -> None:
    """Cancelled mid-listing (a hung GET): the batch ends at once, no task left over."""
    fake = seeded(calls=3, streams=5, faults=Faults(hang=1.0))
    async with client(fake) as vobiz:
        task = asyncio.create_task(vobiz.teardown(streams_to=BOT_3))
        await fake.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


# -- 10,000 calls ---------------------------------------------------------------------------


def many(count: int) -> Iterator[str]:
    return (f"{i:08d}-0000-4000-8000-000000000000" for i in range(count))


@pytest.mark.slow
async def test_ten_thousand_live_calls_on_a_socket_each_stopped_once() -> None:
    """10,000 live calls, bot-3's stream listed and stopped on each: nothing missed or doubled."""
    fake = FakeVobiz(record_requests=False)
    for call in many(10_000):
        fake.add_call(call, streams={"a": "wss://bot-1/x", "b": BOT_3 + "y"})
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz,
    ):
        report = await vobiz.teardown(streams_to=BOT_3, recordings=False, concurrency=100)
    assert report.ok
    assert len(report) == 10_000
    assert set(fake.stop_counts) == {Stream(call, "b") for call in many(10_000)}
    assert fake.stopped_more_than_once() == {}


async def test_the_readme_example_runs_as_written() -> None:
    """README "Find what runs": what_runs lists bot-3's stream; incident stops it all."""
    namespace: dict[str, Any] = {}
    exec(python_block("## Find what runs, then stop it"), namespace)  # noqa: S102
    fake = seeded(calls=2, streams=5)
    async with client(fake) as vobiz:
        running = await namespace["what_runs"](vobiz)
        assert len(running) == 10
        await namespace["incident"](vobiz)
    assert set(fake.stop_counts) == {
        *(Stream(f"call-{i}", f"s-{i}-3") for i in range(2)),
        *(AllStreams(f"call-{i}") for i in range(2)),
        *(Recording(f"call-{i}") for i in range(2)),
    }
    assert not any(fake.active_streams(f"call-{i}") for i in range(2))


async def test_a_predicate_that_raises_stops_the_batch() -> None:
    """Like an on_result hook that raises: the batch stops and the error comes out."""
    fake = seeded(calls=3, streams=5)

    def broken(info: StreamInfo) -> bool:
        raise KeyError("no such field")

    async with client(fake) as vobiz:
        with pytest.raises(ExceptionGroup) as caught:
            await vobiz.teardown(streams_to=broken)
    assert caught.group_contains(KeyError)
    assert deletes(fake) == [] or all(isinstance(t, Recording) for t in deletes(fake))


async def test_leaving_live_calls_early_is_clean() -> None:
    """Breaking out of the async for reads no further page (and warns of nothing)."""
    fake = FakeVobiz(live_page_size=2)
    for i in range(6):
        fake.add_call(f"c-{i}")
    async with client(fake) as vobiz:
        async for call in vobiz.live_calls():
            if call == "c-1":
                break
    assert fake.request_count == 1


async def test_a_teardowns_retry_overrides_the_clients_for_its_stops() -> None:
    """`retry=` on one teardown applies to its stops: one attempt each, where the client has 20."""
    fake = seeded(calls=3, streams=1, seed=1, faults=Faults(error_503=1.0))
    async with client(fake, sleep=FakeTime().sleep) as vobiz:
        report = await vobiz.teardown(
            ["call-0", "call-1", "call-2"], retry=RetryPolicy(max_attempts=1)
        )
        default = await vobiz.stop_many([Stream("call-0", "s-0-0")])
    assert len(report.failed) == 6
    assert {r.attempts for r in report.results} == {1}
    assert default.results[0].attempts == PATIENT.max_attempts


async def test_a_teardowns_bad_timeout_is_refused_at_the_call() -> None:
    """A per-call timeout is checked as the constructor's is, before anything is sent."""
    fake = seeded(calls=1)
    async with client(fake) as vobiz:
        with pytest.raises(ValueError, match="timeout must be a finite number > 0"):
            await vobiz.teardown(timeout=0)
    assert fake.requests == []
