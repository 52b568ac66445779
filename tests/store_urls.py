"""The event stores that service-level tests run on: every test parametrized with
:func:`store_params` runs on the memory store and on Redis (db 6).

Redis runs only where ``open_store`` knows the ``redis`` scheme: the Redis store is its own
piece of work, and until it is in the tree those runs are skipped, saying why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from serverless_sse.settings import Settings
from serverless_sse.stores import open_store

MEMORY_STORE = "memory://"
REDIS_STORE = "redis://127.0.0.1:6379/6"
REDIS_QUEUE = "redis://127.0.0.1:6379/7"


def store_supported(url: str) -> bool:
    """Whether ``open_store`` has a backend for this URL's scheme."""
    try:
        store = open_store(url, Settings())
    except ValueError:
        return False
    asyncio.run(store.aclose())
    return True


def store_params() -> list[Any]:
    return [
        pytest.param(MEMORY_STORE, id="memory"),
        pytest.param(
            REDIS_STORE,
            id="redis",
            marks=pytest.mark.skipif(
                not store_supported(REDIS_STORE),
                reason="open_store does not know the redis scheme in this tree yet",
            ),
        ),
    ]


def flush(url: str) -> None:
    """Empty a Redis database of ours (6 or 7 only: other databases belong to others)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
