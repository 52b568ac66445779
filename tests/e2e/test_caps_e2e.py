"""Caps on streams and publishing hold across server processes, and leases of a killed
process expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.servers import UvicornServer
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e

REDIS_DB = 9


async def hold_stream(
    client: httpx.AsyncClient, url: str, opened: asyncio.Event, status: list[int]
) -> None:
    async with client.stream("GET", url) as response:
        status.append(response.status_code)
        opened.set()
        async for _ in response.aiter_raw():
            pass


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def open_stream(http: httpx.AsyncClient, url: str) -> tuple[asyncio.Task[None], int]:
    opened = asyncio.Event()
    status: list[int] = []
    task = asyncio.create_task(hold_stream(http, url, opened, status))
    await asyncio.wait_for(opened.wait(), 10)
    return task, status[0]


@pytest.mark.parametrize("store_name", sorted(STORE_URLS))
async def test_a_client_s_concurrent_streams_are_capped(
    http: httpx.AsyncClient, store_name: str
) -> None:
    store = STORE_URLS[store_name](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_MAX_STREAMS_PER_CLIENT": "2"}
    with UvicornServer(env) as server:
        url = f"{server.url}/channels/c/stream?window=30"
        first, s1 = await open_stream(http, url)
        second, s2 = await open_stream(http, url)
        refused = await http.get(url)
        assert (s1, s2, refused.status_code) == (200, 200, 429)
        assert refused.json()["error"] == "too_many_requests"
        assert int(refused.headers["retry-after"]) >= 1
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        deadline = time.monotonic() + 5
        while True:  # the server notices the hang-up and releases the lease
            third, s3 = await open_stream(http, url)
            if s3 == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert s3 == 200
        for task in (second, third):
            task.cancel()
        await asyncio.gather(second, third, return_exceptions=True)


async def test_the_stream_cap_is_global_and_a_killed_instance_s_leases_expire(
    http: httpx.AsyncClient,
) -> None:
    store = STORE_URLS["redis"](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_MAX_STREAMS_PER_CLIENT": "2", "SSE_LEASE_SECONDS": "2"}
    with UvicornServer(env) as a, UvicornServer(env) as b:
        on_a = f"{a.url}/channels/c/stream?window=60"
        on_b = f"{b.url}/channels/c/stream?window=60"
        held_a, s1 = await open_stream(http, on_a)
        held_b, s2 = await open_stream(http, on_b)
        assert (s1, s2) == (200, 200)
        assert (await http.get(on_a)).status_code == 429, "a's count includes b's stream"
        b.kill()  # SIGKILL: b never releases its lease
        await asyncio.gather(held_b, return_exceptions=True)
        assert (await http.get(on_a)).status_code == 429, "b's lease is still live"
        await asyncio.sleep(2.5)
        again, s3 = await open_stream(http, on_a)
        assert s3 == 200, "b's lease expired"
        for task in (held_a, again):
            task.cancel()
        await asyncio.gather(held_a, again, return_exceptions=True)


@pytest.mark.parametrize("store_name", sorted(STORE_URLS))
async def test_publishing_is_capped_per_second(http: httpx.AsyncClient, store_name: str) -> None:
    store = STORE_URLS[store_name](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_PUBLISH_RATE_PER_CLIENT": "5"}
    with UvicornServer(env) as server:
        url = f"{server.url}/channels/rate/events"
        await asyncio.sleep(1.01 - time.time() % 1)  # start at the beginning of a second
        responses = [await http.post(url, json={"data": n}) for n in range(7)]
        assert [r.status_code for r in responses] == [201] * 5 + [429] * 2
        assert responses[5].headers["retry-after"] == "1"
        assert responses[5].json()["error"] == "too_many_requests"
        await asyncio.sleep(1.1)
        assert (await http.post(url, json={"data": "later"})).status_code == 201
        big = await http.post(url, json=[{"data": n} for n in range(6)])
        assert big.status_code == 413 and "smaller batches" in big.json()["detail"]
