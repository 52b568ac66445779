"""The stream window, driven in-process against the memory store.

Each test runs a real :class:`StreamWindow` with short timings and decodes what it writes with
the project's own decoder, exactly as a client would read it. Every test runs twice: once with
the window writing everything from its own task, once with an eager write as well, so that its
channel's feed writes for it while it is caught up (a follower), as under a real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from serverless_sse import fanout
from serverless_sse.cursor import Cursor, Position
from serverless_sse.errors import CursorError, StoreUnavailable
from serverless_sse.events import EventFormat, NewEvent, StoredEvent
from serverless_sse.fanout import FeedRegistry
from serverless_sse.protocol import Comment, EventStreamDecoder, ServerSentEvent
from serverless_sse.stores.base import ReadResult
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.window import StreamWindow, plan_stream


def msg(n: int) -> NewEvent:
    return NewEvent("message", json.dumps({"n": n}))


class Client:
    """Runs one window and records what a reader of its bytes sees.

    ``gate``, when set to a cleared event, is a client that stopped reading: writes wait."""

    follows = False
    """Whether windows get an eager write, and so may be followed (set per test run)."""

    def __init__(self, window: StreamWindow) -> None:
        self.window = window
        self.decoder = EventStreamDecoder()
        self.items: list[ServerSentEvent | Comment] = []
        self.raw = bytearray()
        self.chunks: list[bytes] = []
        self.eager_writes = 0
        self.changed = asyncio.Event()
        self.gate: asyncio.Event | None = None
        write_now = self.write_now if self.follows else None
        self.task = asyncio.create_task(window.run(self.write, write_now))

    async def write(self, chunk: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self._received(chunk)

    def write_now(self, chunk: bytes) -> Awaitable[None] | None:
        """Done at once while the client reads; a pending write while it does not."""
        if self.gate is not None and not self.gate.is_set():
            return asyncio.ensure_future(self.write(chunk))
        self.eager_writes += 1
        self._received(chunk)
        return None

    def _received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.raw += chunk
        self.items.extend(self.decoder.feed(chunk))
        self.changed.set()

    @property
    def events(self) -> list[ServerSentEvent]:
        return [i for i in self.items if isinstance(i, ServerSentEvent)]

    @property
    def messages(self) -> list[int]:
        return [json.loads(e.data)["n"] for e in self.events if e.type == "message"]

    @property
    def comments(self) -> list[Comment]:
        return [i for i in self.items if isinstance(i, Comment)]

    async def until(self, predicate: Any, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def finished(self, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            await self.task


class Harness:
    def __init__(self, **store_options: Any) -> None:
        self.store = MemoryStore(**store_options)
        self.feeds = FeedRegistry(self.store, wait=0.5, linger=0.2)
        self.clients: list[Client] = []

    async def open(
        self,
        channels: Sequence[str],
        *,
        cursor: str | None = None,
        from_start: bool = False,
        duration: float = 5.0,
        heartbeat: float = 10.0,
        fmt: EventFormat = "named",
        long_poll: dict[str, Any] | None = None,
        **options: Any,
    ) -> Client:
        plan = await plan_stream(
            self.store,
            list(channels),
            cursor=cursor,
            from_start=from_start,
            multiplexed=len(channels) > 1,
        )
        window = StreamWindow(
            store=self.store,
            feeds=self.feeds,
            plan=plan,
            fmt=fmt,
            duration=duration,
            heartbeat=heartbeat,
            retry_ms=1500,
            **options,
        )
        if long_poll is not None:
            window.buffer(**long_poll)
        client = Client(window)
        self.clients.append(client)
        return client

    async def publish(self, channel: str, *numbers: int) -> None:
        await self.store.append(channel, [msg(n) for n in numbers])

    async def aclose(self) -> None:
        for client in self.clients:
            client.window.disconnect()
        await asyncio.gather(*(c.task for c in self.clients), return_exceptions=True)
        await self.feeds.aclose()


@pytest.fixture(autouse=True, params=["own-task", "followed"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(Client, "follows", request.param == "followed")
    mode: str = request.param
    return mode


@pytest.fixture
async def harness() -> Any:
    h = Harness()
    yield h
    await h.aclose()


async def test_the_stream_opens_with_retry_and_a_comment_before_any_event(
    harness: Harness,
) -> None:
    client = await harness.open(["c"])
    await client.until(lambda: client.comments)
    assert client.raw.startswith(b"retry: 1500\n: ok\n\n")
    assert client.decoder.retry == 1500
    assert client.events == []


async def test_without_a_cursor_only_new_events_arrive(harness: Harness) -> None:
    await harness.publish("c", 1, 2)
    client = await harness.open(["c"])
    await harness.publish("c", 3, 4)
    await client.until(lambda: len(client.messages) == 2)
    assert client.messages == [3, 4]


async def test_from_start_replays_the_retained_history(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3)
    client = await harness.open(["c"], from_start=True)
    await harness.publish("c", 4)
    await client.until(lambda: len(client.messages) == 4)
    assert client.messages == [1, 2, 3, 4]


async def test_each_event_id_is_the_cursor_just_after_it(harness: Harness) -> None:
    await harness.publish("c", 1, 2)
    client = await harness.open(["c"], from_start=True)
    await client.until(lambda: len(client.messages) == 2)
    epoch = (await harness.store.state("c")).epoch
    positions = [Cursor.decode(e.last_event_id).position("c") for e in client.events]
    assert positions == [Position(epoch, 1), Position(epoch, 2)]


async def test_a_cursor_resumes_right_after_it(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3, 4, 5)
    first = await harness.open(["c"], from_start=True)
    await first.until(lambda: len(first.messages) == 5)
    resume_from = first.events[2].last_event_id  # after event 3
    second = await harness.open(["c"], cursor=resume_from)
    await harness.publish("c", 6)
    await second.until(lambda: len(second.messages) == 3)
    assert second.messages == [4, 5, 6]


async def test_the_window_ends_with_timeout_carrying_the_cursor(harness: Harness) -> None:
    await harness.publish("c", 1)
    client = await harness.open(["c"], duration=0.4)
    await harness.publish("c", 2)
    await client.finished()
    timeout = client.events[-1]
    assert timeout.type == "timeout"
    assert json.loads(timeout.data) == {"reason": "window_elapsed", "retry_ms": 1500}
    assert timeout.last_event_id == client.events[-2].last_event_id
    assert client.window.ended_by == "timeout"


async def test_consecutive_windows_lose_and_repeat_nothing(harness: Harness) -> None:
    received: list[int] = []
    cursor: str | None = None
    publisher_done = asyncio.Event()

    async def publish() -> None:
        for n in range(1, 61):
            await harness.publish("c", n)
            await asyncio.sleep(0.01)
        publisher_done.set()

    await harness.publish("c", 0)
    task = asyncio.create_task(publish())
    while not (publisher_done.is_set() and received and received[-1] == 60):
        client = await harness.open(["c"], cursor=cursor, from_start=cursor is None, duration=0.15)
        await client.finished()
        received.extend(client.messages)
        cursor = client.decoder.last_event_id
    await task
    assert received == list(range(61))


async def test_an_idle_stream_sends_heartbeats(harness: Harness) -> None:
    client = await harness.open(["c"], duration=1.0, heartbeat=0.2)
    await client.finished()
    heartbeats = [c for c in client.comments if c.text == "hb"]
    assert 3 <= len(heartbeats) <= 6


async def test_a_busy_stream_needs_no_heartbeat(harness: Harness) -> None:
    client = await harness.open(["c"], duration=0.8, heartbeat=0.3)
    for n in range(20):
        await harness.publish("c", n)
        await asyncio.sleep(0.03)
    await client.finished()
    assert len(client.messages) == 20
    assert len([c for c in client.comments if c.text == "hb"]) <= 1


async def test_a_trimmed_history_is_reported_with_reset_then_the_oldest_event() -> None:
    h = Harness(retention_events=100)
    try:
        await h.publish("c", 1)
        cursor = await h.open(["c"], from_start=True, duration=0.2)
        await cursor.finished()
        stale = cursor.events[0].last_event_id  # after event 1
        for start in range(2, 602, 100):
            await h.publish("c", *range(start, start + 100))
        client = await h.open(["c"], cursor=stale)
        await client.until(lambda: len(client.messages) == 100)
        reset = client.events[0]
        assert reset.type == "reset"
        assert json.loads(reset.data) == {
            "reason": "history_trimmed",
            "missed_from": 2,
            "missed_to": 501,
        }
        assert client.messages == list(range(502, 602))
        assert client.window.resets == {"history_trimmed": 1}
    finally:
        await h.aclose()


async def test_a_lost_log_is_reported_as_epoch_changed(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3)
    client = await harness.open(["c"], from_start=True)
    await client.until(lambda: len(client.messages) == 3)
    harness.store.forget_log("c")
    await harness.publish("c", 10, 11)
    await client.until(lambda: len(client.messages) == 5)
    reset = next(e for e in client.events if e.type == "reset")
    assert json.loads(reset.data) == {"reason": "epoch_changed", "missed_from": 4, "missed_to": 0}
    assert client.messages == [1, 2, 3, 10, 11]
    new_epoch = (await harness.store.state("c")).epoch
    assert Cursor.decode(client.events[-1].last_event_id).position("c") == Position(new_epoch, 2)


async def test_a_stale_cursor_from_a_lost_log_gets_reset(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3)
    old = await harness.open(["c"], from_start=True, duration=0.2)
    await old.finished()
    harness.store.forget_log("c")
    await harness.publish("c", 7)
    client = await harness.open(["c"], cursor=old.decoder.last_event_id)
    await client.until(lambda: client.messages == [7])
    assert client.events[0].type == "reset"
    assert json.loads(client.events[0].data)["reason"] == "epoch_changed"


async def test_a_cursor_from_an_empty_channel_stays_valid_when_events_arrive(
    harness: Harness,
) -> None:
    first = await harness.open(["c"], duration=0.2)
    await first.finished()
    cursor = first.decoder.last_event_id
    assert Cursor.decode(cursor).position("c") == Position("", 0)
    await harness.publish("c", 1, 2)
    client = await harness.open(["c"], cursor=cursor)
    await client.until(lambda: len(client.messages) == 2)
    assert client.messages == [1, 2]
    assert all(e.type == "message" for e in client.events)


async def test_a_closed_channel_ends_after_its_final_event(harness: Harness) -> None:
    await harness.publish("c", 1)
    client = await harness.open(["c"], from_start=True, duration=30)
    await harness.store.close("c", NewEvent("complete", '{"ok":true}'))
    await client.finished()
    assert [e.type for e in client.events] == ["message", "complete"]
    assert client.window.ended_by == "complete"
    plan = await plan_stream(harness.store, ["c"], cursor=client.decoder.last_event_id)
    assert plan.finished


async def test_a_reader_behind_a_closed_channel_gets_the_rest(harness: Harness) -> None:
    await harness.publish("c", 1, 2)
    await harness.store.close("c", NewEvent("complete", "null"))
    plan = await plan_stream(harness.store, ["c"], cursor=None, from_start=True)
    assert not plan.finished
    client = await harness.open(["c"], from_start=True)
    await client.finished()
    assert [e.type for e in client.events] == ["message", "message", "complete"]


async def test_no_cursor_on_a_closed_channel_means_nothing_more_will_come(
    harness: Harness,
) -> None:
    await harness.store.close("c", NewEvent("complete", "null"))
    assert (await plan_stream(harness.store, ["c"], cursor=None)).finished


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def read(self, *args: Any, **kwargs: Any) -> ReadResult:
        if self.failing:
            raise StoreUnavailable("redis is down")
        return await super().read(*args, **kwargs)


async def test_a_store_failure_mid_stream_sends_error_and_ends() -> None:
    h = Harness()
    h.store = FlakyStore()
    h.feeds = FeedRegistry(h.store, wait=0.1, linger=0.2)
    try:
        await h.publish("c", 1)
        client = await h.open(["c"], from_start=True, duration=30)
        await client.until(lambda: client.messages == [1])
        h.store.failing = True
        await client.finished()
        error = client.events[-1]
        assert error.type == "error"
        assert json.loads(error.data) == {"error": "store_unavailable", "detail": "redis is down"}
        assert error.last_event_id == client.events[0].last_event_id
        assert client.window.ended_by == "error"
    finally:
        await h.aclose()


async def test_a_disconnect_stops_the_window_and_releases_the_feed(harness: Harness) -> None:
    client = await harness.open(["c"], duration=30)
    await client.until(lambda: client.comments)
    assert len(harness.feeds) == 1
    client.window.disconnect()
    await client.finished(limit=1.0)
    assert client.window.ended_by == "disconnect"
    await asyncio.sleep(0.5)
    assert len(harness.feeds) == 0, "an unused feed is stopped after its linger"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("feed:")]


async def test_shutdown_ends_the_stream_with_timeout_at_once(harness: Harness) -> None:
    client = await harness.open(["c"], duration=30)
    await client.until(lambda: client.comments)
    client.window.shutdown()
    await client.finished(limit=1.0)
    timeout = client.events[-1]
    assert (timeout.type, json.loads(timeout.data)["reason"]) == ("timeout", "server_shutdown")


async def test_envelope_format_puts_the_type_inside_the_data(harness: Harness) -> None:
    client = await harness.open(["c"], fmt="envelope", duration=0.3)
    await harness.store.append("c", [NewEvent("vote_update", '{"poll":"p","tally":{"a":1}}')])
    await client.finished()
    update, timeout = client.events
    assert update.type == "message"
    assert json.loads(update.data) == {"type": "vote_update", "poll": "p", "tally": {"a": 1}}
    assert timeout.type == "message"
    assert json.loads(timeout.data)["type"] == "timeout"


async def test_a_multiplexed_stream_carries_every_channel_in_one_cursor(
    harness: Harness,
) -> None:
    await harness.publish("a", 1)
    await harness.publish("b", 100)
    client = await harness.open(["a", "b"], from_start=True)
    await client.until(lambda: len(client.messages) == 2)
    await harness.publish("b", 101)
    await harness.publish("a", 2)
    await client.until(lambda: len(client.messages) == 4)
    assert sorted(client.messages) == [1, 2, 100, 101]
    last = Cursor.decode(client.events[-1].last_event_id)
    assert last.position("a") is not None and last.position("a").seq == 2  # type: ignore[union-attr]
    assert last.position("b") is not None and last.position("b").seq == 2  # type: ignore[union-attr]

    await harness.publish("a", 3)
    await harness.publish("b", 102)
    resumed = await harness.open(["a", "b"], cursor=client.events[-1].last_event_id)
    await resumed.until(lambda: len(resumed.messages) == 2)
    assert sorted(resumed.messages) == [3, 102]


async def test_a_multiplexed_reset_names_its_channel(harness: Harness) -> None:
    await harness.publish("a", 1)
    await harness.publish("b", 1)
    client = await harness.open(["a", "b"], from_start=True)
    await client.until(lambda: len(client.messages) == 2)
    harness.store.forget_log("b")
    await harness.publish("b", 5)
    await client.until(lambda: len(client.messages) == 3)
    reset = next(e for e in client.events if e.type == "reset")
    assert json.loads(reset.data)["channel"] == "b"


async def test_a_multiplexed_stream_ends_when_every_channel_is_closed(harness: Harness) -> None:
    client = await harness.open(["a", "b"], duration=30)
    await client.until(lambda: client.comments)
    await harness.store.close("a", NewEvent("complete", "null"))
    await harness.publish("b", 1)
    await client.until(lambda: client.messages == [1])
    assert not client.task.done()
    await harness.store.close("b", NewEvent("complete", "null"))
    await client.finished()
    assert [e.type for e in client.events].count("complete") == 2


async def test_a_cursor_for_another_channel_is_refused(harness: Harness) -> None:
    cursor = Cursor.encode_positions({"other": Position("", 0)})
    with pytest.raises(CursorError):
        await plan_stream(harness.store, ["c"], cursor=cursor)


async def test_a_cursor_ahead_of_the_log_is_refused(harness: Harness) -> None:
    (appended,) = await harness.store.append("c", [msg(1)])
    cursor = Cursor.encode_positions({"c": Position(appended.epoch, 5)})
    with pytest.raises(CursorError):
        await plan_stream(harness.store, ["c"], cursor=cursor)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read(self, *args: Any, **kwargs: Any) -> ReadResult:
        self.reads += 1
        return await super().read(*args, **kwargs)


async def test_streams_on_one_channel_share_one_store_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()
    h.store = CountingStore()
    h.feeds = FeedRegistry(h.store, wait=5.0, linger=0.2)
    encoded = 0
    real_event_body = fanout.event_body

    def counting_event_body(*args: Any) -> bytes:
        nonlocal encoded
        encoded += 1
        return real_event_body(*args)

    monkeypatch.setattr(fanout, "event_body", counting_event_body)
    try:
        clients = [await h.open(["c"], duration=30) for _ in range(50)]
        for client in clients:
            await client.until(lambda c=client: c.comments)
        await asyncio.sleep(0.1)
        reads_before = h.store.reads
        for n in range(20):
            await h.publish("c", n)
            await asyncio.sleep(0.005)
        for client in clients:
            await client.until(lambda c=client: len(c.messages) == 20)
            assert client.messages == list(range(20))
        reads_during = h.store.reads - reads_before
        assert reads_during <= 25, f"{reads_during} store reads for 20 events and 50 streams"
        assert encoded == 20, "each event is encoded once, not once per stream"
    finally:
        await h.aclose()


async def test_a_stream_that_falls_far_behind_is_cut_off_to_resume_later() -> None:
    h = Harness()
    h.feeds = FeedRegistry(h.store, buffer_events=8, wait=0.5, linger=0.2)
    try:
        client = await h.open(["c"], duration=30, max_lag=20, page=10)
        await h.publish("c", 1)
        await client.until(lambda: client.messages == [1])
        client.gate = asyncio.Event()  # the client stops reading
        await h.publish("c", 2)
        await asyncio.sleep(0.05)
        for start in range(3, 103, 10):
            await h.publish("c", *range(start, start + 10))
        client.gate.set()
        await client.finished()
        end = client.events[-1]
        assert (end.type, json.loads(end.data)["reason"]) == ("timeout", "too_far_behind")
        received = client.messages
        assert received == list(range(1, len(received) + 1)), "what it got is complete"
        assert len(received) < 102
        resumed = await h.open(["c"], cursor=end.last_event_id, duration=0.3)
        await resumed.finished()
        assert received + resumed.messages == list(range(1, 103))
    finally:
        await h.aclose()


async def test_a_prelude_is_sent_first_with_the_starting_cursor(harness: Harness) -> None:
    await harness.publish("c", 1)
    client = await harness.open(
        ["c"], from_start=True, duration=0.3, prelude=[("connection_ack", {"client": "x"})]
    )
    await client.finished()
    ack, first = client.events[0], client.events[1]
    assert (ack.type, json.loads(ack.data)) == ("connection_ack", {"client": "x"})
    start = Cursor.decode(ack.last_event_id).position("c")
    assert start is not None and start.seq == 0
    assert client.messages == [1] and first.type == "message"


class CountingTicker:
    interval = 0.1
    mark: tuple[str, Position] | None = None

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> list[tuple[str, Any]]:
        self.calls += 1
        return [("server_update", {"tick": self.calls})]


class MarkingTicker(CountingTicker):
    """A ticker whose count the stream's cursor carries (as the fleet's ticks are)."""

    @property  # type: ignore[override]
    def mark(self) -> tuple[str, Position]:
        return "#ticks", Position("t1", self.calls)


async def test_a_ticker_adds_computed_events_on_its_interval(harness: Harness) -> None:
    ticker = CountingTicker()
    client = await harness.open(["c"], duration=0.75, heartbeat=10, ticker=ticker)
    await harness.publish("c", 1)
    await client.finished()
    ticks = [json.loads(e.data)["tick"] for e in client.events if e.type == "server_update"]
    assert ticks == list(range(1, len(ticks) + 1))
    assert 5 <= len(ticks) <= 8
    assert client.messages == [1]
    assert client.events[-1].type == "timeout"


async def test_a_tickers_mark_is_in_every_id_after_it_moved(harness: Harness) -> None:
    client = await harness.open(["c"], duration=0.45, heartbeat=10, ticker=MarkingTicker())
    await client.until(lambda: any(e.type == "server_update" for e in client.events))
    await harness.publish("c", 1)
    await client.finished()
    for event in client.events:
        cursor = Cursor.decode(event.last_event_id)
        mark = cursor.position("#ticks")
        if event.type == "server_update":
            assert mark == Position("t1", json.loads(event.data)["tick"])
        else:  # the log's events and the timeout: the last count sent before them
            assert mark is not None and mark.seq >= 1
        assert cursor.position("c") is not None
    epoch = (await harness.store.state("c")).epoch
    assert Cursor.decode(client.events[-1].last_event_id).position("c") == Position(epoch, 1)


async def test_a_cursor_with_a_tickers_mark_resumes_the_channel(harness: Harness) -> None:
    first = await harness.open(["c"], duration=0.25, heartbeat=10, ticker=MarkingTicker())
    await harness.publish("c", 1)
    await first.finished()
    await harness.publish("c", 2)
    resumed = await harness.open(["c"], cursor=first.events[-1].last_event_id, duration=0.2)
    await resumed.finished()
    assert first.messages == [1] and resumed.messages == [2]


def even(event: StoredEvent) -> bool:
    return bool(json.loads(event.data)["n"] % 2 == 0)


def is_n(n: int) -> Callable[[StoredEvent], bool]:
    return lambda event: bool(json.loads(event.data)["n"] == n)


async def test_select_writes_only_the_events_it_accepts_from_history(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3, 4, 5)
    client = await harness.open(["c"], from_start=True, duration=0.3, select=even)
    await client.finished()
    assert client.messages == [2, 4]
    end = Cursor.decode(client.events[-1].last_event_id).position("c")
    assert client.events[-1].type == "timeout"
    assert end is not None and end.seq == 5  # past the events it skipped


async def test_select_writes_only_the_events_it_accepts_live(harness: Harness) -> None:
    client = await harness.open(["c"], duration=0.6, select=even)
    await asyncio.sleep(0.1)
    await harness.publish("c", 1, 2, 3)
    await harness.publish("c", 4)
    await client.finished()
    assert client.messages == [2, 4]


async def test_a_selected_event_carries_the_cursor_just_after_it(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3, 4)
    client = await harness.open(["c"], from_start=True, duration=0.3, select=even)
    await client.finished()
    two = client.events[0]
    resumed = await harness.open(["c"], cursor=two.last_event_id, duration=0.3)
    await resumed.finished()
    assert resumed.messages == [3, 4]


async def test_until_ends_the_stream_right_after_the_event_it_accepts(harness: Harness) -> None:
    await harness.publish("c", 1, 2)
    client = await harness.open(["c"], from_start=True, duration=5, until=is_n(3))
    await harness.publish("c", 3, 4, 5)
    await client.finished()
    assert client.messages == [1, 2, 3]
    assert client.window.ended_by == "complete"
    end = Cursor.decode(client.events[-1].last_event_id).position("c")
    assert end is not None and end.seq == 3


async def test_until_applies_to_the_selected_events_only(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3, 4)
    client = await harness.open(
        ["c"], from_start=True, duration=5, select=even, until=lambda e: e.seq >= 3
    )
    await client.finished()
    assert client.messages == [2, 4]


async def test_the_epilogue_follows_an_ending_by_until(harness: Harness) -> None:
    await harness.publish("c", 1)
    client = await harness.open(["c"], from_start=True, until=is_n(1), epilogue=b"data: [DONE]\n\n")
    await client.finished()
    assert client.raw.endswith(b"data: [DONE]\n\n")
    assert [e.data for e in client.events][-1] == "[DONE]"


async def test_the_epilogue_follows_a_timeout(harness: Harness) -> None:
    client = await harness.open(["c"], duration=0.2, epilogue=b"data: [DONE]\n\n")
    await client.finished()
    assert [e.type for e in client.events] == ["timeout", "message"]
    assert client.events[-1].data == "[DONE]"


async def test_no_epilogue_is_written_to_a_client_that_went_away(harness: Harness) -> None:
    client = await harness.open(["c"], duration=5, epilogue=b"data: [DONE]\n\n")
    await client.until(lambda: bool(client.comments))
    client.window.disconnect()
    await client.finished()
    assert b"[DONE]" not in client.raw


async def test_timeout_payload_adds_fields_to_the_timeout_event(harness: Harness) -> None:
    client = await harness.open(
        ["c"], duration=0.2, fmt="envelope", timeout_payload={"message": "too slow"}
    )
    await client.finished()
    timeout = json.loads(client.events[-1].data)
    assert timeout == {
        "type": "timeout",
        "reason": "window_elapsed",
        "retry_ms": 1500,
        "message": "too slow",
    }


# -- buffered (long-poll) responses --------------------------------------------------------


def long_poll(wait: float = 5.0, retry_ms: int = 100, max_bytes: int = 1 << 20) -> dict[str, Any]:
    return {"wait": wait, "retry_ms": retry_ms, "max_bytes": max_bytes}


def ended_by(client: Client) -> str:
    return str(json.loads(client.events[-1].data)["reason"])


async def test_a_long_poll_answers_as_soon_as_events_are_ready(harness: Harness) -> None:
    client = await harness.open(["c"], long_poll=long_poll(wait=5))
    await asyncio.sleep(0.1)
    await harness.publish("c", 1, 2)
    await client.finished(limit=2)
    assert client.messages == [1, 2]
    assert client.events[-1].type == "timeout"
    assert ended_by(client) == "long_poll"
    assert client.events[-1].last_event_id == client.events[-2].last_event_id
    assert client.window.ended_by == "long_poll"


async def test_a_long_poll_with_a_backlog_answers_it_at_once(harness: Harness) -> None:
    await harness.publish("c", 1, 2, 3)
    client = await harness.open(["c"], from_start=True, long_poll=long_poll(wait=5))
    await client.finished(limit=1)
    assert client.messages == [1, 2, 3]


async def test_a_long_poll_with_nothing_to_deliver_ends_after_its_wait(harness: Harness) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = await harness.open(["c"], heartbeat=0.05, long_poll=long_poll(wait=0.4))
    await client.finished()
    assert loop.time() - started >= 0.4
    assert [e.type for e in client.events] == ["timeout"]
    assert ended_by(client) == "window_elapsed"
    assert [c.text for c in client.comments] == ["ok"]  # no heartbeats


async def test_a_long_poll_tells_the_client_to_come_back_soon(harness: Harness) -> None:
    client = await harness.open(["c"], long_poll=long_poll(wait=0.1, retry_ms=50))
    await client.finished()
    assert client.raw.startswith(b"retry: 50\n")
    assert json.loads(client.events[-1].data)["retry_ms"] == 50


async def test_a_long_poll_carries_at_most_its_byte_budget(harness: Harness) -> None:
    padding = "x" * 1000
    for n in range(10):
        await harness.store.append("c", [NewEvent("message", json.dumps({"n": n, "p": padding}))])
    received: list[int] = []
    cursor: str | None = None
    responses = 0
    while len(received) < 10:
        client = await harness.open(
            ["c"], cursor=cursor, from_start=True, long_poll=long_poll(max_bytes=3000)
        )
        await client.finished()
        responses += 1
        assert len(client.raw) < 3000 + 500  # the events, then the opening and the timeout
        assert ended_by(client) == "long_poll"
        received.extend(client.messages)
        cursor = client.decoder.last_event_id
    assert received == list(range(10))
    assert responses >= 4


async def test_a_long_poll_takes_one_event_larger_than_its_budget(harness: Harness) -> None:
    await harness.store.append("c", [NewEvent("message", json.dumps({"n": 1, "p": "x" * 9000}))])
    await harness.publish("c", 2)
    client = await harness.open(["c"], from_start=True, long_poll=long_poll(max_bytes=4096))
    await client.finished()
    assert client.messages == [1]


async def test_the_prelude_alone_does_not_answer_a_long_poll(harness: Harness) -> None:
    client = await harness.open(
        ["c"], prelude=[("connection_ack", {})], long_poll=long_poll(wait=0.3)
    )
    await asyncio.sleep(0.15)
    await harness.publish("c", 1)
    await client.finished()
    assert [e.type for e in client.events] == ["connection_ack", "message", "timeout"]


async def test_a_tickers_events_answer_a_long_poll(harness: Harness) -> None:
    client = await harness.open(["c"], ticker=CountingTicker(), long_poll=long_poll(wait=5))
    await client.finished(limit=1)
    assert [e.type for e in client.events] == ["server_update", "timeout"]


async def test_a_long_poll_waiting_for_an_outcome_ends_at_it(harness: Harness) -> None:
    client = await harness.open(["c"], until=is_n(3), long_poll=long_poll(wait=5))
    await harness.publish("c", 1)
    await asyncio.sleep(0.1)
    await harness.publish("c", 2, 3, 4)
    await client.finished(limit=2)
    assert client.messages == [1, 2, 3]
    assert client.window.ended_by == "complete"


async def test_a_long_poll_on_a_closed_channel_ends_with_its_final_event(
    harness: Harness,
) -> None:
    await harness.publish("c", 1)
    await harness.store.close("c", NewEvent("complete", "{}"))
    client = await harness.open(["c"], from_start=True, long_poll=long_poll())
    await client.finished(limit=1)
    assert [e.type for e in client.events] == ["message", "complete"]
    assert client.window.ended_by == "complete"
