"""One writer per channel per process: how the durable stores append.

A store's appends to a channel queue up and are written by one task of their own, the
channel's writer, one call after the other: the process's publishers never race each other
for the next sequence, and the writer may merge what queued meanwhile into one call (Redis)
or trust the head it wrote last (DynamoDB). How to write is the store's (its ``drain``); this
module keeps the queues and the writers, and makes sure that every write learns its outcome:
the writer's result or error, or :class:`StoreUnavailable` when the store closes or the
writer is cut off. A caller that goes away before its write was taken takes it back; after,
it cannot (the write may have landed, and its outcome is no longer anyone's to read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import Generic, Protocol, TypeVar

from ..errors import StoreUnavailable
from .base import Appended

__all__ = ["ChannelWriters", "Write"]

log = logging.getLogger(__name__)


class Write(Protocol):
    """A write waiting in a channel's queue; its writer sets ``done``."""

    @property
    def done(self) -> asyncio.Future[list[Appended]]: ...


W = TypeVar("W", bound=Write)

Drain = Callable[[str, list[W]], Awaitable[None]]
"""``drain(channel, queue)``: take writes from the front of ``queue`` and settle the ``done``
of every write taken (also when cancelled), until ``queue`` is empty."""


class ChannelWriters(Generic[W]):
    """The queued writes and the writers of one store (``name`` names its errors)."""

    def __init__(self, name: str, drain: Drain[W]) -> None:
        self._name = name
        self._drain = drain
        self._queues: dict[str, list[W]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(self, channel: str, write: W) -> list[Appended]:
        """Queue ``write`` for the channel's writer (started if there is none); its result."""
        if self._closing:
            raise StoreUnavailable(f"{self._name}: the store is closing")
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = []
            # A context of its own: the writer serves every request of the channel, not the
            # one that happened to start it.
            task = asyncio.create_task(
                self._run(channel, queue), name=f"{self._name}:{channel}", context=Context()
            )
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._ended(done, channel, queue))
        queue.append(write)
        try:
            # Shielded: once the writer took the write, its outcome is the writer's to tell.
            return await asyncio.shield(write.done)
        except asyncio.CancelledError:
            if write in queue:
                queue.remove(write)  # not taken yet: it is never written
            else:
                write.done.add_done_callback(_unread)
            raise

    async def _run(self, channel: str, queue: list[W]) -> None:
        await self._drain(channel, queue)
        # Empty, in the same step as the drain's last look: a later write starts a writer.
        del self._queues[channel]

    def _ended(self, task: asyncio.Task[None], channel: str, queue: list[W]) -> None:
        """A writer stopped. If it was cut off (cancelled, even before it ran, or broken),
        fail what it left, so that no caller waits for a writer that is gone."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the %s writer of %s failed", self._name, channel, exc_info=task.exception())
        if self._queues.get(channel) is queue:
            del self._queues[channel]
            error = StoreUnavailable(f"{self._name}: the store closed")
            for write in queue:
                if not write.done.done():
                    write.done.set_exception(error)
            queue.clear()

    async def aclose(self, grace: float) -> None:
        """Refuse new writes; let the writers finish what they hold for up to ``grace``
        seconds (a write cut off after it reached the store would be reported as failed),
        then cut them off."""
        self._closing = True
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)


def _unread(done: asyncio.Future[list[Appended]]) -> None:
    """Take the outcome of a write whose caller went away (else asyncio logs it as lost)."""
    if not done.cancelled():
        done.exception()
