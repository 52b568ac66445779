"""The service's own state: streams when the server stops, and what /metrics tells of it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from serverless_sse.protocol import EventStreamDecoder, ServerSentEvent
from serverless_sse.service import Service
from serverless_sse.settings import Settings
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.window import plan_stream
from tests.polling import wait_until


def metric(service: Service, name: str) -> float:
    for family in text_string_to_metric_families(service.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def run_stream(service: Service, channel: str) -> list[ServerSentEvent]:
    """Open a stream on ``channel`` (a 60 s window) and read it to its end."""
    plan = await plan_stream(service.store, [channel], cursor=None)
    response = service.stream(plan, fmt="named", window=60)
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))

    scope = {"type": "http", "http_version": "1.1", "headers": [], "client": ("127.0.0.1", 1)}
    await response(scope, receive, send)  # type: ignore[arg-type]
    decoder = EventStreamDecoder()
    return [i for i in decoder.feed(b"".join(sent)) if isinstance(i, ServerSentEvent)]


async def test_a_stream_opened_after_the_exit_signal_ends_at_once_with_timeout() -> None:
    service = Service(Settings(), MemoryStore())
    try:
        service.shutdown_streams()
        async with asyncio.timeout(30):  # a 60 s window: ending at all is the point
            events = await run_stream(service, "c")
        assert [e.type for e in events] == ["timeout"]
        assert json.loads(events[0].data)["reason"] == "server_shutdown"
        assert events[0].last_event_id  # the cursor to resume from elsewhere
        assert service.windows == set()
    finally:
        await service.aclose()


async def test_shutdown_streams_ends_open_streams_with_timeout() -> None:
    service = Service(Settings(), MemoryStore())
    try:
        stream = asyncio.create_task(run_stream(service, "c"))
        await wait_until(lambda: bool(service.windows), "the stream is open")
        service.shutdown_streams()
        async with asyncio.timeout(30):
            events = await stream
        assert [e.type for e in events] == ["timeout"]
        assert json.loads(events[0].data)["reason"] == "server_shutdown"
    finally:
        await service.aclose()


async def test_metrics_count_channel_feeds_and_event_loop_tasks() -> None:
    service = Service(Settings(), MemoryStore())
    try:
        assert metric(service, "sse_channel_feeds") == 0
        listener = asyncio.Event()
        feeds = [service.feeds.subscribe(c, listener) for c in ("a", "b")]
        assert metric(service, "sse_channel_feeds") == 2
        # The feeds' readers are tasks of the loop: the gauge counts what is alive now.
        assert metric(service, "sse_event_loop_tasks") == len(asyncio.all_tasks())
        assert metric(service, "process_open_fds") > 0
        assert metric(service, "process_resident_memory_bytes") > 0
        for feed in feeds:
            service.feeds.unsubscribe(feed, listener)
        await service.feeds.aclose()
        assert metric(service, "sse_channel_feeds") == 0
    finally:
        await service.aclose()
