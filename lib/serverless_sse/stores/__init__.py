"""Event stores behind one interface, chosen by the scheme of a URL (``SSE_STORE``).

Backends are imported only when chosen, so a function that never talks to DynamoDB never
pays for importing boto3.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..settings import Settings
from .base import Appended, ChannelState, EventStore, ReadResult, new_epoch

__all__ = ["Appended", "ChannelState", "EventStore", "ReadResult", "new_epoch", "open_store"]


def open_store(url: str, settings: Settings) -> EventStore:
    """The store a URL names: ``memory://``, ``redis://host:port/db``,
    ``redis+cluster://host:port[,host:port…]``, ``dynamodb://table?region=…&endpoint_url=…``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(
            retention_events=settings.retention_events,
            retention_seconds=settings.retention_seconds,
        )
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from .redis import RedisStore

        return RedisStore.from_url(
            url,
            retention_events=settings.retention_events,
            retention_seconds=settings.retention_seconds,
            linger_seconds=settings.log_linger_seconds,
            max_connections=settings.redis_max_connections,
            max_waits=settings.redis_max_waits,
            poll_seconds=settings.redis_poll_seconds,
            timeout=settings.redis_timeout_seconds,
        )
    if scheme == "dynamodb":
        from .dynamodb import DynamoDBStore

        return DynamoDBStore.from_url(url, settings)
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}")
