"""A mutex that holds across instances: one lease, in the store, that at most one holder has.

Read-modify-write of shared state (a task's parser state, a server's control record) must not
interleave between two requests, and those requests may run on different instances. A lease
group with a limit of one is such a lock, and the store already keeps leases (with expiry, so
an instance that dies holding one blocks the others for ``ttl`` seconds at most, never for
good).

The lock is a lease, not a fence: a holder that stalls for longer than ``ttl`` may lose it to
another. Work under it is a few store round trips, far below the ttl; long work (a streamed
upload) calls :meth:`StoreLock.renew` as it goes, which fails loudly once the lease was lost.
"""

from __future__ import annotations

import asyncio
import secrets
from types import TracebackType

from .errors import Conflict
from .stores.base import EventStore

__all__ = ["StoreLock"]


class StoreLock:
    """``async with StoreLock(store, "task:42"):`` — wait (up to ``wait`` seconds) for the lock,
    hold it, give it back. Raises :class:`~serverless_sse.errors.Conflict` (409) when it stays
    taken for longer than ``wait``."""

    def __init__(
        self, store: EventStore, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> None:
        self._store = store
        self._group = f"lock:{name}"
        self._holder = secrets.token_urlsafe(12)
        self._ttl = ttl
        self._wait = wait
        self.name = name

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        pause = 0.005
        # Polling with a growing pause: contention is rare and short (a few round trips), and
        # a store-side queue of waiters would need more than the store interface offers.
        while not await self._store.acquire_lease(
            self._group, self._holder, limit=1, ttl=self._ttl
        ):
            if loop.time() + pause > deadline:
                raise Conflict(f"{self.name} is busy with another request; try again")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def renew(self) -> None:
        """Extend the lease; raises :class:`Conflict` if it was lost (expired and taken)."""
        if not await self._store.acquire_lease(self._group, self._holder, limit=1, ttl=self._ttl):
            raise Conflict(f"{self.name}: the lock expired and another request took it")

    async def release(self) -> None:
        await self._store.release_lease(self._group, self._holder)

    async def __aenter__(self) -> StoreLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
