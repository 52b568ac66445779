"""The store backends the contract suite runs against.

Each backend is a :class:`Backend`: how to open a store with given retention, and how to make
it lose a channel's log (what a restart without persistence, or a recreated table, does).
Every backend passes the very same tests:

- ``memory``: the embedded store;
- ``redis``: the shared Redis on 127.0.0.1:6379, database 1 (this suite's own);
- ``redis-cluster``: a three-node Redis Cluster the session starts on free ports;
- ``dynamodb-mock``: DynamoDB emulated in process by moto (``mock_aws``), a table per test;
- ``dynamodb-server``: moto's server over real HTTP, started once per session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from serverless_sse.stores.base import EventStore
from serverless_sse.stores.dynamodb import DynamoDBStore, create_table
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.stores.redis import RedisStore
from tests.servers import MotoServer, RedisClusterServers, free_port
from tests.stores import flush_redis

REDIS_URL = "redis://127.0.0.1:6379/1"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class DynamoDBTable:
    name: str
    endpoint_url: str | None


@dataclass
class Backend:
    name: str
    open: Callable[..., Awaitable[EventStore]]
    lose_log: Callable[[EventStore, str], Awaitable[None]]
    #: A fixture the backend needs (a server, a table); its value is ``open``'s first argument.
    needs: str | None = None
    #: A store of this backend whose server cannot be reached (``None``: it cannot fail).
    unreachable: Callable[[Any], Awaitable[EventStore]] | None = None


async def _open_memory(_: None, *, retention_events: int, retention_seconds: float) -> EventStore:
    return MemoryStore(retention_events=retention_events, retention_seconds=retention_seconds)


async def _lose_memory_log(store: EventStore, channel: str) -> None:
    assert isinstance(store, MemoryStore)
    store.forget_log(channel)


async def _open_redis(_: None, *, retention_events: int, retention_seconds: float) -> EventStore:
    return RedisStore.from_url(
        REDIS_URL, retention_events=retention_events, retention_seconds=retention_seconds
    )


async def _open_redis_cluster(
    cluster: RedisClusterServers, *, retention_events: int, retention_seconds: float
) -> EventStore:
    return RedisStore.from_url(
        cluster.url, retention_events=retention_events, retention_seconds=retention_seconds
    )


async def _lose_redis_log(store: EventStore, channel: str) -> None:
    assert isinstance(store, RedisStore)
    await store.forget_log(channel)


async def _open_dynamodb(
    table: DynamoDBTable, *, retention_events: int, retention_seconds: float
) -> EventStore:
    return DynamoDBStore(
        table.name,
        region=REGION,
        endpoint_url=table.endpoint_url,
        retention_events=retention_events,
        retention_seconds=retention_seconds,
        # moto's in-process backend is not thread-safe: one thread there (concurrent tasks
        # still interleave call by call); the server serialises requests itself.
        threads=16 if table.endpoint_url else 1,
    )


async def _lose_dynamodb_log(store: EventStore, channel: str) -> None:
    assert isinstance(store, DynamoDBStore)
    await store.forget_log(channel)


async def _unreachable_redis(_: Any) -> EventStore:
    return RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/1", timeout=1.0)


async def _unreachable_redis_cluster(_: Any) -> EventStore:
    return RedisStore.from_url(f"redis+cluster://127.0.0.1:{free_port()}", timeout=1.0)


async def _unreachable_dynamodb(table: DynamoDBTable) -> EventStore:
    if table.endpoint_url is None:  # in process: a table that does not exist
        return DynamoDBStore("no-such-table", region=REGION, threads=1)
    return DynamoDBStore(
        table.name, region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=1.0
    )


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", _open_memory, _lose_memory_log),
    "redis": Backend(
        "redis", _open_redis, _lose_redis_log, "contract_redis_db", _unreachable_redis
    ),
    "redis-cluster": Backend(
        "redis-cluster",
        _open_redis_cluster,
        _lose_redis_log,
        "redis_cluster",
        _unreachable_redis_cluster,
    ),
    "dynamodb-mock": Backend(
        "dynamodb-mock",
        _open_dynamodb,
        _lose_dynamodb_log,
        "dynamodb_mock_table",
        _unreachable_dynamodb,
    ),
    "dynamodb-server": Backend(
        "dynamodb-server",
        _open_dynamodb,
        _lose_dynamodb_log,
        "dynamodb_server_table",
        _unreachable_dynamodb,
    ),
}


@pytest.fixture(scope="session")
def contract_redis_db() -> None:
    """Database 1 of the shared Redis, emptied once per session (never any other database)."""
    flush_redis(REDIS_URL)


@pytest.fixture
def dynamodb_mock_table() -> Iterator[DynamoDBTable]:
    """A fresh table in moto's in-process emulation (gone with the test)."""
    with mock_aws():
        create_table("sse-contract", region=REGION)
        yield DynamoDBTable("sse-contract", None)


@pytest.fixture(scope="session")
def dynamodb_server_table(moto_server: MotoServer) -> DynamoDBTable:
    """One table on moto's server for the session (tests use channels of their own)."""
    name = f"sse-contract-{uuid.uuid4().hex[:8]}"
    create_table(name, region=REGION, endpoint_url=moto_server.endpoint_url)
    return DynamoDBTable(name, moto_server.endpoint_url)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def backend_resource(backend: Backend, request: pytest.FixtureRequest) -> Any:
    """What the parametrized backend needs, started on first use."""
    return request.getfixturevalue(backend.needs) if backend.needs else None


@pytest.fixture
async def open_store(
    backend: Backend, backend_resource: Any
) -> AsyncIterator[Callable[..., Awaitable[EventStore]]]:
    """Open stores of the parametrized backend; all are closed after the test."""
    opened: list[EventStore] = []

    async def open_(
        *, retention_events: int = 10_000, retention_seconds: float = 3600
    ) -> EventStore:
        store = await backend.open(
            backend_resource, retention_events=retention_events, retention_seconds=retention_seconds
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.aclose()


@pytest.fixture
async def unreachable_store(backend: Backend, backend_resource: Any) -> AsyncIterator[EventStore]:
    """A store of the parametrized backend whose server does not answer."""
    if backend.unreachable is None:
        pytest.skip(f"the {backend.name} store cannot fail")
    store = await backend.unreachable(backend_resource)
    yield store
    await store.aclose()


@pytest.fixture
async def store(open_store: Callable[..., Awaitable[EventStore]]) -> EventStore:
    return await open_store()


@pytest.fixture
def channel() -> str:
    """A channel name no other test (or earlier run against a shared server) uses."""
    return f"test/{uuid.uuid4().hex}"
