"""A queue in Redis (``redis://host:port/db?name=jobs``): a stream read by a consumer group.

Why a stream and not a list: a consumer group remembers, per job, who took it and when (the
pending entries list), which is exactly reliable delivery. A job taken and not acknowledged
within the visibility timeout is claimed by the next taker (``XAUTOCLAIM``), so a worker that
dies loses nothing. Acknowledging removes the entry (``XACK`` + ``XDEL`` in one transaction),
so the stream holds only unfinished jobs.

Costs: a take is one ``XAUTOCLAIM`` plus one ``XREADGROUP``, which blocks server-side while
the queue is empty; an idle worker repeats the pair every few seconds (at most 5, or half the
visibility timeout), because a blocked read does not wake for a job whose taker died. A job
that was claimed back costs one ``XPENDING`` more, to learn how often it was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..errors import QueueUnavailable
from .base import Delivery, Job, JobQueue

__all__ = ["RedisQueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_GROUP = "workers"


def split_url(url: str) -> tuple[str, str]:
    """``redis://…?name=jobs`` → (the URL redis-py reads, the queue's name)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    name = next((v for k, v in query if k == "name"), "") or "jobs"
    rest = urlencode([(k, v) for k, v in query if k != "name"])
    return urlunsplit(parts._replace(query=rest)), name


class RedisQueue(JobQueue):
    scheme = "redis"

    def __init__(self, url: str, *, visibility: float = 120.0) -> None:
        redis_url, name = split_url(url)
        self.name = name
        # One key per queue; the braces keep it on one Redis Cluster slot.
        self.key = f"{{sse-queue:{name}}}:jobs"
        self._client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        self._visibility_ms = max(1, int(visibility * 1000))
        # How often a waiting take looks for jobs whose taker died: an idle worker sends one
        # XAUTOCLAIM this often, and a lost job waits at most this long past its visibility.
        self._reclaim_every = min(5.0, visibility / 2)
        self._consumer = f"worker-{uuid.uuid4().hex[:12]}"
        self._group_ready = False

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"redis queue {self.name!r}: {exc}") from None

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0: jobs put before any worker existed are delivered too.
            await self._client.xgroup_create(self.key, _GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def put(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return

        async def send() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                for job in jobs:
                    pipe.xadd(self.key, {"job": job.to_json(), "attempt": "0"})
                await pipe.execute()

        await self._call(send)

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        return await self._call(lambda: self._take(limit, wait))

    async def _take(self, limit: int, wait: float) -> list[Delivery]:
        await self._ensure_group()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            out = await self._reclaim(limit)
            if out:
                return out
            # A blocked XREADGROUP wakes for new entries only, not for a pending one whose
            # visibility ran out: block in slices, and look for such entries between them.
            remaining = deadline - loop.time()
            block = min(remaining, self._reclaim_every)
            response: Any = await self._client.xreadgroup(
                _GROUP,
                self._consumer,
                {self.key: ">"},
                count=limit,
                block=max(1, int(block * 1000)) if block > 0 else None,
            )
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    await self._deliver(out, entry_id, fields, reclaimed=False)
            if out or loop.time() >= deadline:
                return out

    async def _reclaim(self, limit: int) -> list[Delivery]:
        """Jobs whose taker did not acknowledge them within the visibility timeout."""
        out: list[Delivery] = []
        claimed = await self._client.xautoclaim(
            self.key, _GROUP, self._consumer, self._visibility_ms, "0-0", count=limit
        )
        # [next start, [(id, fields), …], deleted ids]; fields are None for deleted entries.
        for entry_id, fields in claimed[1]:
            if fields:
                await self._deliver(out, entry_id, fields, reclaimed=True)
        return out

    async def _deliver(
        self, out: list[Delivery], entry_id: bytes, fields: dict[bytes, bytes], *, reclaimed: bool
    ) -> None:
        try:
            job = Job.from_json(fields.get(b"job", b""))
        except ValueError:
            # Not ours to run, and it would come back forever: drop it, loudly.
            log.warning("redis queue %s: dropping entry %s, not a job", self.name, entry_id)
            await self.ack(Delivery(Job("", ""), entry_id.decode()))
            return
        attempt = int(fields.get(b"attempt", b"0")) + 1
        if reclaimed:
            pending: Any = await self._client.xpending_range(
                self.key, _GROUP, entry_id, entry_id, 1
            )
            if pending:
                attempt += int(pending[0]["times_delivered"]) - 1
        out.append(Delivery(job, entry_id.decode(), attempt))

    async def ack(self, delivery: Delivery) -> None:
        async def done() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xack(self.key, _GROUP, delivery.receipt)
                pipe.xdel(self.key, delivery.receipt)
                await pipe.execute()

        await self._call(done)

    async def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        # A stream entry cannot be made visible again by itself. Without a delay, the job goes
        # back as a new entry (the attempt count travels with it), atomically with the ack of
        # the old one. With a delay, the entry stays pending and its idle time is set so that
        # XAUTOCLAIM picks it up once ``delay`` has passed (so at most the visibility timeout).
        if delay > 0:
            idle = max(0, self._visibility_ms - int(delay * 1000))

            async def later() -> None:
                # JUSTID: re-claiming must not count as a delivery.
                await self._client.xclaim(
                    self.key, _GROUP, self._consumer, 0, [delivery.receipt], idle=idle, justid=True
                )

            await self._call(later)
            return

        async def now() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(self.key, {"job": delivery.job.to_json(), "attempt": delivery.attempt})
                pipe.xack(self.key, _GROUP, delivery.receipt)
                pipe.xdel(self.key, delivery.receipt)
                await pipe.execute()

        await self._call(now)

    async def purge(self) -> None:
        """Drop every job and the consumer group (for tests and resets)."""
        await self._call(lambda: self._client.delete(self.key))
        self._group_ready = False

    async def aclose(self) -> None:
        # Forget this consumer if it holds no job: deleting a consumer drops its pending
        # entries, which would make them unclaimable, so one that holds jobs stays.
        with contextlib.suppress(RedisError, OSError):
            consumers: Any = await self._client.xinfo_consumers(self.key, _GROUP)
            for consumer in consumers:
                if consumer["name"] == self._consumer.encode() and consumer["pending"] == 0:
                    await self._client.xgroup_delconsumer(self.key, _GROUP, self._consumer)
        await self._client.aclose()
