"""The ASGI response that runs a :class:`~serverless_sse.window.StreamWindow`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .eager import run_eagerly
from .errors import SSEError
from .http import error_response
from .window import StreamWindow

__all__ = ["SSE_HEADERS", "Admit", "EventStreamResponse", "StreamEndpoint"]

Admit = Callable[[Scope, StreamWindow], Awaitable[Callable[[], Awaitable[None]]]]
"""Called before the first byte: may refuse the stream (an :class:`SSEError`, answered as
JSON) or adjust the window; returns what to call when the stream ends."""

SSE_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    # nginx and compatible proxies buffer responses unless told not to.
    "x-accel-buffering": "no",
}


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


_SSE_HEADERS = _encoded(SSE_HEADERS)  # shared by every stream: a stream lives long, and many do


class EventStreamResponse:
    """Streams a window to the client, and stops it the moment the client goes away.

    The window watches ``receive`` whenever it sleeps (that is, whenever it has nothing to
    write), so a disconnect ends it at once, without a second task per stream, and without
    cancelling anything (cleanup always runs in order).
    """

    __slots__ = ("_admit", "_headers", "_on_close", "_send", "window")

    def __init__(
        self,
        window: StreamWindow,
        *,
        headers: Mapping[str, str] | None = None,
        admit: Admit | None = None,
        on_close: Callable[[StreamWindow], None] | None = None,
    ) -> None:
        self.window = window
        self._headers = _SSE_HEADERS if not headers else _encoded({**SSE_HEADERS, **headers})
        self._admit = admit
        self._on_close = on_close

    async def _write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    def _write_now(self, chunk: bytes) -> Awaitable[None] | None:
        return run_eagerly(
            self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        window = self.window
        self._send = send
        release = None
        if self._admit is not None:
            try:
                release = await self._admit(scope, window)
            except SSEError as exc:
                await error_response(exc)(scope, receive, send)
                return
        headers = list(self._headers)
        # A buffered (long-poll) response goes back through the platform's proxy, which owns
        # the client's connection: nothing to say about keeping it alive.
        if scope.get("http_version") in ("1.0", "1.1") and not window.buffered:
            headers.append((b"connection", b"keep-alive"))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                await window.run(self._write, self._write_now, receive)
            except OSError:
                # ASGI 2.4 servers raise on writes to a closed connection.
                window.disconnect()
        finally:
            if release is not None:
                await release()
            if self._on_close is not None:
                self._on_close(window)
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class StreamEndpoint:
    """A route's endpoint, ``handler(request) -> response``, for routes that answer with a
    stream: ``Route(path, StreamEndpoint(handler))``.

    Starlette runs a function endpoint inside layers of its own that stay on the stack, with
    the request, for as long as the response runs: for a stream, its whole window, in each of
    thousands of connections (about 3 KB each). This runs the handler, lets the request go, then
    runs the response, from one frame. An error the handler raises reaches the app's exception
    handlers, as from any endpoint.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler
        # Named as its handler (its route's name, and where it is defined, are the handler's).
        functools.update_wrapper(self, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)
