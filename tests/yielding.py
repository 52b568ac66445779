"""A memory store whose calls let other tasks run, as a networked store's do.

The plain memory store completes each call without suspending, so concurrent callers never
interleave inside it and races cannot show; this one suspends at the start of every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from serverless_sse.events import NewEvent
from serverless_sse.stores.base import Appended
from serverless_sse.stores.memory import MemoryStore


class YieldingStore(MemoryStore):
    async def get_value(self, key: str) -> str | None:
        await asyncio.sleep(0)
        return await super().get_value(key)

    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        await asyncio.sleep(0)
        return await super().put_value(key, value, ttl=ttl, only_if_absent=only_if_absent)

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        await asyncio.sleep(0)
        return await super().increment(key, amount, ttl=ttl)

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        await asyncio.sleep(0)
        return await super().append(channel, events)
