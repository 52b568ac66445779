"""Caps on streams and publishing hold across server processes (counted per client: token
subject, key or address), and leases of a killed process expire."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from serverless_sse.auth import mint_token
from tests.servers import UvicornServer
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e

REDIS_DB = 9
SECRET = "caps-e2e-secret-" + "x" * 32


async def hold_stream(
    client: httpx.AsyncClient,
    url: str,
    opened: asyncio.Event,
    status: list[int],
    headers: dict[str, str] | None = None,
) -> None:
    async with client.stream("GET", url, headers=headers) as response:
        status.append(response.status_code)
        opened.set()
        async for _ in response.aiter_raw():
            pass


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def open_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[asyncio.Task[None], int]:
    opened = asyncio.Event()
    status: list[int] = []
    task = asyncio.create_task(hold_stream(http, url, opened, status, headers))
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


async def in_one_second(
    requests: Callable[[], Awaitable[list[httpx.Response]]],
) -> list[httpx.Response]:
    """The answers to ``requests``, all sent within one second of the clock (the rate's window):
    sent from the start of a second, and sent again from the next one if they straddled two."""
    for _ in range(5):
        await asyncio.sleep(1.01 - time.time() % 1)
        started = int(time.time())
        responses = await requests()
        if int(time.time()) == started:
            return responses
    raise AssertionError("the machine is too slow to send a few requests within one second")


@pytest.mark.parametrize("store_name", sorted(STORE_URLS))
async def test_publishing_is_capped_per_second(http: httpx.AsyncClient, store_name: str) -> None:
    store = STORE_URLS[store_name](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_PUBLISH_RATE_PER_CLIENT": "5"}
    with UvicornServer(env) as server:
        url = f"{server.url}/channels/rate/events"

        async def seven() -> list[httpx.Response]:
            return [await http.post(url, json={"data": n}) for n in range(7)]

        responses = await in_one_second(seven)
        assert [r.status_code for r in responses] == [201] * 5 + [429] * 2
        assert responses[5].headers["retry-after"] == "1"
        assert responses[5].json()["error"] == "too_many_requests"
        await asyncio.sleep(1.1)
        assert (await http.post(url, json={"data": "later"})).status_code == 201
        big = await http.post(url, json=[{"data": n} for n in range(6)])
        assert big.status_code == 413 and "smaller batches" in big.json()["detail"]


@pytest.mark.skipif("redis" not in STORE_URLS, reason="needs the Redis store backend")
async def test_the_publish_rate_is_global_across_instances(http: httpx.AsyncClient) -> None:
    store = STORE_URLS["redis"](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_PUBLISH_RATE_PER_CLIENT": "5"}
    with UvicornServer(env) as a, UvicornServer(env) as b:
        channels: list[str] = []

        async def alternating() -> list[httpx.Response]:
            channels.append(f"rate-global/{uuid.uuid4().hex[:8]}")  # a fresh one per try
            servers = (a, b, a, b, a, b, a)
            return [
                await http.post(f"{s.url}/channels/{channels[-1]}/events", json={"data": n})
                for n, s in enumerate(servers)
            ]

        responses = await in_one_second(alternating)
        assert [r.status_code for r in responses] == [201] * 5 + [429] * 2
        history = await http.get(f"{b.url}/channels/{channels[-1]}/events")
        assert [e["data"] for e in history.json()["events"]] == [0, 1, 2, 3, 4]


@pytest.mark.skipif("redis" not in STORE_URLS, reason="needs the Redis store backend")
async def test_a_token_s_streams_count_together_wherever_they_run(
    http: httpx.AsyncClient,
) -> None:
    """The client is the token's subject, not the connection or the instance: the same subject
    on two instances shares one cap; another subject has its own."""
    store = STORE_URLS["redis"](REDIS_DB)
    flush_redis(store)
    env = {"SSE_STORE": store, "SSE_JWT_SECRET": SECRET, "SSE_MAX_STREAMS_PER_CLIENT": "1"}
    ana = {"Authorization": f"Bearer {mint_token(SECRET, 'ana', subscribe=['c'], ttl=300)}"}
    bob = {"Authorization": f"Bearer {mint_token(SECRET, 'bob', subscribe=['c'], ttl=300)}"}
    with UvicornServer(env) as a, UvicornServer(env) as b:
        held, status = await open_stream(http, f"{a.url}/channels/c/stream?window=60", ana)
        assert status == 200
        again = await http.get(f"{b.url}/channels/c/stream?window=60", headers=ana)
        assert again.status_code == 429
        other, status = await open_stream(http, f"{b.url}/channels/c/stream?window=60", bob)
        assert status == 200
        for task in (held, other):
            task.cancel()
        await asyncio.gather(held, other, return_exceptions=True)
