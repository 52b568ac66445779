"""A scripted server for client tests, behind httpx's MockTransport: each request gets the next
reply of a script, byte chunk by byte chunk, and is recorded. Works for both twins, and runs
whole sources to their end without sockets or real sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from serverless_sse.client import (
    AsyncEventSource,
    Event,
    EventSource,
    StateChange,
    StreamError,
    aconnect,
    connect,
)

SSE = {"content-type": "text/event-stream; charset=utf-8"}
Twin = Literal["sync", "async"]


@dataclass
class Reply:
    """One answer: status, headers and body chunks; ``cut`` drops the connection after the
    chunks (a read error, as when a server dies); ``refuse`` fails the connection itself."""

    chunks: list[bytes] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: dict(SSE))
    cut: bool | type[httpx.TransportError] = False
    refuse: bool = False

    def cut_error(self, request: httpx.Request) -> httpx.TransportError:
        kind = httpx.ReadError if self.cut is True else self.cut
        assert kind is not False
        return kind("connection cut", request=request)


def window(
    *events: bytes, retry: int | None = None, cut: bool | type[httpx.TransportError] = False
) -> Reply:
    """A 200 event stream made of ``events`` (each already encoded), one chunk each."""
    chunks = [b"retry: %d\n\n" % retry] if retry is not None else []
    return Reply([*chunks, *events], cut=cut)


class _Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, reply: Reply, request: httpx.Request) -> None:
        self.reply = reply
        self.request = request

    def __iter__(self) -> Iterator[bytes]:
        yield from self.reply.chunks
        if self.reply.cut:
            raise self.reply.cut_error(self.request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.reply.chunks:
            yield chunk
        if self.reply.cut:
            raise self.reply.cut_error(self.request)


class Script:
    """Replies in order; once they run out, every request gets ``204 No Content``."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else Reply(status=204, headers={})
        if reply.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(
            reply.status, headers=reply.headers, stream=_Chunks(reply, request), request=request
        )

    def header(self, name: str) -> list[str | None]:
        """``name`` as each request sent it."""
        return [r.headers.get(name) for r in self.requests]


@dataclass
class Outcome:
    events: list[Event]
    changes: list[StateChange]
    sleeps: list[float]
    error: StreamError | None
    source: EventSource | AsyncEventSource

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def data(self) -> list[str]:
        return [e.data for e in self.events]

    @property
    def states(self) -> list[str]:
        return [str(c.state) for c in self.changes]


def run(
    twin: Twin,
    script: Script,
    *,
    url: str = "http://test/channels/c/stream",
    setup: Callable[[EventSource | AsyncEventSource], None] | None = None,
    limit: int | None = None,
    **options: Any,
) -> Outcome:
    """Iterate a source over ``script`` to its end (or ``limit`` events); collect everything.

    A :class:`StreamError` that ends iteration is caught and returned; anything else raises.
    """
    changes: list[StateChange] = []
    sleeps: list[float] = []
    events: list[Event] = []
    options.setdefault("on_state", changes.append)
    transport = httpx.MockTransport(script.handle)
    follow = bool(options.pop("follow_redirects", False))  # an option of the httpx client
    error: StreamError | None = None
    if twin == "sync":
        source = connect(
            url,
            client=httpx.Client(transport=transport, follow_redirects=follow),
            sleep=sleeps.append,
            **options,
        )
        if setup is not None:
            setup(source)
        try:
            for event in source:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    break
        except StreamError as exc:
            error = exc
        return Outcome(events, changes, sleeps, error, source)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> Outcome:
        nonlocal error
        source = aconnect(
            url,
            client=httpx.AsyncClient(transport=transport, follow_redirects=follow),
            sleep=sleep,
            **options,
        )
        if setup is not None:
            setup(source)
        try:
            async for event in source:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    break
        except StreamError as exc:
            error = exc
        return Outcome(events, changes, sleeps, error, source)

    return asyncio.run(main())
