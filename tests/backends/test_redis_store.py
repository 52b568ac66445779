"""What the Redis store does beyond the contract: key layout, waits, connections, scripts.

Tests that flush use database 3 of the shared Redis (this module's own); tests that count
connections or flush scripts run a Redis of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.crc import key_slot

from serverless_sse.errors import ChannelClosed, StoreUnavailable
from serverless_sse.events import NewEvent
from serverless_sse.stores import redis as redis_store
from serverless_sse.stores.redis import RedisStore
from tests.servers import RedisServer
from tests.stores import flush_redis

SHARED = "redis://127.0.0.1:6379/3"


def ev(n: int) -> NewEvent:
    return NewEvent("message", str(n))


@pytest.fixture
def channel() -> str:
    return f"test/{uuid.uuid4().hex}"


@pytest.fixture
async def shared() -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(SHARED)
    yield store
    await store.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("name", ["a", "rooms/lobby", "tasks/42/output", "x:y.z_w-v/1"])
def test_a_channel_s_keys_share_one_cluster_slot(name: str) -> None:
    keys = [f"sse:{{{name}}}:{kind}" for kind in ("meta", "log", "keys")]
    assert {key_slot(k.encode()) for k in keys} == {key_slot(name.encode())}


async def test_a_waiting_read_wakes_when_a_flushed_database_starts_a_new_log(
    shared: RedisStore, channel: str
) -> None:
    """After FLUSHDB a new log's entry ids restart at seq 1: the ids' time part makes them
    sort after the lost log's, so the blocked XREAD sees them."""
    await shared.append(channel, [ev(n) for n in range(1, 51)])
    old = await shared.state(channel)

    async def flush_then_publish() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(flush_redis, SHARED)
        await shared.append(channel, [ev(1)])

    task = asyncio.create_task(flush_then_publish())
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await shared.read(channel, 50, limit=10, wait=20, epoch=old.epoch)
    await task
    assert loop.time() - started < 10
    assert result.state.epoch not in ("", old.epoch)
    assert (result.state.first_seq, result.state.last_seq) == (1, 1)


async def test_waits_beyond_the_blocking_connections_poll_instead(
    own_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(own_redis.url(), max_waits=2, poll_seconds=0.1)
    channels = [f"c/{n}" for n in range(6)]
    try:
        waits = [asyncio.create_task(store.read(c, 0, limit=10, wait=10)) for c in channels]
        await asyncio.sleep(0.5)
        blocked = [
            line for line in own_redis.cli("client", "list").splitlines() if "cmd=xread" in line
        ]
        assert len(blocked) == 2
        for channel in channels:
            await store.append(channel, [ev(1)])
        results = await asyncio.wait_for(asyncio.gather(*waits), 5)
        assert [[e.seq for e in r.events] for r in results] == [[1]] * 6
    finally:
        await store.aclose()


async def test_commands_never_open_more_connections_than_allowed(
    own_redis: RedisServer, channel: str
) -> None:
    store = RedisStore.from_url(own_redis.url(), max_connections=3)
    try:
        await asyncio.gather(*(store.append(channel, [ev(n)]) for n in range(200)))
        clients = own_redis.cli("client", "list").splitlines()
        assert 1 <= len(clients) - 1 <= 3  # minus redis-cli's own connection
        assert (await store.state(channel)).last_seq == 200
    finally:
        await store.aclose()


async def test_scripts_are_loaded_again_when_redis_lost_them(
    own_redis: RedisServer, channel: str
) -> None:
    store = RedisStore.from_url(own_redis.url())
    try:
        await store.append(channel, [ev(1)])
        own_redis.cli("script", "flush")
        results = await asyncio.gather(*(store.append(channel, [ev(n)]) for n in range(2, 12)))
        assert sorted(r[0].seq for r in results) == list(range(2, 12))
        own_redis.cli("script", "flush")
        assert [s.last_seq for s in await store.states([channel, channel + "/x"])] == [11, 0]
    finally:
        await store.aclose()


async def test_an_idle_channel_s_events_expire_with_retention_and_its_epoch_lingers(
    own_redis: RedisServer, channel: str
) -> None:
    store = RedisStore.from_url(own_redis.url(), retention_seconds=60, linger_seconds=3600)
    try:
        await store.append(channel, [NewEvent("message", "1", "key-1")])
        ttl = {
            kind: int(own_redis.cli("pttl", f"sse:{{{channel}}}:{kind}"))
            for kind in ("meta", "log", "keys")
        }
        assert 60_000 < ttl["log"] <= 61_000
        assert 60_000 < ttl["keys"] <= 61_000
        assert 3_600_000 < ttl["meta"] <= 3_660_000
    finally:
        await store.aclose()


def test_cluster_urls_list_host_port_pairs() -> None:
    with pytest.raises(ValueError, match="host:port"):
        RedisStore.from_url("redis+cluster://127.0.0.1")
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisStore.from_url("http://127.0.0.1:6379")


# -- grouped appends: one writer per channel per process --------------------------------------


class CountingStore(RedisStore):
    """Counts the append script's calls."""

    calls = 0

    async def _eval(self, script: Any, keys: Any, args: Any) -> Any:
        if script is self._append:
            self.calls += 1
        return await super()._eval(script, keys, args)


def hold_calls(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make the store's script calls wait until the returned event is set."""
    release = asyncio.Event()
    real_eval = store._eval

    async def held_eval(script: Any, keys: Any, args: Any) -> Any:
        await release.wait()
        return await real_eval(script, keys, args)

    monkeypatch.setattr(store, "_eval", held_eval)
    return release


@pytest.fixture
async def counting() -> AsyncIterator[CountingStore]:
    store = CountingStore.from_url(SHARED)
    yield store  # type: ignore[misc]
    await store.aclose()


async def test_concurrent_publishes_share_script_calls_and_each_gets_its_own_events(
    counting: CountingStore, channel: str
) -> None:
    batches = [[ev(10 * i + j) for j in range(i % 3 + 1)] for i in range(40)]
    results = await asyncio.gather(*(counting.append(channel, b) for b in batches))
    assert counting.calls < len(batches)
    seqs = [a.seq for result in results for a in result]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "gap-free, none twice"
    for batch, result in zip(batches, results, strict=True):
        assert len(result) == len(batch)
        first = result[0].seq
        assert [a.seq for a in result] == list(range(first, first + len(batch))), "together"
    stored = await counting.read(channel, 0, limit=1000)
    by_seq = {e.seq: e.data for e in stored.events}
    for batch, result in zip(batches, results, strict=True):
        assert [by_seq[a.seq] for a in result] == [e.data for e in batch]


async def test_a_close_applies_after_the_publishes_queued_before_it_and_refuses_later_ones(
    counting: CountingStore, channel: str
) -> None:
    first, second, closed, late = await asyncio.gather(
        counting.append(channel, [ev(1)]),
        counting.append(channel, [ev(2)]),
        counting.close(channel, NewEvent("complete", "{}")),
        counting.append(channel, [ev(3)]),
        return_exceptions=True,
    )
    assert [first[0].seq, second[0].seq, closed.seq] == [1, 2, 3]  # type: ignore[index,union-attr]
    assert isinstance(late, ChannelClosed)
    assert (await counting.state(channel)).closed_seq == 3


async def test_a_key_repeated_by_concurrent_publishers_stores_one_event(
    counting: CountingStore, channel: str
) -> None:
    keyed = [NewEvent("message", str(n), idempotency_key="same") for n in range(5)]
    results = await asyncio.gather(*(counting.append(channel, [e]) for e in keyed))
    assert {r[0].seq for r in results} == {1}
    assert sorted(r[0].duplicate for r in results) == [False, True, True, True, True]
    assert (await counting.state(channel)).last_seq == 1


async def test_a_group_is_cut_at_its_size_limit_but_a_large_publish_still_goes_whole(
    counting: CountingStore, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "_GROUP_BYTES", 100)
    big = [NewEvent("message", '"' + "x" * 300 + '"')]
    smalls = [[ev(n)] for n in range(10)]
    results = await asyncio.gather(*(counting.append(channel, b) for b in [big, *smalls]))
    assert [r[0].seq for r in results] == list(range(1, 12))
    assert counting.calls >= 2


async def test_a_failed_call_fails_every_publish_it_carried(
    own_redis: RedisServer, channel: str
) -> None:
    store = CountingStore.from_url(own_redis.url())
    await store.append(channel, [ev(0)])
    own_redis.stop()
    try:
        results = await asyncio.gather(
            *(store.append(channel, [ev(n)]) for n in range(1, 6)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in results)
    finally:
        await store.aclose()


async def test_a_publish_given_up_before_its_call_is_never_written(
    shared: RedisStore, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = hold_calls(shared, monkeypatch)
    first = asyncio.create_task(shared.append(channel, [ev(1)]))
    await asyncio.sleep(0.05)  # the writer is in its first call
    given_up = asyncio.create_task(shared.append(channel, [ev(2)]))
    await asyncio.sleep(0.05)
    given_up.cancel()
    release.set()
    assert (await first)[0].seq == 1
    with pytest.raises(asyncio.CancelledError):
        await given_up
    await asyncio.sleep(0.05)
    assert (await shared.state(channel)).last_seq == 1


async def test_closing_the_store_finishes_writes_in_flight_and_refuses_new_ones(
    channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore.from_url(SHARED)
    release = hold_calls(store, monkeypatch)
    in_flight = asyncio.create_task(store.append(channel, [ev(1)]))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(store.append(channel, [ev(2)]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(store.aclose())
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailable):
        await store.append(channel, [ev(3)])
    release.set()
    await asyncio.wait_for(closing, 5)
    assert [(await in_flight)[0].seq, (await queued)[0].seq] == [1, 2]
    check = RedisStore.from_url(SHARED)
    assert (await check.state(channel)).last_seq == 2
    await check.aclose()


async def test_publishes_and_a_close_grouped_on_a_closed_channel_are_all_refused(
    counting: CountingStore, channel: str
) -> None:
    await counting.close(channel, NewEvent("complete", "{}"))
    results = await asyncio.gather(
        counting.append(channel, [ev(1)]),
        counting.close(channel, NewEvent("complete", "{}")),
        return_exceptions=True,
    )
    assert all(isinstance(r, ChannelClosed) for r in results)
    assert (await counting.state(channel)).last_seq == 1
