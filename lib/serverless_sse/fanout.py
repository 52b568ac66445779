"""Per-process fan-out: one shared reader of the store per channel, for every local stream.

Store load grows with channels × instances, not with connections: however many streams in this
process follow ``rooms/lobby``, one :class:`ChannelFeed` reads it (one blocking read at a
time), keeps the most recent events in a bounded ring, and wakes the streams. Each event's
bytes are encoded once per format and shared by every stream that writes them.

A stream whose position is not in the ring (it is catching up, or fell behind) reads the store
itself, page by page, at its own pace; so the ring bounds this process's memory whatever the
slowest client does. The registry is the one piece of per-process mutable state; the app's
lifespan owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from .cursor import Cursor, Position
from .errors import SSEError
from .events import EventFormat, StoredEvent
from .frames import event_body, with_id
from .stores.base import ChannelState, EventStore

__all__ = ["ChannelFeed", "FeedItem", "FeedRegistry"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedItem:
    """An event in a feed's ring, with its wire bytes built on first use and then shared."""

    event: StoredEvent
    epoch: str
    _bodies: dict[str, bytes] = field(default_factory=dict)
    _frames: dict[str, bytes] = field(default_factory=dict)

    def body(self, fmt: EventFormat) -> bytes:
        body = self._bodies.get(fmt)
        if body is None:
            body = self._bodies[fmt] = event_body(self.event.type, self.event.data, fmt)
        return body

    def frame(self, channel: str, fmt: EventFormat) -> bytes:
        """The whole frame for a single-channel stream, whose id depends on this event only."""
        frame = self._frames.get(fmt)
        if frame is None:
            cursor = Cursor.encode_positions({channel: Position(self.epoch, self.event.seq)})
            frame = self._frames[fmt] = with_id(cursor, self.body(fmt))
        return frame


class ChannelFeed:
    """The shared live reader of one channel in this process."""

    def __init__(self, store: EventStore, channel: str, *, buffer_events: int, wait: float):
        self.store = store
        self.channel = channel
        self.epoch = ""
        self.last_seq = 0
        self.state = ChannelState.empty()
        self.error: SSEError | None = None
        self.ready = asyncio.Event()
        self.listeners: set[asyncio.Event] = set()
        self._ring: deque[FeedItem] = deque(maxlen=buffer_events)
        self._wait = wait
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None

    def after(self, position: Position) -> list[FeedItem] | None:
        """The ring's events after ``position``; ``None`` when the ring cannot answer.

        ``None`` means: this feed has not started, is failing, follows another epoch, or no
        longer holds the next event (the stream must read the store itself). ``[]`` means the
        position is at (or past) what this feed has read.
        """
        if not self.ready.is_set() or self.error is not None:
            return None
        if position.epoch != self.epoch and not (position.epoch == "" and position.seq == 0):
            return None
        if position.seq >= self.last_seq:
            return []
        ring = self._ring
        if not ring or ring[0].event.seq > position.seq + 1:
            return None
        start = position.seq + 1 - ring[0].event.seq
        return [ring[i] for i in range(start, len(ring))]

    def _notify(self) -> None:
        for listener in self.listeners:
            listener.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"feed:{self.channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                if not self.ready.is_set():
                    state = await self.store.state(self.channel)
                    self._adopt(state)
                    self.last_seq = state.last_seq
                    self.ready.set()
                result = await self.store.read(
                    self.channel, self.last_seq, limit=1000, wait=self._wait, epoch=self.epoch
                )
            except SSEError as exc:
                # Streams see the error through after() -> None and their own store read.
                self.error = exc
                self._notify()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # a bug, not an outage: log it, keep serving
                log.exception("feed for %s failed", self.channel)
                self.error = SSEError("feed failed")
                self._notify()
                await asyncio.sleep(1.0)
                continue
            backoff = 0.05
            self.error = None
            state = result.state
            if state.epoch != self.epoch:
                self._adopt(state)
                if result.events and result.events[0].seq != self.last_seq + 1:
                    continue  # the read was against the old log: read the new one from the start
            ring = self._ring
            for event in result.events:
                if event.seq != self.last_seq + 1:
                    # Never hold a gap in the ring: start it again from this event.
                    ring.clear()
                ring.append(FeedItem(event, state.epoch))
                self.last_seq = event.seq
            self.state = state
            if result.events or state.closed:
                self._notify()
            if state.closed and self.last_seq >= (state.closed_seq or 0):
                # Nothing more can come; streams finish from the ring or the store.
                await asyncio.sleep(self._wait)

    def _adopt(self, state: ChannelState) -> None:
        """Follow the log the store has now (first creation, or a lost and recreated log)."""
        if self.epoch and state.epoch != self.epoch:
            log.warning(
                "channel %s: log epoch changed (%s -> %s)",
                self.channel,
                self.epoch,
                state.epoch or "none",
            )
            self._ring.clear()
            self.last_seq = state.first_seq - 1
        elif not self.epoch and self.last_seq and state.epoch:
            self.last_seq = state.first_seq - 1
        self.epoch = state.epoch
        self.state = state
        self._notify()


class FeedRegistry:
    """Feeds by channel, started on first use and stopped a little after their last stream
    leaves (so the reconnect at a window's end finds the feed still warm)."""

    def __init__(
        self,
        store: EventStore,
        *,
        buffer_events: int = 2048,
        wait: float = 10.0,
        linger: float = 5.0,
    ) -> None:
        self._store = store
        self._buffer = buffer_events
        self._wait = wait
        self._linger = linger
        self._feeds: dict[str, ChannelFeed] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._feeds)

    def subscribe(self, channel: str, listener: asyncio.Event) -> ChannelFeed:
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._feeds[channel] = ChannelFeed(
                self._store, channel, buffer_events=self._buffer, wait=self._wait
            )
            feed.start()
        feed.listeners.add(listener)
        feed._idle_since = None
        return feed

    def unsubscribe(self, feed: ChannelFeed, listener: asyncio.Event) -> None:
        feed.listeners.discard(listener)
        if not feed.listeners:
            feed._idle_since = asyncio.get_running_loop().time()
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.create_task(self._reap(), name="feed-reaper")

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._linger / 2)
            now = loop.time()
            idle = [
                f
                for f in self._feeds.values()
                if not f.listeners
                and f._idle_since is not None
                and now - f._idle_since >= self._linger
            ]
            for feed in idle:
                del self._feeds[feed.channel]
                await feed.stop()
            if not any(not f.listeners for f in self._feeds.values()):
                return

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            await feed.stop()
