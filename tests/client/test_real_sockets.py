"""The client over real sockets, against a server that writes crafted bytes: the same rules
hold when the bytes come from the network, cut wherever the server cut them."""

from __future__ import annotations

import asyncio

from serverless_sse.client import Event, aconnect, connect

from .raw_server import chunked, raw_server
from .scripted import Twin

BOM = "\ufeff".encode()


def read_all(twin: Twin, url: str) -> list[Event]:
    sleeps: list[float] = []
    if twin == "sync":
        with connect(url, sleep=sleeps.append) as source:
            return list(source)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> list[Event]:
        async with aconnect(url, sleep=sleep) as source:
            return [event async for event in source]

    return asyncio.run(main())


def test_crafted_bytes_split_at_awkward_places(twin: Twin) -> None:
    first = chunked(
        BOM + b"retry: 5\r",  # CR-only line ends, the BOM ahead of them
        b"id: 1\revent: e\rdata: a\r",
        b"\r",  # the blank line that dispatches comes in a chunk of its own
        b"id: 2\x00\rdata: b\r\n",  # an id with NUL: ignored
        b"\r\nretry: 5s\n\n",  # CRLF cut between chunks; a retry with non-digits
        b"id: 3\ndata: cut mid-ev",  # and the server dies here
        complete=False,
    )
    second = chunked(BOM + b"id: 3\ndata: cut mid-event\n\n")
    with raw_server(first, second) as server:
        events = read_all(twin, server.url)
    assert events == [
        Event("e", "a", "1"),
        Event("message", "b", "1"),
        Event("message", "cut mid-event", "3"),
    ]
    assert server.header("last-event-id") == [None, "1", "3"]


def test_a_204_over_the_network_stops_the_client(twin: Twin) -> None:
    with raw_server(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n") as server:
        assert read_all(twin, server.url) == []
    assert len(server.requests) == 1
