"""
live_calls() and list_streams(): the wire format, both paging envelopes, hostile answers.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import pickle
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from vobiz_async import (
    AsyncVobiz,
    ClientClosedError,
    InvalidTargetError,
    ListLiveCalls,
    ListStreams,
    NotFoundError,
    RetryPolicy,
    ServerError,
    StreamInfo,
    UnexpectedResponseError,
)
from vobiz_async._discovery import Page
from vobiz_async.testing import FakeVobiz, Faults

from .conftest import ACCOUNT, AUTH_ID, AUTH_TOKEN, FakeTime, make_client

STREAMS_PATH = "/Call/call-1/Stream/"


def stream(stream_id: str, **fields: Any) -> dict[str, Any]:
    """A stream object as the API documents it."""
    return {
        "stream_id": stream_id,
        "call_uuid": "call-1",
        "service_url": "wss://bot.example.com/media",
        "status_callback_url": None,
        "bidirectional": False,
        "audio_track": "inbound",
        "content_type": "audio/x-l16;rate=8000",
        "status": "in-progress",
        "start_time": "2026-03-01 10:00:00+05:30",
        "end_time": None,
        **fields,
    }


def meta_page(objects: list[dict[str, Any]], *, next_offset: int | None) -> dict[str, Any]:
    nxt = None if next_offset is None else f"/v1/Account/X/Call/call-1/Stream/?offset={next_offset}"
    meta = {"previous": None, "next": nxt, "total_count": 99, "offset": 0, "limit": 20}
    return {"api_id": "a-1", "meta": meta, "objects": objects}


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


# -- wire format ------------------------------------------------------------------


async def test_live_calls_is_a_get_with_status_live_and_the_auth_headers(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """GET /Call/?status=live, trailing slash, the two auth headers; calls in the API's order."""
    route = router.get("/Call/").respond(200, json={"api_id": "a", "calls": ["c-2", "c-1"]})

    assert await collect(vobiz.live_calls()) == ["c-2", "c-1"]

    request = route.calls.last.request
    assert request.url == f"{ACCOUNT}/Call/?status=live"
    assert request.headers["X-Auth-ID"] == AUTH_ID
    assert request.headers["X-Auth-Token"] == AUTH_TOKEN
    assert request.content == b""


async def test_list_streams_asks_for_pages_of_twenty_from_offset_zero(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The first page is ?limit=20&offset=0; a short page with next null is the last."""
    route = router.get(STREAMS_PATH).respond(200, json=meta_page([stream("s-1")], next_offset=None))

    (info,) = await collect(vobiz.list_streams("call-1"))

    assert route.calls.last.request.url == f"{ACCOUNT}{STREAMS_PATH}?limit=20&offset=0"
    assert info.stream_id == "s-1"
    assert info.service_url == "wss://bot.example.com/media"


async def test_a_bad_call_uuid_is_refused_before_any_request(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The same identifier checks as the stops: nothing is sent for 'a/b'."""
    route = router.route().respond(200, json={"objects": []})
    with pytest.raises(InvalidTargetError, match="call_uuid must not contain"):
        await collect(vobiz.list_streams("a/b"))
    assert route.call_count == 0


async def test_listing_on_a_closed_client_raises(router: respx.Router, fake_time: FakeTime) -> None:
    """Like a stop, a listing after aclose() raises ClientClosedError."""
    client = make_client(router, fake_time)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await collect(client.live_calls())


# -- StreamInfo ---------------------------------------------------------------------


def test_stream_info_keeps_unknown_fields_and_tolerates_missing_ones() -> None:
    """A field added tomorrow is kept, never a failure; a missing optional field is None."""
    info = StreamInfo.from_api({"stream_id": "s-1", "region": "ap-south-1", "codec": {"x": 1}})
    assert info.extra == {"region": "ap-south-1", "codec": {"x": 1}}
    assert info.raw["region"] == "ap-south-1"
    assert info.service_url is None
    assert info.status is None
    assert info.start_time is None


@pytest.mark.parametrize(
    ("sent", "parsed"),
    [
        pytest.param(
            "2026-03-01 10:00:00+05:30",
            datetime.datetime(
                2026, 3, 1, 10, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
            ),
            id="vobiz",
        ),
        pytest.param(
            "2026-03-01T04:30:00Z",
            datetime.datetime(2026, 3, 1, 4, 30, tzinfo=datetime.UTC),
            id="iso-z",
        ),
        pytest.param("yesterday at noon", None, id="unreadable"),
        pytest.param(1772339400, None, id="a-number"),
    ],
)
def test_start_time_is_a_datetime_when_it_can_be_read(
    sent: object, parsed: datetime.datetime | None
) -> None:
    """Vobiz's and ISO times become datetimes; anything else is None here, as sent in raw."""
    info = StreamInfo.from_api({"stream_id": "s", "start_time": sent})
    assert info.start_time == parsed
    assert info.raw["start_time"] == sent


@pytest.mark.parametrize(
    ("status", "active"),
    [
        ("in-progress", True),
        ("completed", False),
        ("failed", False),
        ("FAILED", False),
        ("connecting", True),  # a status added later may be running: stopping it is safe
        (None, True),
    ],
)
def test_a_stream_is_active_unless_its_status_says_it_ended(
    status: str | None, active: bool
) -> None:
    """Only completed and failed mean ended."""
    assert StreamInfo.from_api({"stream_id": "s", "status": status}).active is active


def test_stream_info_is_a_frozen_hashable_value() -> None:
    """Frozen, comparable and hashable, whatever it holds."""
    info = StreamInfo.from_api(stream("s-1", extra_list=[1, 2]))
    assert info == StreamInfo.from_api(stream("s-1", extra_list=[1, 2]))
    assert {info, info} == {info}
    with pytest.raises(AttributeError):
        info.status = "completed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.raw["status"] = "completed"  # type: ignore[index]


def test_stream_info_pickles_and_copies_by_value() -> None:
    """
    A worker queue (Celery, RQ) pickles what it hands on; deepcopy is the same path.

    Both used to raise TypeError on the read-only ``raw``. The copy is equal,
    keeps the unknown fields, and is still read-only.
    """
    info = StreamInfo.from_api(stream("s-1", extra_list=[1, 2]))
    pickled = pickle.loads(pickle.dumps(info))  # noqa: S301 - our own bytes
    for copied in (pickled, copy.deepcopy(info), copy.copy(info)):
        assert copied == info
        assert copied.extra == info.extra
        assert copied.extra["extra_list"] == [1, 2]
        with pytest.raises(TypeError):
            copied.raw["status"] = "completed"  # type: ignore[index]


# -- paging, against the fake ------------------------------------------------------------


@pytest.mark.parametrize("wire", ["transport", "socket"])
@pytest.mark.parametrize("paging", ["meta", "page"])
async def test_every_page_is_read_in_both_envelopes(paging: str, wire: str) -> None:
    """
    Eight streams at three a page: three requests, every stream once, in order.

    In process, and on a loopback socket through the default transport.
    """
    fake = FakeVobiz(paging=paging, page_limit=3)  # type: ignore[arg-type]
    ids = [f"s-{i}" for i in range(8)]
    fake.add_call("call-1", streams=ids)
    async with contextlib.AsyncExitStack() as stack:
        if wire == "socket":
            base_url = await stack.enter_async_context(fake.serve())
            vobiz = AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url)
        else:
            vobiz = AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport())
        await stack.enter_async_context(vobiz)
        listed = await collect(vobiz.list_streams("call-1"))

    assert [info.stream_id for info in listed] == ids
    offsets = [r.query for r in fake.requests]
    assert offsets == ["limit=20&offset=0", "limit=20&offset=3", "limit=20&offset=6"]
    assert all(isinstance(r.target, ListStreams) for r in fake.requests)


@pytest.mark.parametrize("paging", ["meta", "page"])
async def test_a_full_last_page_costs_one_more_request_and_no_more(paging: str) -> None:
    """Six streams at three a page: the third page is empty and ends the listing."""
    fake = FakeVobiz(paging=paging, page_limit=3)  # type: ignore[arg-type]
    fake.add_call("call-1", streams=[f"s-{i}" for i in range(6)])
    async with AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport()) as vobiz:
        listed = await collect(vobiz.list_streams("call-1"))
    assert len(listed) == 6
    # meta says next: null on the second page; the page envelope needs the empty third.
    assert fake.request_count == (2 if paging == "meta" else 3)


async def test_stopped_streams_are_listed_completed_and_active_only_leaves_them_out() -> None:
    """The fake lists a stopped stream as completed, with an end time; active_only drops it."""
    fake = FakeVobiz()
    fake.add_call("call-1", streams={"s-1": "wss://a/1", "s-2": "wss://b/2"})
    async with AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport()) as vobiz:
        await vobiz.stop_stream("call-1", "s-1")
        every = await collect(vobiz.list_streams("call-1", active_only=False))
        running = await collect(vobiz.list_streams("call-1"))

    assert [(i.stream_id, i.status) for i in every] == [
        ("s-1", "completed"),
        ("s-2", "in-progress"),
    ]
    assert every[0].end_time is not None
    assert every[1].end_time is None
    assert [i.stream_id for i in running] == ["s-2"]


async def test_live_calls_follow_meta_next_across_pages() -> None:
    """A live list that pages (undocumented, accepted) is followed to its end."""
    fake = FakeVobiz(live_page_size=2)
    for i in range(5):
        fake.add_call(f"c-{i}")
    async with AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport()) as vobiz:
        assert await collect(vobiz.live_calls()) == [f"c-{i}" for i in range(5)]
    assert [r.query for r in fake.requests] == [
        "status=live",
        "status=live&limit=2&offset=2",
        "status=live&limit=2&offset=4",
    ]
    assert all(isinstance(r.target, ListLiveCalls) for r in fake.requests)


async def test_a_large_live_list_is_read_whole_over_a_real_socket() -> None:
    """10,000 calls (~450 KB, past the 64 KiB cap of a stop's answer) in one answer."""
    fake = FakeVobiz(record_requests=False)
    calls = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(10_000)]
    for call in calls:
        fake.add_call(call)
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz,
    ):
        assert await collect(vobiz.live_calls()) == calls


# -- failures ------------------------------------------------------------------------


async def test_an_ended_call_raises_not_found_without_retrying(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A 404 in Vobiz's shape is NotFoundError: the call has ended. No retry."""
    route = router.get(STREAMS_PATH).respond(404, json={"api_id": "x", "error": "Call not found"})
    with pytest.raises(NotFoundError, match="Call not found") as caught:
        await collect(vobiz.list_streams("call-1"))
    assert route.call_count == 1
    assert caught.value.attempts == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.Response(503, text="<html>busy</html>"), id="503"),
        pytest.param(
            httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "Rate limit"}),
            id="429",
        ),
        pytest.param(httpx.ReadError("connection reset after the request was sent"), id="reset"),
    ],
)
async def test_a_get_is_retried_on_what_a_stop_is_retried_on(
    vobiz: AsyncVobiz,
    router: respx.Router,
    fake_time: FakeTime,
    failure: httpx.Response | Exception,
) -> None:
    """5xx, 429 (after its Retry-After) and a dropped connection: a GET is always safe again."""
    answers: list[httpx.Response | Exception] = [
        failure,
        httpx.Response(200, json=meta_page([stream("s-1")], next_offset=None)),
    ]
    route = router.get(STREAMS_PATH).mock(side_effect=answers)

    (info,) = await collect(vobiz.list_streams("call-1"))

    assert info.stream_id == "s-1"
    assert route.call_count == 2
    if isinstance(failure, httpx.Response) and failure.status_code == 429:
        assert fake_time.sleeps[0] >= 2


async def test_retries_spent_raise_the_typed_error(vobiz: AsyncVobiz, router: respx.Router) -> None:
    """Five 503s: ServerError with attempts=5, its message naming the GET."""
    router.get(STREAMS_PATH).respond(503, text="down")
    with pytest.raises(ServerError, match=r"503 .* from GET /api/v1/.*/Stream/") as caught:
        await collect(vobiz.list_streams("call-1"))
    assert caught.value.attempts == 5


MALFORMED = [
    pytest.param(httpx.Response(200, text="<html>portal</html>"), "non-JSON body", id="html"),
    pytest.param(httpx.Response(200), "empty body", id="empty-200"),
    pytest.param(httpx.Response(204), "empty body", id="204"),
    pytest.param(httpx.Response(200, json=[1, 2]), "a stream is a JSON number", id="numbers"),
    pytest.param(httpx.Response(200, json="objects"), "JSON string, not an object", id="string"),
    pytest.param(httpx.Response(200, json={"streams": []}), "no 'objects'", id="no-objects"),
    pytest.param(
        httpx.Response(200, json={"objects": {"s": 1}}), "'objects' is a JSON object", id="dict"
    ),
    pytest.param(
        httpx.Response(200, json={"objects": [{"service_url": "wss://x"}]}),
        "a stream has no stream_id",
        id="no-stream-id",
    ),
    pytest.param(httpx.Response(200, text="[" * 50_000), "non-JSON body", id="deep"),
]


@pytest.mark.parametrize(("answer", "says"), MALFORMED)
async def test_a_malformed_listing_is_an_unexpected_response_not_retried(
    vobiz: AsyncVobiz, router: respx.Router, answer: httpx.Response, says: str
) -> None:
    """An answer that is not a stream list fails with what is wrong with it, at once."""
    route = router.get(STREAMS_PATH).mock(return_value=answer)
    with pytest.raises(UnexpectedResponseError) as caught:
        await collect(vobiz.list_streams("call-1"))
    assert says in str(caught.value)
    assert "nothing was listed" in str(caught.value)
    assert route.call_count == 1


async def test_a_live_list_without_calls_is_malformed(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """A live list must hold call UUIDs: strings, or objects with a call_uuid."""
    router.get("/Call/").respond(200, json={"calls": ["c-1", {"call_uuid": "c-2"}, {"id": 3}]})
    with pytest.raises(UnexpectedResponseError, match="a live call is not a call UUID"):
        await collect(vobiz.live_calls())


async def test_a_server_that_ignores_offset_is_caught_at_the_second_page(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The same full page again and again: stopped after two requests, saying why."""
    page = meta_page([stream(f"s-{i}") for i in range(20)], next_offset=20)
    route = router.get(STREAMS_PATH).respond(200, json=page)
    with pytest.raises(UnexpectedResponseError, match="seems to ignore offset"):
        await collect(vobiz.list_streams("call-1"))
    assert route.call_count == 2


async def test_a_server_that_pages_forever_meets_the_page_cap(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """New streams on every page, forever: the listing fails after 100 pages."""
    served = 0

    def endless(request: httpx.Request) -> httpx.Response:
        nonlocal served
        served += 1
        objects = [stream(f"s-{served}-{i}") for i in range(20)]
        return httpx.Response(200, json=meta_page(objects, next_offset=served * 20))

    router.get(STREAMS_PATH).mock(side_effect=endless)
    seen: list[StreamInfo] = []

    async def read_all() -> None:
        async for info in vobiz.list_streams("call-1"):
            seen.append(info)

    with pytest.raises(UnexpectedResponseError, match="still had more after 100 pages"):
        await read_all()
    assert served == 100
    assert len(seen) == 2000  # what was read before the cap was handed over as it came


async def test_a_live_list_that_pages_forever_meets_its_cap(
    vobiz: AsyncVobiz, router: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live list has its own cap; here lowered to 3 pages so the test stays quick."""
    monkeypatch.setattr("vobiz_async._discovery.MAX_CALL_PAGES", 3)
    served = 0

    def endless(request: httpx.Request) -> httpx.Response:
        nonlocal served
        served += 1
        meta = {"next": f"/Call/?status=live&offset={served}", "limit": 1}
        return httpx.Response(200, json={"calls": [f"c-{served}"], "meta": meta})

    router.get("/Call/").mock(side_effect=endless)
    with pytest.raises(UnexpectedResponseError, match="after 3 pages"):
        await collect(vobiz.live_calls())
    assert served == 3


async def test_a_listing_answer_past_its_cap_is_refused(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Past 16 MiB the answer is cut and refused as too large, not parsed half."""
    huge = b'{"calls": [' + b'"c-00000000000000000000000000000000",' * 500_000 + b'"c"]}'
    router.get("/Call/").mock(return_value=httpx.Response(200, content=huge))
    with pytest.raises(UnexpectedResponseError, match="larger than the 16 MiB") as caught:
        await collect(vobiz.live_calls())
    # What the error keeps of the answer is capped as for any error.
    assert caught.value.response is not None
    assert len(caught.value.response.content) <= 64 * 1024


async def test_an_error_answer_to_a_get_is_read_to_64_kib_only(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """The 16 MiB allowance is for a listing's success; a 500's megabyte is cut at 64 KiB."""
    router.get(STREAMS_PATH).respond(500, content=b"x" * 2**20)
    with pytest.raises(ServerError) as caught:
        await collect(vobiz.list_streams("call-1"))
    assert caught.value.response is not None
    assert len(caught.value.response.content) <= 64 * 1024


async def test_the_token_echoed_in_a_listing_is_in_nothing_handed_out(
    vobiz: AsyncVobiz, router: respx.Router
) -> None:
    """Raw, in a JSON unicode escape or in a key: masked in every value and in raw."""
    escaped = "".join(f"\\u{ord(char):04x}" for char in AUTH_TOKEN)
    body = (
        '{"objects": [{"stream_id": "s-1", "service_url": "wss://x/?t=' + AUTH_TOKEN + '",'
        ' "echo": "' + escaped + '", "' + AUTH_TOKEN + '": 1}]}'
    )
    router.get(STREAMS_PATH).respond(200, text=body)
    (info,) = await collect(vobiz.list_streams("call-1"))
    shown = repr(info) + json.dumps(dict(info.raw)) + json.dumps(info.extra)
    assert AUTH_TOKEN not in shown
    assert info.service_url == "wss://x/?t=***"
    assert info.extra["echo"] == "***"


async def test_listing_faults_in_the_fake_are_ridden_out() -> None:
    """503s and 429s on the fake's GETs: retried until the list is read."""
    fake = FakeVobiz(seed=3, faults=Faults(error_503=0.3, rate_limit_429=0.2, retry_after=0))
    fake.add_call("call-1", streams=[f"s-{i}" for i in range(50)])
    async with AsyncVobiz(
        fake.auth_id,
        fake.auth_token,
        transport=fake.transport(),
        retry=RetryPolicy(max_attempts=20, wait_initial=0.001, wait_max=0.001),
    ) as vobiz:
        listed = await collect(vobiz.list_streams("call-1"))
    assert len(listed) == 50
    assert {r.fault for r in fake.requests} >= {"error_503", "rate_limit", None}


# -- the paging rules, one by one -------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "offset", "asked", "after"),
    [
        pytest.param(Page([1, 2], next=None), 0, 2, None, id="next-null-ends-even-a-full-page"),
        pytest.param(Page([1, 2], next="/x/?offset=40"), 0, 2, 40, id="next-says-where"),
        pytest.param(Page([1, 2], next="/x/?offset=abc"), 10, 2, 12, id="next-unreadable"),
        pytest.param(Page([1, 2], next="/x/?offset=3"), 10, 2, 12, id="next-going-back"),
        pytest.param(Page([1, 2], next="/x/?limit=5"), 10, 2, 12, id="next-without-offset"),
        pytest.param(Page([1], total=5), 0, 20, 1, id="total-not-reached"),
        pytest.param(Page([1, 2], total=2), 0, 20, None, id="total-reached"),
        pytest.param(Page([1, 2], total=1, size=2), 0, 20, 2, id="full-page-past-a-total"),
        pytest.param(Page([1, 2], size=2), 0, 20, 2, id="full-at-the-servers-size"),
        pytest.param(Page([1, 2]), 4, 2, 6, id="full-at-the-size-asked"),
        pytest.param(Page([1]), 4, 2, None, id="short-page-ends"),
        pytest.param(Page([], next="/x/?offset=9", total=99), 0, 2, None, id="empty-ends"),
        pytest.param(Page([1, 2]), 0, None, None, id="no-size-known"),
    ],
)
def test_when_there_is_a_next_page(
    page: Page, offset: int, asked: int | None, after: int | None
) -> None:
    """meta.next decides; else a total not reached, or a full page; an empty page ends it."""
    assert page.next_offset(offset, asked) == after


def test_fake_listing_options_are_checked() -> None:
    """A paging envelope or page size the fake does not know is refused at construction."""
    with pytest.raises(ValueError, match="paging must be 'meta' or 'page'"):
        FakeVobiz(paging="cursor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_limit must be an int >= 1"):
        FakeVobiz(page_limit=0)
    with pytest.raises(ValueError, match="live_page_size must be an int >= 1"):
        FakeVobiz(live_page_size=-1)


def test_fake_starts_streams_on_live_calls_only() -> None:
    """start_stream needs a call from add_call, and a stream id not taken on it."""
    fake = FakeVobiz()
    fake.add_call("call-1", streams=["s-1"])
    generated = fake.start_stream("call-1", "wss://bot/x")
    assert fake.active_streams("call-1") == {"s-1", generated}
    with pytest.raises(ValueError, match="no live call 'call-2'"):
        fake.start_stream("call-2", "wss://bot/x")
    with pytest.raises(ValueError, match="already has a stream 's-1'"):
        fake.start_stream("call-1", "wss://bot/x", stream_id="s-1")
    fake.end_call("call-1")
    assert fake.live_calls() == []
    with pytest.raises(ValueError, match="no live call 'call-1'"):
        fake.start_stream("call-1", "wss://bot/x")


@pytest.mark.parametrize("query", ["limit=abc", "offset=-1"])
async def test_fake_does_not_know_a_listing_with_a_bad_count(query: str) -> None:
    """A limit or offset that is not a count is no route of the fake: 404."""
    fake = FakeVobiz(open_world=True)
    async with fake.http_client() as http:
        answer = await http.get(
            f"https://api.vobiz.ai/api/v1/Account/{fake.auth_id}/Call/c/Stream/?{query}",
            headers={"X-Auth-ID": fake.auth_id, "X-Auth-Token": fake.auth_token},
        )
    assert answer.status_code == 404
    assert fake.requests[0].target is None


def test_listing_requests_describe_themselves() -> None:
    """As a stop target does, for messages."""
    assert ListLiveCalls().describe() == "live calls"
    assert ListStreams("c-1").describe() == "streams on call 'c-1'"
