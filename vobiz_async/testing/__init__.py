"""
A fake Vobiz API for tests: yours, ours, the demo's and the benchmarks'.

    fake = FakeVobiz()
    fake.add_call("call-1", streams=["s-1"])
    async with AsyncVobiz(fake.auth_id, fake.auth_token, http_client=fake.http_client()) as vobiz:
        await vobiz.stop_stream("call-1", "s-1")
    assert fake.times_stopped(Stream("call-1", "s-1")) == 1
"""

from ._fake import DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN, FakeVobiz, RecordedRequest
from ._faults import Faults
from ._limit import RateLimit

__all__ = [
    "DEFAULT_AUTH_ID",
    "DEFAULT_AUTH_TOKEN",
    "FakeVobiz",
    "Faults",
    "RateLimit",
    "RecordedRequest",
]
