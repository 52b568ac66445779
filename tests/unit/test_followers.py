"""Followers: caught-up single-channel streams that their channel's feed writes to itself.

The same harness as ``test_window`` (a real :class:`StreamWindow` on the memory store, its
bytes read with the project's decoder), always with an eager write, so that a stream that has
caught up is followed by its feed. ``test_window`` runs every window behaviour in both modes;
these are the behaviours of following itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest

from serverless_sse import fanout
from serverless_sse.events import NewEvent
from serverless_sse.fanout import FeedRegistry
from tests.unit.test_window import Client, FlakyStore, Harness


@pytest.fixture(autouse=True)
def _eager_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(Client, "follows", True)
    yield


@pytest.fixture
async def harness() -> Any:
    h = Harness()
    yield h
    await h.aclose()


async def followed_by(feeds: FeedRegistry, channel: str) -> fanout.ChannelFeed:
    """The channel's feed, once a stream follows it."""
    feed = feeds.subscribe(channel, fanout.Wake())
    async with asyncio.timeout(5):
        while not feed._followers:  # noqa: ASYNC110 - nothing signals a new follower
            await asyncio.sleep(0.01)
    return feed


async def test_a_caught_up_stream_gets_new_events_from_its_feed_not_its_task(
    harness: Harness,
) -> None:
    client = await harness.open(["c"], duration=30)
    await harness.publish("c", 1)  # before its feed has started: the stream's task writes it
    await client.until(lambda: client.messages == [1])
    await followed_by(harness.feeds, "c")
    for n in range(2, 6):
        await harness.publish("c", n)
        await client.until(lambda n=n: client.messages[-1:] == [n])
    assert client.messages == [1, 2, 3, 4, 5]
    assert client.eager_writes == 4


async def test_every_follower_is_written_the_same_bytes(harness: Harness) -> None:
    clients = [await harness.open(["c"], duration=30) for _ in range(3)]
    for client in clients:
        await client.until(lambda c=client: c.comments)
    await harness.publish("c", 1)
    for client in clients:
        await client.until(lambda c=client: c.messages == [1])
    written = [client.chunks[-1] for client in clients]
    assert written[0] is written[1] is written[2], "one encoding, one buffer for all"


async def test_a_follower_whose_client_stops_reading_misses_nothing_and_is_followed_again(
    harness: Harness,
) -> None:
    client = await harness.open(["c"], duration=30)
    other = await harness.open(["c"], duration=30)
    await client.until(lambda: client.comments)
    client.gate = asyncio.Event()  # its socket is full
    for n in range(1, 31):
        await harness.publish("c", n)
        await asyncio.sleep(0)
    await other.until(lambda: len(other.messages) == 30)  # the others are not held up
    client.gate.set()
    await client.until(lambda: len(client.messages) == 30)
    assert client.messages == list(range(1, 31))
    written = client.eager_writes
    await harness.publish("c", 31)
    await client.until(lambda: client.messages[-1:] == [31])
    assert client.eager_writes == written + 1, "caught up again, it is followed again"


async def test_events_that_overrun_the_feed_s_ring_reach_followers_from_the_store() -> None:
    h = Harness()
    h.feeds = FeedRegistry(h.store, buffer_events=4, wait=0.5, linger=0.2)
    try:
        client = await h.open(["c"], duration=30)
        await h.publish("c", 1)
        await client.until(lambda: client.messages == [1])
        await followed_by(h.feeds, "c")
        await h.publish("c", *range(2, 12))  # one read of 10 events: the ring keeps 4
        await client.until(lambda: len(client.messages) == 11)
        assert client.messages == list(range(1, 12))
        assert not any(e.type == "reset" for e in client.events)
    finally:
        await h.aclose()


async def followed_stream(harness: Harness, **options: Any) -> Client:
    """A stream that got event 1 and is now followed by its feed."""
    client = await harness.open(["c"], duration=30, **options)
    await harness.publish("c", 1)
    await client.until(lambda: client.messages == [1])
    await followed_by(harness.feeds, "c")
    return client


async def test_a_followed_stream_s_heartbeats_are_written_by_its_feed(harness: Harness) -> None:
    client = await followed_stream(harness, heartbeat=0.2)
    written = client.eager_writes
    beats = len([c for c in client.comments if c.text == "hb"])
    await client.until(lambda: len([c for c in client.comments if c.text == "hb"]) >= beats + 3)
    assert client.eager_writes >= written + 3, "the feed wrote them, the stream's task slept"


async def test_a_followed_stream_ends_after_the_final_event_when_its_channel_closes(
    harness: Harness,
) -> None:
    client = await followed_stream(harness)
    await harness.publish("c", 2)
    await harness.store.close("c", NewEvent("complete", '{"ok":true}'))
    await client.finished()
    assert [e.type for e in client.events] == ["message", "message", "complete"]
    assert client.window.ended_by == "complete"


async def test_a_followed_stream_is_told_when_its_log_is_lost(harness: Harness) -> None:
    client = await followed_stream(harness)
    harness.store.forget_log("c")
    await harness.publish("c", 10, 11)
    await client.until(lambda: client.messages == [1, 10, 11])
    reset = next(e for e in client.events if e.type == "reset")
    assert json.loads(reset.data)["reason"] == "epoch_changed"


async def test_a_followed_stream_gets_error_when_the_store_fails() -> None:
    h = Harness()
    h.store = FlakyStore()
    h.feeds = FeedRegistry(h.store, wait=0.1, linger=0.2)
    try:
        client = await followed_stream(h)
        h.store.failing = True
        await client.finished()
        assert client.events[-1].type == "error"
        assert client.window.ended_by == "error"
    finally:
        await h.aclose()


async def test_a_stream_whose_feed_stops_reads_the_store_itself(harness: Harness) -> None:
    client = await followed_stream(harness, heartbeat=0.2)
    feed = await followed_by(harness.feeds, "c")
    await feed.stop()
    await harness.publish("c", 2)
    await client.until(lambda: client.messages == [1, 2])


async def test_a_stream_that_joins_between_rounds_gets_only_what_it_lacks(
    harness: Harness,
) -> None:
    early = await followed_stream(harness)
    feed = await followed_by(harness.feeds, "c")
    (follower,) = feed._followers

    def slow_write_now(chunk: bytes) -> Awaitable[None] | None:
        time.sleep(0.3)  # this round keeps the loop busy: the next one waits as long
        return Client.write_now(early, chunk)

    follower.write_now = slow_write_now
    await harness.publish("c", 2)  # a slow round, then event 3 waits for the next one
    await early.until(lambda: early.messages == [1, 2])
    await harness.publish("c", 3)
    late = await harness.open(["c"], cursor=early.events[-1].last_event_id, duration=30)
    await late.until(lambda: late.messages == [3])  # from the ring, by its own task
    await harness.publish("c", 4)
    await early.until(lambda: early.messages == [1, 2, 3, 4])
    await late.until(lambda: late.messages == [3, 4])
    assert late.messages == [3, 4] and early.messages == [1, 2, 3, 4]


async def test_the_next_round_waits_as_long_as_the_last_one_took(harness: Harness) -> None:
    client = await harness.open(["c"], duration=30)
    await client.until(lambda: client.comments)
    took: list[tuple[float, float]] = []
    loop = asyncio.get_running_loop()

    def slow_write_now(chunk: bytes) -> Awaitable[None] | None:
        started = loop.time()
        time.sleep(0.1)  # a round that keeps the loop busy
        took.append((started, loop.time()))
        return Client.write_now(client, chunk)

    feed = await followed_by(harness.feeds, "c")
    follower = next(iter(feed._followers))
    follower.write_now = slow_write_now
    await harness.publish("c", 1)
    await client.until(lambda: client.messages == [1])
    await harness.publish("c", 2)
    await client.until(lambda: client.messages == [1, 2])
    (started, ended), (second, _) = took
    assert second >= ended + (ended - started) >= ended + 0.1
