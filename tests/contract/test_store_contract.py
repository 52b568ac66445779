"""The event store contract: every backend must pass every test here.

The stream window relies on exactly these behaviours, nothing more.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from serverless_sse.cursor import Position
from serverless_sse.errors import ChannelClosed, StoreUnavailable
from serverless_sse.events import NewEvent
from serverless_sse.stores.base import Appended, ChannelState, EventStore

from .conftest import Backend

OpenStore = Callable[..., Awaitable[EventStore]]


def ev(n: int | str, *, key: str | None = None, type_: str = "message") -> NewEvent:
    return NewEvent(type_, f'{{"n":{n!r}}}'.replace("'", '"'), key)


async def append_n(store: EventStore, channel: str, n: int, start: int = 1) -> None:
    await store.append(channel, [ev(i) for i in range(start, start + n)])


# -- appending ---------------------------------------------------------------------------------


async def test_sequences_start_at_one_and_have_no_gaps(store: EventStore, channel: str) -> None:
    first = await store.append(channel, [ev(1)])
    rest = await store.append(channel, [ev(2), ev(3), ev(4)])
    assert [a.seq for a in first + rest] == [1, 2, 3, 4]
    assert len({a.epoch for a in first + rest}) == 1


async def test_append_returns_the_epoch_the_state_reports(store: EventStore, channel: str) -> None:
    appended = await store.append(channel, [ev(1)])
    state = await store.state(channel)
    assert state.epoch == appended[0].epoch != ""
    assert (state.first_seq, state.last_seq, state.closed_seq) == (1, 1, None)


async def test_a_channel_never_written_has_no_log(store: EventStore, channel: str) -> None:
    assert await store.state(channel) == ChannelState.empty()
    result = await store.read(channel, 0, limit=10)
    assert result.events == []
    assert result.state == ChannelState.empty()


async def test_stored_events_keep_type_data_channel_and_time(
    store: EventStore, channel: str
) -> None:
    before = time.time()
    await store.append(channel, [NewEvent("chat", '{"text":"héllo 世界\\n"}')])
    (event,) = (await store.read(channel, 0, limit=10)).events
    assert (event.channel, event.seq, event.type) == (channel, 1, "chat")
    assert event.data == '{"text":"héllo 世界\\n"}'
    assert event.payload() == {"text": "héllo 世界\n"}
    assert before - 1 <= event.created_at <= time.time() + 1


async def test_channels_are_independent(store: EventStore, channel: str) -> None:
    other = channel + "/other"
    await append_n(store, channel, 3)
    await append_n(store, other, 1)
    assert (await store.state(channel)).last_seq == 3
    assert (await store.state(other)).last_seq == 1
    assert (await store.state(channel)).epoch != (await store.state(other)).epoch


async def test_states_reads_several_channels_in_order(store: EventStore, channel: str) -> None:
    a, b, c = channel + "/a", channel + "/b", channel + "/c"
    await append_n(store, a, 2)
    await append_n(store, c, 5)
    states = await store.states([c, b, a])
    assert [s.last_seq for s in states] == [5, 0, 2]


# -- idempotency ---------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_stores_one_event(store: EventStore, channel: str) -> None:
    (first,) = await store.append(channel, [ev(1, key="order-17")])
    (again,) = await store.append(channel, [ev(1, key="order-17")])
    assert (again.seq, again.epoch, again.duplicate) == (first.seq, first.epoch, True)
    assert not first.duplicate
    assert (await store.state(channel)).last_seq == 1


async def test_a_key_repeated_inside_one_batch_stores_once(store: EventStore, channel: str) -> None:
    results = await store.append(channel, [ev(1, key="k"), ev(2), ev(3, key="k")])
    assert [(r.seq, r.duplicate) for r in results] == [(1, False), (2, False), (1, True)]
    assert (await store.state(channel)).last_seq == 2


async def test_idempotency_keys_are_per_channel(store: EventStore, channel: str) -> None:
    await store.append(channel, [ev(1, key="same")])
    (other,) = await store.append(channel + "/x", [ev(1, key="same")])
    assert not other.duplicate


async def test_concurrent_publishes_with_one_key_store_one_event(
    store: EventStore, channel: str
) -> None:
    results = await asyncio.gather(*(store.append(channel, [ev(1, key="once")]) for _ in range(8)))
    assert {r[0].seq for r in results} == {1}
    assert sum(not r[0].duplicate for r in results) == 1
    assert (await store.state(channel)).last_seq == 1


# -- reading -------------------------------------------------------------------------------


async def test_read_returns_events_after_a_sequence_oldest_first(
    store: EventStore, channel: str
) -> None:
    await append_n(store, channel, 10)
    result = await store.read(channel, 4, limit=3)
    assert [e.seq for e in result.events] == [5, 6, 7]
    assert [e.payload()["n"] for e in result.events] == [5, 6, 7]
    assert result.state.last_seq == 10


async def test_read_at_the_end_returns_nothing(store: EventStore, channel: str) -> None:
    await append_n(store, channel, 3)
    assert (await store.read(channel, 3, limit=10)).events == []


async def test_read_waits_for_the_next_append(store: EventStore, channel: str) -> None:
    await append_n(store, channel, 1)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.append(channel, [ev(2)])

    task = asyncio.create_task(later())
    started = time.monotonic()
    result = await store.read(channel, 1, limit=10, wait=5.0)
    await task
    assert [e.seq for e in result.events] == [2]
    assert time.monotonic() - started < 4.0


async def test_read_wait_times_out_with_nothing(store: EventStore, channel: str) -> None:
    await append_n(store, channel, 1)
    started = time.monotonic()
    result = await store.read(channel, 1, limit=10, wait=0.5)
    elapsed = time.monotonic() - started
    assert result.events == []
    assert 0.4 <= elapsed < 5.0


async def test_waiting_on_an_unknown_channel_does_not_create_it(
    store: EventStore, channel: str
) -> None:
    result = await store.read(channel, 0, limit=10, wait=0.3)
    assert result.events == []
    assert await store.state(channel) == ChannelState.empty()


async def test_a_waiting_reader_sees_a_channel_s_first_event(
    store: EventStore, channel: str
) -> None:
    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.append(channel, [ev(1)])

    task = asyncio.create_task(later())
    result = await store.read(channel, 0, limit=10, wait=5.0)
    await task
    assert [e.seq for e in result.events] == [1]
    assert result.state.epoch != ""


async def test_readers_never_see_a_later_event_before_an_earlier_one(
    store: EventStore, channel: str
) -> None:
    """Gap-free reads under concurrent publishers: whatever a reader sees is 1..n, complete."""
    done = asyncio.Event()

    async def publisher(p: int) -> None:
        for i in range(25):
            await store.append(channel, [ev(f"{p}-{i}")])

    async def reader() -> list[int]:
        seen: list[int] = []
        while not done.is_set() or len(seen) < 100:
            result = await store.read(channel, seen[-1] if seen else 0, limit=50, wait=0.2)
            seen.extend(e.seq for e in result.events)
            if done.is_set() and not result.events:
                break
        return seen

    readers = [asyncio.create_task(reader()) for _ in range(2)]
    await asyncio.gather(*(publisher(p) for p in range(4)))
    done.set()
    for seen in await asyncio.gather(*readers):
        assert seen == list(range(1, 101))


async def test_concurrent_batches_stay_contiguous_and_in_order(
    store: EventStore, channel: str
) -> None:
    async def publisher(p: int) -> list[int]:
        seqs: list[int] = []
        for i in range(5):
            batch = await store.append(channel, [ev(f"{p}-{i}-{j}") for j in range(4)])
            assert [b.seq for b in batch] == list(range(batch[0].seq, batch[0].seq + 4))
            seqs.extend(b.seq for b in batch)
        return seqs

    per_publisher = await asyncio.gather(*(publisher(p) for p in range(6)))
    everything = sorted(s for seqs in per_publisher for s in seqs)
    assert everything == list(range(1, 121))
    for seqs in per_publisher:
        assert seqs == sorted(seqs)
    events = (await store.read(channel, 0, limit=200)).events
    for event in events:
        p, i, j = event.payload()["n"].split("-")
        assert events[event.seq - 1 - int(j)].payload()["n"] == f"{p}-{i}-0"


# -- retention -----------------------------------------------------------------------------


async def test_retention_by_count_keeps_the_newest(open_store: OpenStore, channel: str) -> None:
    store = await open_store(retention_events=5)
    await append_n(store, channel, 12)
    state = await store.state(channel)
    assert (state.first_seq, state.last_seq) == (8, 12)
    assert [e.seq for e in (await store.read(channel, 0, limit=100)).events] == [8, 9, 10, 11, 12]


async def test_retention_by_age_hides_old_events(open_store: OpenStore, channel: str) -> None:
    store = await open_store(retention_seconds=1.0)
    await append_n(store, channel, 3)
    await asyncio.sleep(1.3)
    await store.append(channel, [ev(4)])
    result = await store.read(channel, 0, limit=100)
    assert [e.seq for e in result.events] == [4]
    assert (result.state.first_seq, result.state.last_seq) == (4, 4)


async def test_a_fully_expired_log_keeps_its_sequence(open_store: OpenStore, channel: str) -> None:
    store = await open_store(retention_seconds=1.0)
    await append_n(store, channel, 3)
    epoch = (await store.state(channel)).epoch
    await asyncio.sleep(1.3)
    state = await store.state(channel)
    assert (state.epoch, state.first_seq, state.last_seq) == (epoch, 4, 3)
    (appended,) = await store.append(channel, [ev(4)])
    assert appended.seq == 4


# -- closing -------------------------------------------------------------------------------


async def test_close_appends_the_final_event(store: EventStore, channel: str) -> None:
    await append_n(store, channel, 2)
    final = await store.close(channel, NewEvent("complete", '{"ok":true}'))
    assert final.seq == 3
    state = await store.state(channel)
    assert (state.closed_seq, state.last_seq, state.closed) == (3, 3, True)
    events = (await store.read(channel, 0, limit=10)).events
    assert [(e.seq, e.type) for e in events][-1] == (3, "complete")


async def test_a_closed_channel_refuses_appends_and_a_second_close(
    store: EventStore, channel: str
) -> None:
    await store.close(channel, NewEvent("complete", "null"))
    with pytest.raises(ChannelClosed):
        await store.append(channel, [ev(1)])
    with pytest.raises(ChannelClosed):
        await store.close(channel, NewEvent("complete", "null"))
    assert (await store.state(channel)).last_seq == 1


async def test_closing_an_unused_channel_creates_its_log(store: EventStore, channel: str) -> None:
    final = await store.close(channel, NewEvent("done", "null"))
    state = await store.state(channel)
    assert (final.seq, state.closed_seq, state.epoch) == (1, 1, final.epoch)


async def test_a_wait_on_a_closed_channel_returns_at_once(store: EventStore, channel: str) -> None:
    await store.close(channel, NewEvent("complete", "null"))
    started = time.monotonic()
    result = await store.read(channel, 1, limit=10, wait=5.0)
    assert result.events == [] and result.state.closed
    assert time.monotonic() - started < 2.0


async def test_close_wakes_a_waiting_reader(store: EventStore, channel: str) -> None:
    await append_n(store, channel, 1)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.close(channel, NewEvent("complete", "null"))

    task = asyncio.create_task(later())
    result = await store.read(channel, 1, limit=10, wait=5.0)
    await task
    assert [e.type for e in result.events] == ["complete"]
    assert result.state.closed_seq == 2


# -- epochs --------------------------------------------------------------------------------


async def test_a_lost_log_comes_back_with_a_new_epoch(
    backend: Backend, store: EventStore, channel: str
) -> None:
    await append_n(store, channel, 5)
    old = (await store.state(channel)).epoch
    await backend.lose_log(store, channel)
    assert (await store.state(channel)).epoch == ""
    (appended,) = await store.append(channel, [ev(1)])
    assert appended.seq == 1
    assert appended.epoch not in ("", old)


async def test_a_wait_ends_when_the_log_is_lost(
    backend: Backend, store: EventStore, channel: str
) -> None:
    await append_n(store, channel, 2)
    epoch = (await store.state(channel)).epoch

    async def later() -> None:
        await asyncio.sleep(0.3)
        await backend.lose_log(store, channel)
        await store.append(channel, [ev(1)])

    task = asyncio.create_task(later())
    started = time.monotonic()
    result = await store.read(channel, 2, limit=10, wait=8.0, epoch=epoch)
    await task
    assert result.state.epoch != epoch
    assert time.monotonic() - started < 7.0


# -- small expiring values -----------------------------------------------------------------


async def test_values_can_be_put_read_and_deleted(store: EventStore) -> None:
    key = f"test:{uuid.uuid4().hex}"
    assert await store.get_value(key) is None
    assert await store.put_value(key, "one")
    assert await store.get_value(key) == "one"
    assert await store.put_value(key, "two")
    assert await store.get_value(key) == "two"
    await store.delete_value(key)
    assert await store.get_value(key) is None
    await store.delete_value(key)


async def test_put_only_if_absent_does_not_overwrite(store: EventStore) -> None:
    key = f"test:{uuid.uuid4().hex}"
    assert await store.put_value(key, "first", only_if_absent=True)
    assert not await store.put_value(key, "second", only_if_absent=True)
    assert await store.get_value(key) == "first"


async def test_values_expire(store: EventStore) -> None:
    key = f"test:{uuid.uuid4().hex}"
    await store.put_value(key, "v", ttl=1.0)
    assert await store.get_value(key) == "v"
    await asyncio.sleep(1.3)
    assert await store.get_value(key) is None
    assert await store.put_value(key, "again", only_if_absent=True)


async def test_increment_counts_atomically(store: EventStore) -> None:
    key = f"test:{uuid.uuid4().hex}"
    totals = await asyncio.gather(*(store.increment(key) for _ in range(20)))
    assert sorted(totals) == list(range(1, 21))
    assert await store.increment(key, 5) == 25
    assert await store.get_value(key) == "25"


async def test_an_incremented_counter_expires_with_its_window(store: EventStore) -> None:
    key = f"test:{uuid.uuid4().hex}"
    assert await store.increment(key, ttl=1.0) == 1
    assert await store.increment(key, ttl=1.0) == 2
    await asyncio.sleep(1.3)
    assert await store.increment(key, ttl=1.0) == 1


async def test_leases_cap_holders(store: EventStore) -> None:
    group = f"test:{uuid.uuid4().hex}"
    assert await store.acquire_lease(group, "a", limit=2, ttl=30)
    assert await store.acquire_lease(group, "b", limit=2, ttl=30)
    assert not await store.acquire_lease(group, "c", limit=2, ttl=30)
    assert await store.acquire_lease(group, "a", limit=2, ttl=30), "a holder renews its lease"
    await store.release_lease(group, "a")
    assert await store.acquire_lease(group, "c", limit=2, ttl=30)
    await store.release_lease(group, "nobody")


async def test_expired_leases_stop_counting(store: EventStore) -> None:
    group = f"test:{uuid.uuid4().hex}"
    assert await store.acquire_lease(group, "dead-instance", limit=1, ttl=1.0)
    assert not await store.acquire_lease(group, "b", limit=1, ttl=1.0)
    await asyncio.sleep(1.3)
    assert await store.acquire_lease(group, "b", limit=1, ttl=1.0)


async def test_concurrent_lease_requests_never_exceed_the_limit(store: EventStore) -> None:
    group = f"test:{uuid.uuid4().hex}"
    granted = await asyncio.gather(
        *(store.acquire_lease(group, f"h{i}", limit=3, ttl=30) for i in range(12))
    )
    assert sum(granted) == 3


async def test_ping_answers(store: EventStore) -> None:
    await store.ping()


# -- what the durable backends make relevant -----------------------------------------------


async def test_epochs_fit_in_a_cursor(store: EventStore, channel: str) -> None:
    (appended,) = await store.append(channel, [ev(1)])
    assert len(appended.epoch) <= 8
    assert Position(appended.epoch, appended.seq).epoch == appended.epoch


async def test_a_batch_of_only_known_keys_stores_nothing(store: EventStore, channel: str) -> None:
    first = await store.append(channel, [ev(1, key="a"), ev(2, key="b")])
    again = await store.append(channel, [ev(1, key="b"), ev(2, key="a")])
    assert [(r.seq, r.duplicate) for r in again] == [(2, True), (1, True)]
    assert {r.epoch for r in first + again} == {first[0].epoch}
    assert (await store.state(channel)).last_seq == 2


async def test_a_large_event_round_trips_intact(store: EventStore, channel: str) -> None:
    text = ('ünïcødé 世界 "quoted" \\ back\nslash\r\n' * 1500)[:60_000]
    data = '{"text":' + json.dumps(text, ensure_ascii=False) + "}"
    await store.append(channel, [NewEvent("big", data)])
    (event,) = (await store.read(channel, 0, limit=10)).events
    assert event.data == data
    assert event.payload() == {"text": text}


async def test_reading_past_the_end_returns_nothing_and_the_state(
    store: EventStore, channel: str
) -> None:
    await append_n(store, channel, 3)
    result = await store.read(channel, 10, limit=10)
    assert result.events == []
    assert (result.state.first_seq, result.state.last_seq) == (1, 3)


async def test_a_close_racing_appends_is_always_the_last_event(
    store: EventStore, channel: str
) -> None:
    await append_n(store, channel, 1)

    async def publish(n: int) -> int | None:
        try:
            (appended,) = await store.append(channel, [ev(n)])
        except ChannelClosed:
            return None
        return appended.seq

    outcomes = await asyncio.gather(
        *(publish(n) for n in range(2, 8)),
        store.close(channel, NewEvent("complete", "null")),
        *(publish(n) for n in range(8, 14)),
    )
    final = outcomes[6]
    assert isinstance(final, Appended)
    stored = [s for s in outcomes[:6] + outcomes[7:] if s is not None]
    state = await store.state(channel)
    assert state.closed_seq == state.last_seq == final.seq == len(stored) + 2
    events = (await store.read(channel, 0, limit=100)).events
    assert [e.seq for e in events] == list(range(1, final.seq + 1))
    assert events[-1].type == "complete"
    assert sorted(stored) == list(range(2, final.seq))


async def test_an_unreachable_store_answers_store_unavailable_to_every_call(
    unreachable_store: EventStore, channel: str
) -> None:
    store = unreachable_store
    calls: list[Awaitable[object]] = [
        store.append(channel, [ev(1)]),
        store.read(channel, 0, limit=10),
        store.read(channel, 0, limit=10, wait=0.5),
        store.state(channel),
        store.states([channel, channel + "/b"]),
        store.close(channel, NewEvent("complete", "null")),
        store.get_value("k"),
        store.put_value("k", "v"),
        store.increment("k"),
        store.delete_value("k"),
        store.acquire_lease("g", "h", limit=1, ttl=5),
        store.release_lease("g", "h"),
        store.ping(),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call
