"""The durable stores end to end: several real uvicorn processes sharing one store, real HTTP.

Each test runs against Redis (database 2 of the shared server, this module's own) and
DynamoDB (moto's server over HTTP). What they show: any process serves any reconnect, many
publishers never make a reader see a gap or a repeat, and lost or trimmed history is told with
``reset``, never skipped in silence.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from redis.cluster import RedisCluster as SyncRedisCluster

from serverless_sse.cursor import Cursor
from serverless_sse.protocol import ServerSentEvent
from serverless_sse.stores.dynamodb import create_table
from tests.servers import MotoServer, RedisClusterServers, RedisServer, UvicornServer
from tests.sse import read_stream
from tests.stores import flush_redis

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/2"
REGION = "us-east-1"


@dataclass
class Deployment:
    """Two uvicorn processes (``a``, ``b``) on one store, and a way to lose the store's data."""

    name: str
    store: str
    a: UvicornServer
    b: UvicornServer
    lose_everything: Callable[[], None]


def _servers(env: dict[str, str], count: int) -> list[UvicornServer]:
    servers: list[UvicornServer] = []
    try:
        for _ in range(count):
            server = UvicornServer(env)
            servers.append(server)
            server.start()
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers


def _env(store: str, **extra: str) -> dict[str, str]:
    return {
        "SSE_STORE": store,
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_WINDOW_SECONDS": "20",
        # moto answers one request at a time and scans the whole table per query: polls of
        # two processes at the default 0.1 s would leave little room for the publishes.
        "SSE_DYNAMODB_POLL_MIN_SECONDS": "0.3",
        "SSE_DYNAMODB_POLL_MAX_SECONDS": "0.6",
        **extra,
    }


def _dynamodb_table(moto: MotoServer, prefix: str) -> tuple[str, Callable[[], None]]:
    """A table on moto's server, and how to recreate it empty (a lost log)."""
    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_table(table, region=REGION, endpoint_url=moto.endpoint_url)

    def recreate() -> None:
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto.endpoint_url)
        client.delete_table(TableName=table)
        create_table(table, region=REGION, endpoint_url=moto.endpoint_url)

    store = f"dynamodb://{table}?region={REGION}&endpoint_url={moto.endpoint_url}"
    return store, recreate


@pytest.fixture(scope="module", params=["redis", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Callable[[], None]]]:
    """(name, store URL, lose everything) for each durable backend."""
    if request.param == "redis":
        flush_redis(REDIS_URL)
        yield "redis", REDIS_URL, lambda: flush_redis(REDIS_URL)
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        store, recreate = _dynamodb_table(moto, "sse-e2e")
        yield "dynamodb", store, recreate


@pytest.fixture(scope="module")
def deployment(backend: tuple[str, str, Callable[[], None]]) -> Iterator[Deployment]:
    name, store, lose = backend
    a, b = _servers(_env(store), 2)
    try:
        yield Deployment(name, store, a, b, lose)
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


@pytest.fixture
def channel() -> str:
    return f"e2e/{uuid.uuid4().hex[:12]}"


def seq_of(event: ServerSentEvent, channel: str) -> int:
    position = Cursor.decode(event.last_event_id).position(channel)
    assert position is not None
    return position.seq


async def start_cursor(http: httpx.AsyncClient, base: str, channel: str) -> str:
    response = await http.get(f"{base}/channels/{channel}/events")
    assert response.status_code == 200, response.text
    cursor: str = response.json()["cursor"]
    return cursor


async def publish(http: httpx.AsyncClient, base: str, channel: str, body: object) -> httpx.Response:
    return await http.post(f"{base}/channels/{channel}/events", json=body)


async def follow(
    http: httpx.AsyncClient,
    bases: list[str],
    channel: str,
    cursor: str,
    *,
    until: Callable[[list[ServerSentEvent]], bool],
    max_seconds: float = 60.0,
) -> list[ServerSentEvent]:
    """What a reconnecting client sees: streams one window after another (cycling through
    ``bases``, as a load balancer might), resuming from the last id, until ``until`` holds."""
    seen: list[ServerSentEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    turn = 0
    while not until(seen):
        remaining = deadline - loop.time()
        assert remaining > 0, f"gave up after {len(seen)} events"
        base = bases[turn % len(bases)]
        turn += 1
        result = await read_stream(
            http,
            f"{base}/channels/{channel}/stream?window=5",
            last_event_id=cursor,
            max_seconds=remaining + 10,
        )
        if result.status == 204:
            break
        if result.status == 503:  # the store is away for a moment: retry, as EventSource does
            await asyncio.sleep(0.2)
            continue
        assert result.status == 200, result.body
        seen.extend(e for e in result.events if e.type not in ("timeout", "error"))
        cursor = result.last_event_id or cursor
    return seen


# -- many publishers, many readers, several processes ----------------------------------------


async def test_every_reader_gets_every_event_once_in_order_across_processes(
    deployment: Deployment, http: httpx.AsyncClient, channel: str
) -> None:
    publishers, per_publisher = 8, 250
    total = publishers * per_publisher
    bases = [deployment.a.url, deployment.b.url]
    cursor = await start_cursor(http, bases[0], channel)

    def complete(events: list[ServerSentEvent]) -> bool:
        return len(events) >= total

    readers = [
        asyncio.create_task(
            follow(http, [bases[r % 2]], channel, cursor, until=complete, max_seconds=120)
        )
        for r in range(4)
    ]

    async def publisher(p: int) -> None:
        for i in range(per_publisher):
            response = await publish(http, bases[(p + i) % 2], channel, {"data": {"p": p, "i": i}})
            assert response.status_code == 201, response.text

    await asyncio.gather(*(publisher(p) for p in range(publishers)))
    for events in await asyncio.gather(*readers):
        assert [seq_of(e, channel) for e in events] == list(range(1, total + 1))
        by_publisher: dict[int, list[int]] = {}
        for event in events:
            payload = json.loads(event.data)
            by_publisher.setdefault(payload["p"], []).append(payload["i"])
        assert by_publisher == {p: list(range(per_publisher)) for p in range(publishers)}


async def test_a_cursor_from_one_process_resumes_on_another(
    deployment: Deployment, http: httpx.AsyncClient, channel: str
) -> None:
    a, b = deployment.a.url, deployment.b.url
    assert (await publish(http, a, channel, [{"data": n} for n in range(1, 11)])).status_code == 201
    first = await read_stream(
        http, f"{a}/channels/{channel}/stream?from=start", stop_after_events=4, max_seconds=10
    )
    # The client hangs up after its fourth event (the rest of that chunk is unread).
    fourth = first.events[3]
    assert [json.loads(e.data) for e in first.events[:4]] == [1, 2, 3, 4]
    assert (
        await publish(http, b, channel, [{"data": n} for n in range(11, 16)])
    ).status_code == 201
    rest = await read_stream(
        http, f"{b}/channels/{channel}/stream?window=2", last_event_id=fourth.last_event_id
    )
    assert [e.type for e in rest.events][-1] == "timeout"
    assert rest.data() == list(range(5, 16))
    assert [seq_of(e, channel) for e in rest.of_type("message")] == list(range(5, 16))


# -- history that is gone is told ------------------------------------------------------------


async def test_a_lost_log_is_told_with_reset_never_a_silent_jump(
    deployment: Deployment, http: httpx.AsyncClient, channel: str
) -> None:
    a, b = deployment.a.url, deployment.b.url
    assert (await publish(http, a, channel, [{"data": n} for n in range(1, 6)])).status_code == 201
    cursor = (
        await read_stream(http, f"{a}/channels/{channel}/stream?from=start", stop_after_events=5)
    ).last_event_id

    async def lose_then_publish() -> None:
        await asyncio.sleep(1.0)  # the reader below is connected and waiting by now
        await asyncio.to_thread(deployment.lose_everything)
        for n in ("a", "b", "c"):
            for _ in range(100):  # the store may answer 503 while its table is recreated
                if (await publish(http, b, channel, {"data": n})).status_code == 201:
                    break
                await asyncio.sleep(0.1)

    task = asyncio.create_task(lose_then_publish())

    def saw_new_log(events: list[ServerSentEvent]) -> bool:
        return sum(e.type == "message" for e in events) >= 3

    events = await follow(http, [a], channel, cursor, until=saw_new_log, max_seconds=30)
    await task
    assert [e.type for e in events] == ["reset", "message", "message", "message"]
    reset = json.loads(events[0].data)
    assert reset["reason"] == "epoch_changed"
    assert reset["missed_from"] == 6
    assert [json.loads(e.data) for e in events[1:]] == ["a", "b", "c"]
    assert [seq_of(e, channel) for e in events[1:]] == [1, 2, 3]


@pytest.fixture(scope="module")
def short_retention(backend: tuple[str, str, Callable[[], None]]) -> Iterator[UvicornServer]:
    """A process of its own keeping 100 events per channel."""
    _, store, _ = backend
    (server,) = _servers(_env(store, SSE_RETENTION_EVENTS="100", SSE_WINDOW_SECONDS="2"), 1)
    try:
        yield server
    finally:
        server.stop()


async def test_a_cursor_behind_the_retention_gets_the_exact_reset_then_what_is_kept(
    short_retention: UvicornServer, http: httpx.AsyncClient, channel: str
) -> None:
    base = short_retention.url
    first = (await publish(http, base, channel, {"data": 1})).json()["events"][0]["id"]
    for start in range(2, 602, 100):
        response = await publish(
            http, base, channel, [{"data": n} for n in range(start, start + 100)]
        )
        assert response.status_code == 201
    result = await read_stream(http, f"{base}/channels/{channel}/stream", last_event_id=first)
    reset = result.events[0]
    assert reset.type == "reset"
    assert json.loads(reset.data) == {
        "reason": "history_trimmed",
        "missed_from": 2,
        "missed_to": 501,
    }
    assert result.data() == list(range(502, 602))
    assert result.ended_with == "timeout"


# -- a store that goes away and comes back ---------------------------------------------------


async def test_a_store_outage_ends_streams_with_error_stores_nothing_and_loses_nothing(
    tmp_path: Path, http: httpx.AsyncClient, channel: str
) -> None:
    """On a Redis of the test's own (never the shared one), which keeps what it acknowledged
    across a restart."""
    redis = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        (server,) = _servers(_env(redis.url(0), SSE_REDIS_TIMEOUT_SECONDS="1"), 1)
        try:
            await _outage(redis, server.url, http, channel)
        finally:
            server.stop()
    finally:
        redis.stop()


async def _outage(redis: RedisServer, base: str, http: httpx.AsyncClient, channel: str) -> None:
    published = await publish(http, base, channel, [{"data": n} for n in range(1, 11)])
    assert published.status_code == 201
    stream = asyncio.create_task(
        read_stream(http, f"{base}/channels/{channel}/stream?from=start", max_seconds=30)
    )
    await asyncio.sleep(1.0)  # connected, caught up, waiting for more
    redis.stop()

    cut = await stream
    assert cut.data() == list(range(1, 11))
    assert cut.ended_with == "error"
    assert json.loads(cut.events[-1].data)["error"] == "store_unavailable"
    health = await http.get(f"{base}/healthz")
    assert health.status_code == 503
    refused = await publish(http, base, channel, [{"data": "lost"}, {"data": "lost too"}])
    assert refused.status_code == 503
    assert refused.json()["error"] == "store_unavailable"

    redis.start()
    for _ in range(50):
        if (await http.get(f"{base}/healthz")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    resumed_publish = await publish(http, base, channel, [{"data": n} for n in range(11, 16)])
    assert resumed_publish.status_code == 201
    # Nothing of the refused batch was stored: the sequence goes on from 10.
    assert [e["seq"] for e in resumed_publish.json()["events"]] == list(range(11, 16))
    resumed = await read_stream(
        http, f"{base}/channels/{channel}/stream?window=1", last_event_id=cut.last_event_id
    )
    assert [e.type for e in resumed.events] == ["message"] * 5 + ["timeout"]
    assert resumed.data() == list(range(11, 16))


# -- Redis Cluster ---------------------------------------------------------------------------


def _channels_on_different_nodes(cluster: RedisClusterServers, count: int) -> list[str]:
    """Channel names whose keys live on ``count`` different nodes of the cluster."""
    client = SyncRedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        by_node: dict[int, str] = {}
        for n in range(1000):
            name = f"multi/{n}"
            by_node.setdefault(client.get_node_from_key(f"sse:{{{name}}}:log").port, name)
            if len(by_node) == count:
                return list(by_node.values())
    finally:
        client.close()
    raise AssertionError("no channels spread over the nodes")


async def test_a_multiplexed_stream_follows_channels_on_different_cluster_nodes(
    redis_cluster: RedisClusterServers, http: httpx.AsyncClient
) -> None:
    channels = _channels_on_different_nodes(redis_cluster, 3)
    (server,) = _servers(_env(redis_cluster.url), 1)
    try:
        base = server.url
        for channel in channels:
            assert (await publish(http, base, channel, {"data": channel})).status_code == 201
        url = f"{base}/stream?channels={','.join(channels)}&from=start&window=2"
        stream = asyncio.create_task(read_stream(http, url, max_seconds=20))
        await asyncio.sleep(1.0)
        for channel in channels:
            assert (await publish(http, base, channel, {"data": channel})).status_code == 201
        result = await stream
        assert sorted(result.data()) == sorted(channels * 2)
        resumed = await read_stream(
            http, url.replace("&from=start", ""), last_event_id=result.last_event_id
        )
        assert resumed.data() == []
        assert resumed.ended_with == "timeout"
    finally:
        server.stop()
