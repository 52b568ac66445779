"""The event stores that service-level tests run on: every test parametrized with
:func:`store_params` runs on the memory store and on Redis (db 6; jobs on db 7).

A Redis run that cannot open its store fails: it is never skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

MEMORY_STORE = "memory://"
REDIS_STORE = "redis://127.0.0.1:6379/6"
REDIS_QUEUE = "redis://127.0.0.1:6379/7"


def store_params() -> list[Any]:
    return [
        pytest.param(MEMORY_STORE, id="memory"),
        pytest.param(REDIS_STORE, id="redis"),
    ]


def flush(url: str) -> None:
    """Empty a Redis database of ours (6 or 7 only: other databases belong to others)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
