"""A lock shared by every instance, made of one of the store's leases.

For short critical sections that must not interleave across instances (a poll's count and
its announcement). The lease expires if its holder dies, so a lock can never be held forever;
the price is that a holder slower than ``ttl`` may overlap with the next one, so sections
must be far shorter than ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from .errors import Busy
from .stores.base import EventStore

__all__ = ["locked"]


@contextlib.asynccontextmanager
async def locked(
    store: EventStore, name: str, *, ttl: float = 10.0, wait: float = 5.0
) -> AsyncIterator[None]:
    """Hold the lock ``name`` for the body of the ``async with``.

    Waits up to ``wait`` seconds for it (polling with backoff from 5 ms to 100 ms), then
    raises :class:`Busy` (503).
    """
    loop = asyncio.get_running_loop()
    holder = uuid.uuid4().hex
    group = f"lock/{name}"
    deadline = loop.time() + wait
    delay = 0.005
    while not await store.acquire_lease(group, holder, limit=1, ttl=ttl):
        if loop.time() >= deadline:
            raise Busy(f"{name} stayed locked for {wait:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        await store.release_lease(group, holder)
