"""The store backends the contract suite runs against.

Each backend is a :class:`Backend`: how to open a store with given retention, and how to make
it lose a channel's log (what a restart without persistence does). Durable backends register
here too, so that every one of them passes the very same tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from serverless_sse.stores.base import EventStore
from serverless_sse.stores.memory import MemoryStore


@dataclass
class Backend:
    name: str
    open: Callable[..., Awaitable[EventStore]]
    lose_log: Callable[[EventStore, str], Awaitable[None]]


async def _open_memory(*, retention_events: int, retention_seconds: float) -> EventStore:
    return MemoryStore(retention_events=retention_events, retention_seconds=retention_seconds)


async def _lose_memory_log(store: EventStore, channel: str) -> None:
    assert isinstance(store, MemoryStore)
    store.forget_log(channel)


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", _open_memory, _lose_memory_log),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
async def open_store(backend: Backend) -> AsyncIterator[Callable[..., Awaitable[EventStore]]]:
    """Open stores of the parametrized backend; all are closed after the test."""
    opened: list[EventStore] = []

    async def open_(
        *, retention_events: int = 10_000, retention_seconds: float = 3600
    ) -> EventStore:
        store = await backend.open(
            retention_events=retention_events, retention_seconds=retention_seconds
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(open_store: Callable[..., Awaitable[EventStore]]) -> EventStore:
    return await open_store()


@pytest.fixture
def channel() -> str:
    """A channel name no other test (or earlier run against a shared server) uses."""
    return f"test/{uuid.uuid4().hex}"
