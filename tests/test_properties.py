"""
Property: whatever strings arrive, a request goes to exactly the intended path, or none does.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vobiz_async import AllStreams, AsyncVobiz, InvalidTargetError, Recording, Stream, Target
from vobiz_async.testing import FakeVobiz

ASCII = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
ANYTHING = st.text(max_size=40)
LONG = st.text(alphabet="abcdef0123456789-", min_size=250, max_size=270)
IDS = st.one_of(ASCII, ANYTHING, LONG, st.sampled_from(["", ".", "..", "a/b", "%2F", "a?b", "a#b"]))
# Whitespace and control characters that urlsplit would strip or ignore.
INVISIBLE = st.sampled_from([" ", "\n", "\r", "\t", "\x00", "\x0b", "\x7f", "\xa0", "\u2028"])
URLS = st.one_of(
    st.none(),
    ANYTHING,
    st.builds(lambda path: f"https://media.vobiz.ai/{path}", ANYTHING),
    st.builds(lambda host: f"http://{host}/rec.mp3", ASCII),
    st.builds(lambda a, bad, b: f"{a}https://media.vobiz.ai/{bad}{b}", ASCII, INVISIBLE, ASCII),
    st.builds(lambda bad: f"https://media.vobiz.ai/rec.mp3{bad}", INVISIBLE),
    st.builds(lambda path: f"https://media.vobiz.ai/{path}", st.text("ab/", min_size=2030)),
)


def sendable(url: str) -> bool:
    """What may go in the body: no whitespace or control character, not too long."""
    return url.isprintable() and not any(c.isspace() for c in url) and len(url) <= 2048


def sent_or_refused(target: Target) -> tuple[FakeVobiz, bool]:
    """Stop `target` against an in-process fake; say whether it was refused."""
    fake = FakeVobiz(open_world=True)

    async def run() -> bool:
        async with AsyncVobiz(fake.auth_id, fake.auth_token, transport=fake.transport()) as vobiz:
            try:
                await vobiz.stop(target)
            except InvalidTargetError:
                return True
        return False

    return fake, asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(call_uuid=IDS, stream_id=IDS)
def test_stream_ids_reach_the_intended_path_or_nothing(call_uuid: str, stream_id: str) -> None:
    """The server parses the path back to the very same ids, or no request was sent."""
    fake, refused = sent_or_refused(Stream(call_uuid, stream_id))
    if refused:
        assert fake.request_count == 0
    else:
        assert len(call_uuid) <= 256
        assert len(stream_id) <= 256
        (request,) = fake.requests
        assert request.auth_id == fake.auth_id
        assert request.target == Stream(call_uuid, stream_id)


@settings(max_examples=200, deadline=None)
@given(call_uuid=IDS)
def test_call_ids_reach_the_intended_path_or_nothing(call_uuid: str) -> None:
    """Stop-all uses the call id alone, and gets the same guarantee."""
    fake, refused = sent_or_refused(AllStreams(call_uuid))
    if refused:
        assert fake.request_count == 0
    else:
        (request,) = fake.requests
        assert request.auth_id == fake.auth_id
        assert request.target == AllStreams(call_uuid)


@settings(max_examples=300, deadline=None)
@given(call_uuid=IDS, url=URLS)
def test_recording_url_arrives_intact_or_nothing_is_sent(call_uuid: str, url: str | None) -> None:
    """
    Any accepted recording URL reaches the server as the same string, in the JSON body.

    Accepted means sendable as it stands: whitespace or control characters
    anywhere, or an over-long URL, are refused with nothing sent.
    """
    fake, refused = sent_or_refused(Recording(call_uuid, url))
    if refused:
        assert fake.request_count == 0
        return
    (request,) = fake.requests
    assert request.auth_id == fake.auth_id
    assert request.target == Recording(call_uuid, url)
    assert url is None or sendable(url)
    if url is None:
        assert request.body == b""
    else:
        assert json.loads(request.body) == {"URL": url}
