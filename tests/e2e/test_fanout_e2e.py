"""The fan-out under a real server: a client that stops reading (its socket fills up) while the
feed writes to every caught-up stream of its channel loses nothing, and holds nobody up."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from serverless_sse.protocol import EventStreamDecoder, ServerSentEvent
from tests.servers import UvicornServer
from tests.sse import read_stream
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e

REDIS_DB = 5
EVENTS = 1000
# 1,000 events of ~10 KB: 10 MB, more than the sockets between the server and a client that
# stopped reading hold (its 1 MB, and at most 4 MB of the server's send buffer).
PAD = "x" * 10_000


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    store = STORE_URLS[request.param](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_WINDOW_SECONDS": "120", "SSE_MAX_BATCH_EVENTS": "20"}
    with UvicornServer(env) as running:
        yield running


def open_unread_stream(port: int, path: str) -> socket.socket:
    """A stream whose client reads the response head and then stops reading."""
    sock = socket.socket()
    # Sized before connecting (it bounds the TCP window for good): room for 1 MB, a few
    # segments of loopback's 64 KB, so that reading later goes at full speed.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def read_until_events(sock: socket.socket, count: int) -> list[ServerSentEvent]:
    """Read the chunked body on, decoding events, until ``count`` messages arrived."""
    decoder = EventStreamDecoder()
    events: list[ServerSentEvent] = []
    buffer = b""
    sock.settimeout(30)
    while len([e for e in events if e.type == "message"]) < count:
        buffer += sock.recv(1 << 20)
        while True:  # undo the chunked transfer coding
            eol = buffer.find(b"\r\n")
            if eol < 0:
                break
            size = int(buffer[:eol], 16)
            if len(buffer) < eol + 2 + size + 2:
                break
            chunk = buffer[eol + 2 : eol + 2 + size]
            buffer = buffer[eol + 2 + size + 2 :]
            events += [i for i in decoder.feed(chunk) if isinstance(i, ServerSentEvent)]
    return events


async def test_a_client_that_stops_reading_gets_every_event_later_and_holds_nobody_up(
    server: UvicornServer,
) -> None:
    channel = f"e2e/{uuid.uuid4().hex[:10]}"
    path = f"/channels/{channel}/stream"
    stalled = await asyncio.to_thread(open_unread_stream, server.port, path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            reader = asyncio.create_task(
                read_stream(http, path, stop_after_events=EVENTS, max_seconds=60)
            )
            await asyncio.sleep(0.5)  # both streams are open and caught up
            for start in range(0, EVENTS, 20):
                batch = [{"data": {"n": n, "pad": PAD}} for n in range(start, start + 20)]
                answer = await http.post(f"/channels/{channel}/events", json=batch)
                assert answer.status_code == 201, answer.text
            result = await reader
        # The reader got everything while the other client read nothing.
        assert [d["n"] for d in result.data()] == list(range(EVENTS))
        events = await asyncio.to_thread(read_until_events, stalled, EVENTS)
        numbers = [json.loads(e.data)["n"] for e in events if e.type == "message"]
        assert numbers == list(range(EVENTS)), "every event, once, in order"
    finally:
        stalled.close()
