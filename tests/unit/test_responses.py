"""The ASGI response around a window: headers, disconnects, cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

from serverless_sse.events import NewEvent
from serverless_sse.fanout import FeedRegistry, Wake
from serverless_sse.responses import EventStreamResponse
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.window import StreamWindow, plan_stream


async def make_window(store: MemoryStore, feeds: FeedRegistry) -> StreamWindow:
    plan = await plan_stream(store, ["c"], cursor=None)
    return StreamWindow(
        store=store, feeds=feeds, plan=plan, fmt="named", duration=60, heartbeat=30, retry_ms=10
    )


async def test_a_client_disconnect_ends_the_response_promptly() -> None:
    store = MemoryStore()
    feeds = FeedRegistry(store, linger=0.1)
    window = await make_window(store, feeds)
    closed: list[StreamWindow] = []
    response = EventStreamResponse(window, on_close=closed.append)
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1"}
    task = asyncio.create_task(response(scope, receive, send))
    await asyncio.sleep(0.1)
    assert not task.done()
    disconnect.set()
    async with asyncio.timeout(1):
        await task
    assert window.ended_by == "disconnect"
    assert closed == [window]
    start = sent[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"connection"] == b"keep-alive"
    assert sent[1]["body"].startswith(b"retry: 10\n")
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    await feeds.aclose()


async def test_no_connection_header_outside_http_1() -> None:
    store = MemoryStore()
    feeds = FeedRegistry(store)
    window = await make_window(store, feeds)
    window.duration = 0.05
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await EventStreamResponse(window)({"type": "http", "http_version": "2"}, receive, send)
    assert b"connection" not in dict(sent[0]["headers"])
    assert window.ended_by == "timeout"
    await feeds.aclose()


async def test_a_write_to_a_closed_connection_ends_the_window() -> None:
    """ASGI 2.4 servers raise OSError on a write after the client left."""
    store = MemoryStore()
    feeds = FeedRegistry(store)
    window = await make_window(store, feeds)
    window.duration = 5
    writes = 0

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal writes
        writes += 1
        if writes > 2:
            raise OSError("connection reset")

    task = asyncio.create_task(EventStreamResponse(window)({"type": "http"}, receive, send))
    await asyncio.sleep(0.05)
    await store.append("c", [NewEvent("m", "1")])
    async with asyncio.timeout(2):
        await task
    assert window.ended_by == "disconnect"
    await feeds.aclose()


async def test_a_stream_runs_in_one_task_that_also_watches_its_client() -> None:
    store = MemoryStore()
    feeds = FeedRegistry(store, linger=0.1)
    window = await make_window(store, feeds)
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    before = asyncio.all_tasks()
    task = asyncio.create_task(EventStreamResponse(window)({"type": "http"}, receive, send))
    await asyncio.sleep(0.1)
    started = {t for t in asyncio.all_tasks() - before if not t.get_name().startswith("feed")}
    assert started == {task}
    disconnect.set()
    async with asyncio.timeout(1):
        await task
    await feeds.aclose()


async def test_a_client_that_leaves_while_its_feed_writes_for_it_ends_the_stream_at_once() -> None:
    store = MemoryStore()
    feeds = FeedRegistry(store, linger=0.1)
    window = await make_window(store, feeds)
    disconnect = asyncio.Event()
    bodies: list[bytes] = []
    written = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        bodies.append(message.get("body", b""))
        written.set()

    task = asyncio.create_task(EventStreamResponse(window)({"type": "http"}, receive, send))
    for n in range(2):  # the second event is written by the feed: the stream is followed
        await store.append("c", [NewEvent("m", str(n))])
        async with asyncio.timeout(1):
            while not any(b"data: %d" % n in body for body in bodies):
                written.clear()
                await written.wait()
    feed = feeds.subscribe("c", Wake())
    assert feed._followers, "the stream is followed"
    disconnect.set()
    async with asyncio.timeout(1):
        await task
    assert window.ended_by == "disconnect"
    assert not feed._followers
    await feeds.aclose()


async def test_a_stream_that_never_sleeps_still_notices_its_client_leaving() -> None:
    """Catching up a long backlog page by page, a stream never sleeps (where it would see the
    client leave): it asks now and then instead."""
    store = MemoryStore(retention_events=100_000)
    for start in range(0, 20_000, 1000):
        await store.append("c", [NewEvent("m", str(n)) for n in range(start, start + 1000)])
    feeds = FeedRegistry(store, linger=0.1)
    plan = await plan_stream(store, ["c"], cursor=None, from_start=True)
    window = StreamWindow(
        store=store, feeds=feeds, plan=plan, fmt="named", duration=60, heartbeat=30,
        retry_ms=10, page=10,
    )  # fmt: skip
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}  # gone from the start

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.001)  # a real socket takes its time

    async with asyncio.timeout(10):
        await EventStreamResponse(window)({"type": "http"}, receive, send)
    assert window.ended_by == "disconnect"
    assert window.delivered < 20_000, "it stopped before the end of the backlog"
    await feeds.aclose()
