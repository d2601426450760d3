"""
The in-process front end: an httpx transport that hands each request to the fake.
"""

from __future__ import annotations

import httpx

from ._wire import Handler

__all__ = ["InProcessTransport"]


class InProcessTransport(httpx.AsyncBaseTransport):
    """
    Answers in the caller's event loop, with no socket: for fast tests.
    """

    def __init__(self, handle: Handler) -> None:
        self._handle = handle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = await self._handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers,
            body,
        )
        if answer is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)
