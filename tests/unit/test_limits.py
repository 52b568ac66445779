"""Caps on streams and publishing, counted in the store."""

from __future__ import annotations

import asyncio
import time

import pytest

from serverless_sse.errors import PayloadTooLarge, TooManyRequests
from serverless_sse.limits import PublishRate, StreamLeases
from serverless_sse.stores.memory import MemoryStore


async def test_streams_beyond_the_cap_are_refused_with_retry_after() -> None:
    leases = StreamLeases(MemoryStore(), limit=2, lease_seconds=30)
    first = await leases.acquire("ip:1")
    await leases.acquire("ip:1")
    with pytest.raises(TooManyRequests) as refused:
        await leases.acquire("ip:1")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "5"
    assert await leases.acquire("ip:2"), "the cap is per client"
    await leases.release(first)
    assert await leases.acquire("ip:1")
    await leases.aclose()


async def test_no_cap_means_no_lease() -> None:
    leases = StreamLeases(MemoryStore(), limit=None)
    assert await leases.acquire("ip:1") is None


async def test_held_leases_are_renewed_while_streams_run() -> None:
    store = MemoryStore()
    leases = StreamLeases(store, limit=1, lease_seconds=0.3)
    await leases.acquire("ip:1")
    await asyncio.sleep(0.8)  # well past one lease period
    other = StreamLeases(store, limit=1, lease_seconds=0.3)
    with pytest.raises(TooManyRequests):
        await other.acquire("ip:1")
    await leases.aclose()
    await other.aclose()


async def test_a_dead_instance_s_leases_expire() -> None:
    store = MemoryStore()
    dead = StreamLeases(store, limit=1, lease_seconds=0.3)
    await dead.acquire("ip:1")
    assert dead._keeper is not None
    dead._keeper.cancel()  # the instance stops renewing, as if it were killed
    alive = StreamLeases(store, limit=1, lease_seconds=0.3)
    with pytest.raises(TooManyRequests):
        await alive.acquire("ip:1")
    await asyncio.sleep(0.4)
    assert await alive.acquire("ip:1")
    await alive.aclose()


async def test_publishing_beyond_the_rate_is_refused_until_the_next_second() -> None:
    rate = PublishRate(MemoryStore(), per_second=5)
    while True:  # start at the beginning of a second, so the test does not straddle two
        if time.time() % 1 < 0.5:
            break
        await asyncio.sleep(0.05)
    for _ in range(5):
        await rate.charge("sub:a")
    with pytest.raises(TooManyRequests) as refused:
        await rate.charge("sub:a")
    assert int(refused.value.headers["Retry-After"]) == 1
    await rate.charge("sub:b")


async def test_a_batch_larger_than_the_rate_can_never_pass() -> None:
    rate = PublishRate(MemoryStore(), per_second=5)
    with pytest.raises(PayloadTooLarge, match="smaller batches"):
        await rate.charge("sub:a", 6)


async def test_no_rate_means_no_counting() -> None:
    store = MemoryStore()
    await PublishRate(store, per_second=None).charge("sub:a", 1000)
    assert store._values == {}


async def test_throttling_waits_for_the_rate_instead_of_refusing() -> None:
    rate = PublishRate(MemoryStore(), per_second=5)
    first = int(time.time())
    await rate.throttle("sub:a", 12)  # 5 + 5 + 2: three one-second windows
    assert int(time.time()) - first >= 2


async def test_throttling_below_one_event_a_second_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        await PublishRate(MemoryStore(), per_second=0.5).throttle("sub:a", 1)
