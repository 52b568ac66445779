"""The embedded queue: jobs in this process's memory (``memory://``).

The default for a local run, where the worker runs inside the web process: no server, nothing
survives a restart. It keeps the contract's visibility timeout and redelivery, so a worker
that works here works on Redis and SQS.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import Delivery, Job, JobQueue

__all__ = ["MemoryQueue"]


@dataclass(slots=True)
class _Entry:
    job: Job
    attempt: int  # deliveries so far
    visible_at: float


class MemoryQueue(JobQueue):
    scheme = "memory"

    def __init__(
        self, *, visibility: float = 120.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._visibility = visibility
        self._clock = clock
        self._ready: deque[_Entry] = deque()
        # Jobs not visible yet: given back with a delay, or taken and not acknowledged. Kept
        # in one map by receipt; scanning it costs O(jobs in flight) per take, which is fine
        # for a single process's queue.
        self._hidden: dict[str, _Entry] = {}
        self._receipts = itertools.count(1)
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        """Jobs not yet acknowledged (ready, delayed or in flight)."""
        return len(self._ready) + len(self._hidden)

    async def put(self, jobs: Sequence[Job]) -> None:
        now = self._clock()
        self._ready.extend(_Entry(job, 0, now) for job in jobs)
        self._changed.set()

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        deadline = self._clock() + wait
        while True:
            self._reveal()
            if self._ready:
                return self._hand_out(limit)
            now = self._clock()
            if now >= deadline:
                return []
            due = min((e.visible_at for e in self._hidden.values()), default=deadline)
            self._changed.clear()
            try:
                async with asyncio.timeout(max(0.0, min(deadline, due) - now)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _reveal(self) -> None:
        now = self._clock()
        visible = [r for r, e in self._hidden.items() if e.visible_at <= now]
        for receipt in visible:
            self._ready.append(self._hidden.pop(receipt))

    def _hand_out(self, limit: int) -> list[Delivery]:
        now = self._clock()
        out: list[Delivery] = []
        while self._ready and len(out) < limit:
            entry = self._ready.popleft()
            entry.attempt += 1
            entry.visible_at = now + self._visibility
            receipt = str(next(self._receipts))
            self._hidden[receipt] = entry
            out.append(Delivery(entry.job, receipt, entry.attempt))
        return out

    async def ack(self, delivery: Delivery) -> None:
        self._hidden.pop(delivery.receipt, None)

    async def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        entry = self._hidden.pop(delivery.receipt, None)
        if entry is None:
            return  # its visibility ran out: it is back in the queue already
        entry.visible_at = self._clock() + delay
        receipt = str(next(self._receipts))
        self._hidden[receipt] = entry
        self._changed.set()
