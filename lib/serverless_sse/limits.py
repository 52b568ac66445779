"""Per-client caps that hold across instances, because they are counted in the store.

- Concurrent streams: each open stream holds a lease in the store (group ``streams:<client>``),
  renewed while it runs and released when it ends. A lease that is not renewed expires after
  ``lease_seconds``: an instance that dies leaks nothing for longer than that.
- Publish rate: events per second per client, counted in a store counter per one-second window
  (a fixed window: up to twice the rate can pass around a window boundary, never more).

Both answer 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time

from .errors import PayloadTooLarge, SSEError, TooManyRequests
from .stores.base import EventStore

__all__ = ["PublishRate", "StreamLeases"]

log = logging.getLogger(__name__)


class StreamLeases:
    """Leases for open streams; one renewal loop per process, not one task per stream."""

    def __init__(self, store: EventStore, *, limit: int | None, lease_seconds: float = 30.0):
        self._store = store
        self.limit = limit
        self._ttl = lease_seconds
        self._held: dict[str, str] = {}  # holder -> group
        self._keeper: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    async def acquire(self, client: str) -> str | None:
        """A lease for one more stream of ``client``, or 429. ``None`` when there is no cap."""
        if self.limit is None:
            return None
        group = f"streams:{client}"
        holder = secrets.token_hex(8)
        if not await self._store.acquire_lease(group, holder, limit=self.limit, ttl=self._ttl):
            raise TooManyRequests(
                f"at most {self.limit} concurrent streams per client",
                retry_after=min(self._ttl, 5.0),
            )
        self._held[holder] = group
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="stream-leases")
        return holder

    async def release(self, holder: str | None) -> None:
        if holder is None:
            return
        group = self._held.pop(holder, None)
        if group is not None:
            with contextlib.suppress(SSEError):
                await self._store.release_lease(group, holder)

    async def _keep(self) -> None:
        assert self.limit is not None
        while self._held:
            await asyncio.sleep(self._ttl / 3)
            for holder, group in list(self._held.items()):
                try:
                    await self._store.acquire_lease(group, holder, limit=self.limit, ttl=self._ttl)
                except SSEError as exc:  # the store is down: the lease may lapse; streams go on
                    log.warning("could not renew stream lease %s: %s", group, exc.detail)

    async def aclose(self) -> None:
        for holder in list(self._held):
            await self.release(holder)
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper


class PublishRate:
    """Published events per second per client, across instances."""

    def __init__(self, store: EventStore, *, per_second: float | None) -> None:
        self._store = store
        self.per_second = per_second

    async def charge(self, client: str, events: int = 1) -> None:
        """Count ``events`` for ``client`` in this second, or refuse with 429."""
        if self.per_second is None:
            return
        limit = math.floor(self.per_second)
        if events > limit:
            # Waiting would never help: this is a request too large for the client's rate.
            raise PayloadTooLarge(
                f"{events} events in one request exceed the rate of {limit} events/s; "
                "send smaller batches"
            )
        now = time.time()
        second = int(now)
        total = await self._store.increment(f"rate:{client}:{second}", events, ttl=2)
        if total > limit:
            raise TooManyRequests(
                f"at most {limit} published events per second per client",
                retry_after=second + 1 - now,
            )

    async def throttle(self, client: str, events: int) -> None:
        """Count ``events`` for ``client``, waiting for the next second as often as the rate
        requires instead of refusing: a long upload slows down to the rate rather than failing
        half-way (when some of it is already stored). Refuses only a rate below one event a
        second, which no batch can ever pass (413, as :meth:`charge` does)."""
        if self.per_second is None:
            return
        limit = math.floor(self.per_second)
        if limit < 1:
            await self.charge(client, events)  # refuses: nothing can ever pass
        remaining = events
        while remaining:
            part = min(remaining, limit)
            try:
                await self.charge(client, part)
            except TooManyRequests:
                await asyncio.sleep(1.0 - time.time() % 1.0)
                continue
            remaining -= part
