"""What the Redis store does beyond the contract: key layout, waits, connections, scripts.

Tests that flush use database 3 of the shared Redis (this module's own); tests that count
connections or flush scripts run a Redis of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot

from serverless_sse.events import NewEvent
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
