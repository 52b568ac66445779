"""The ASGI response that runs a :class:`~serverless_sse.window.StreamWindow`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

from starlette.types import Message, Receive, Scope, Send

from .eager import run_eagerly
from .errors import SSEError
from .http import error_response
from .window import StreamWindow

__all__ = ["SSE_HEADERS", "Admit", "EventStreamResponse"]

Admit = Callable[[Scope, StreamWindow], Awaitable[Callable[[], Awaitable[None]]]]
"""Called before the first byte: may refuse the stream (an :class:`SSEError`, answered as
JSON) or adjust the window; returns what to call when the stream ends."""

SSE_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    # nginx and compatible proxies buffer responses unless told not to.
    "x-accel-buffering": "no",
}


class EventStreamResponse:
    """Streams a window to the client, and stops it the moment the client goes away.

    Disconnects are watched by one small task reading ``receive``; it tells the window, which
    leaves its loop at once (no cancellation is needed, so cleanup always runs in order).
    """

    def __init__(
        self,
        window: StreamWindow,
        *,
        headers: Mapping[str, str] | None = None,
        admit: Admit | None = None,
        on_close: Callable[[StreamWindow], None] | None = None,
    ) -> None:
        self.window = window
        self._headers = {**SSE_HEADERS, **(headers or {})}
        self._admit = admit
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        window = self.window

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        def write_now(chunk: bytes) -> Awaitable[None] | None:
            return run_eagerly(
                send({"type": "http.response.body", "body": chunk, "more_body": True})
            )

        async def watch() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    window.disconnect()
                    return

        release = None
        if self._admit is not None:
            try:
                release = await self._admit(scope, window)
            except SSEError as exc:
                await error_response(exc)(scope, receive, send)
                return
        headers = [(k.encode(), v.encode()) for k, v in self._headers.items()]
        # A buffered (long-poll) response goes back through the platform's proxy, which owns
        # the client's connection: nothing to say about keeping it alive.
        if scope.get("http_version") in ("1.0", "1.1") and not window.buffered:
            headers.append((b"connection", b"keep-alive"))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            watcher = asyncio.create_task(watch())
            try:
                await window.run(write, write_now)
            except OSError:
                # ASGI 2.4 servers raise on writes to a closed connection.
                window.disconnect()
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        finally:
            if release is not None:
                await release()
            if self._on_close is not None:
                self._on_close(window)
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
