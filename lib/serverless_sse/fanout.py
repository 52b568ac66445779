"""Per-process fan-out: one shared reader of the store per channel, for every local stream.

Store load grows with channels × instances, not with connections: however many streams in this
process follow ``rooms/lobby``, one :class:`ChannelFeed` reads it (one blocking read at a
time), keeps the most recent events in a bounded ring, and wakes the streams. Each event's
bytes are encoded once per format and shared by every stream that writes them.

A stream whose position is not in the ring (it is catching up, or fell behind) reads the store
itself, page by page, at its own pace; so the ring bounds this process's memory whatever the
slowest client does. The registry is the one piece of per-process mutable state; the app's
lifespan owns it.

A stream that has caught up may *follow* the feed (:meth:`ChannelFeed.follow`): its task then
sleeps, and the feed writes each batch of new events to every follower itself, as one byte
string shared by all of them, through a send that completes at once when the client's socket
has room (:func:`~serverless_sse.eager.run_eagerly`). Waking a task per stream per event costs
more than the write; this way a thousand streams cost one pass of a loop. A follower goes back
to its own task (woken) as soon as the feed cannot simply write for it: the client's socket is
full, the feed failed or found a new log, its ring no longer holds what the follower needs, or
the channel was closed.

Deliveries happen in rounds. A channel's rounds take at most half of the process's time: the
next one starts no sooner after this one than this one lasted. Under light load that adds nothing (a
round of a few streams takes microseconds); under heavy load the events that arrive meanwhile
go out together, one write per stream per round instead of one per event, and publishes and new
connections keep getting their share of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import Context
from dataclasses import dataclass, field

from starlette.types import Receive

from .cursor import Cursor, Position
from .errors import SSEError
from .events import EventFormat, StoredEvent
from .frames import HEARTBEAT, event_body, with_id
from .stores.base import ChannelState, EventStore

__all__ = ["ChannelFeed", "FeedItem", "FeedRegistry", "Follower", "Wake", "WriteNow", "client_gone"]

WriteNow = Callable[[bytes], Awaitable[None] | None]
"""Write bytes to a stream's client now: ``None`` once written, or an awaitable that finishes
a write that had to wait for room in the socket."""

log = logging.getLogger(__name__)


class Wake:
    """What a stream sleeps on, set by its feeds (and by whoever ends the stream).

    A stream holds one for its whole life, so it is kept small: a flag, and while the stream
    sleeps, what it sleeps in (an ``asyncio.Event`` takes about 1.5 KB, with its deque).
    While it sleeps, a stream may also watch its client (:meth:`sleep_until`'s ``receive``):
    then one task per stream both sleeps and notices the client leave."""

    __slots__ = ("_flag", "_sleep")

    def __init__(self) -> None:
        self._flag = False
        self._sleep: asyncio.Future[None] | asyncio.Timeout | None = None

    def set(self) -> None:
        self._flag = True
        sleep = self._sleep
        if isinstance(sleep, asyncio.Future):
            if not sleep.done():
                sleep.set_result(None)
        elif sleep is not None and not sleep.expired():
            sleep.reschedule(asyncio.get_running_loop().time())  # ends the sleep now

    def clear(self) -> None:
        self._flag = False

    async def sleep_until(self, due: float, receive: Receive | None = None) -> bool:
        """Return once set, or at loop time ``due`` (true); with ``receive`` (the ASGI
        request's), return false as soon as it says that the client went away."""
        if self._flag:
            return True
        loop = asyncio.get_running_loop()
        if receive is None:
            waiter = self._sleep = loop.create_future()
            timer = loop.call_at(due, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._sleep = None
            return True
        try:
            async with asyncio.timeout_at(due) as self._sleep:
                # A request's body (a GET's is empty) comes first; then only the disconnect.
                while (await receive())["type"] != "http.disconnect":
                    pass
                return False
        except TimeoutError:
            return True
        finally:
            self._sleep = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def client_gone(receive: Receive) -> bool:
    """Whether the client went away, asked without waiting: a server's ``receive`` answers
    the disconnect at once when it knows of it, and is cut off after one turn of the loop
    otherwise (``receive`` must bear being cancelled, as uvicorn's and Mangum's do)."""
    try:
        async with asyncio.timeout(0):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    except TimeoutError:
        return False


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


class Follower:
    """A caught-up single-channel stream that its feed writes to while its task sleeps: its
    new events, and a heartbeat comment whenever it has had no bytes for ``heartbeat``
    seconds.

    The stream creates one, and reads back what the feed did for it when it wakes: where it
    now is (``position``), how many events it got (``delivered``), when it last got bytes
    (``last_write``), and a write still finishing (``pending``) that it must await before it
    writes anything itself."""

    __slots__ = (
        "delivered", "fmt", "heartbeat", "last_write", "pending", "position", "wake", "write_now",
    )  # fmt: skip

    def __init__(
        self, write_now: WriteNow, fmt: EventFormat, wake: Wake, *, heartbeat: float
    ) -> None:
        self.write_now = write_now
        self.fmt: EventFormat = fmt
        self.wake = wake
        self.heartbeat = heartbeat
        self.position = Position("", 0)
        self.delivered = 0
        self.last_write = 0.0
        self.pending: Awaitable[None] | None = None

    def push(self, data: bytes, position: Position, count: int, now: float) -> bool:
        """Write ``data`` (the frames of ``count`` events up to ``position``); false when the
        feed must stop writing for this stream: the write has to wait, or failed."""
        try:
            pending = self.write_now(data)
        except Exception:  # the client is gone; its task finds out when it writes next
            return False
        self.position = position
        self.delivered += count
        self.last_write = now
        if pending is None:
            return True
        self.pending = pending
        return False


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
        self.listeners: set[Wake] = set()
        self._ring: deque[FeedItem] = deque(maxlen=buffer_events)
        self._wait = wait
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None
        # Followers, and the sequence that every follower has been written up to (or past).
        self._followers: dict[Follower, None] = {}
        self._pushed = 0
        self._round: asyncio.Handle | None = None
        self._next_round = 0.0
        self._beat: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """No stream uses this feed."""
        return not self.listeners and not self._followers

    # -- followers -------------------------------------------------------------------------

    def follow(self, follower: Follower, position: Position) -> bool:
        """Write this channel's next events to ``follower``, a stream at ``position``, until
        its wake is set; false (nothing changes) unless the stream has every event this
        feed has read, in the feed's log, and the feed is healthy."""
        if position.seq != self.last_seq or not self._reads(position):
            return False
        follower.position = position
        follower.pending = None
        self.listeners.discard(follower.wake)
        self._followers[follower] = None
        self._keep_beating()
        return True

    def unfollow(self, follower: Follower) -> None:
        """Stop writing for ``follower`` (if this feed still was); its stream listens again."""
        if self._followers.pop(follower, 0) is not None:
            self.listeners.add(follower.wake)

    def _release(self, follower: Follower) -> None:
        self.unfollow(follower)
        follower.wake.set()

    def _release_all(self) -> None:
        for follower in list(self._followers):
            self._release(follower)

    # -- heartbeats ------------------------------------------------------------------------

    def _keep_beating(self) -> None:
        """Look for followers due a heartbeat every quarter of the shortest heartbeat (at
        least every second) while there are followers. Their streams would otherwise each
        wake once per heartbeat, and streams that connected together would all wake at once."""
        if self._beat is not None or not self._followers:
            return
        every = min(1.0, min(f.heartbeat for f in self._followers) / 4)
        self._beat = asyncio.get_running_loop().call_later(every, self._heartbeats)

    def _heartbeats(self) -> None:
        self._beat = None
        now = asyncio.get_running_loop().time()
        for follower in list(self._followers):
            if now - follower.last_write >= follower.heartbeat and not follower.push(
                HEARTBEAT, follower.position, 0, now
            ):
                self._release(follower)
        self._keep_beating()

    # -- delivery rounds -------------------------------------------------------------------

    def _schedule_round(self) -> None:
        if self._round is not None:
            return
        loop = asyncio.get_running_loop()
        if self._next_round > loop.time():
            self._round = loop.call_at(self._next_round, self._deliver)
        else:
            self._round = loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        """One round: write what is new to every follower, wake the streams that listen."""
        self._round = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._followers:
            try:
                self._push(started)
            except Exception:  # a bug, not a client: their own tasks take over, from the store
                log.exception("writing %s to its followers failed", self.channel)
                self._release_all()
        self._pushed = max(self._pushed, self.last_seq)
        self._notify()
        if self.state.closed and self.last_seq >= (self.state.closed_seq or 0):
            self._release_all()  # they have the final event: their streams end now
        ended = loop.time()
        # At most half of the loop's time for rounds: the next waits as long as this took.
        self._next_round = ended + (ended - started)

    def _push(self, now: float) -> None:
        ring, pushed = self._ring, self._pushed
        if self.last_seq <= pushed or not ring:
            return
        start = pushed + 1 - ring[0].event.seq
        if start < 0:  # the ring dropped events the followers have not had
            self._release_all()
            return
        items = [ring[i] for i in range(start, len(ring))]
        last = items[-1]
        position = Position(last.epoch, last.event.seq)
        frames: dict[EventFormat, list[bytes]] = {}
        shared: dict[EventFormat, bytes] = {}
        for follower in list(self._followers):
            fmt = follower.fmt
            if fmt not in frames:
                frames[fmt] = [item.frame(self.channel, fmt) for item in items]
                shared[fmt] = b"".join(frames[fmt])
            ahead = follower.position.seq - pushed  # it joined after the last round
            if ahead == 0:
                data, count = shared[fmt], len(items)
            elif ahead < len(items):
                data, count = b"".join(frames[fmt][ahead:]), len(items) - ahead
            else:
                continue
            if not follower.push(data, position, count, now):
                self._release(follower)

    def after(self, position: Position) -> list[FeedItem] | None:
        """The ring's events after ``position``; ``None`` when the ring cannot answer.

        ``None`` means: this feed has not started, is failing, follows another epoch, or no
        longer holds the next event (the stream must read the store itself). ``[]`` means the
        position is at (or past) what this feed has read.
        """
        if not self._reads(position):
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

    def _reads(self, position: Position) -> bool:
        """Whether this feed reads, healthily, the log that ``position`` is in."""
        if self._task is None or not self.ready.is_set() or self.error is not None:
            return False
        return position.epoch == self.epoch or (position.epoch == "" and position.seq == 0)

    def start(self) -> None:
        if self._task is None:
            # A context of its own: the feed serves every stream of the channel, not the
            # request that happened to start it.
            self._task = asyncio.create_task(
                self._run(), name=f"feed:{self.channel}", context=Context()
            )

    async def stop(self) -> None:
        for handle in (self._round, self._beat):
            if handle is not None:
                handle.cancel()
        self._round = self._beat = None
        self._release_all()
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
                    self.last_seq = self._pushed = state.last_seq
                    self.ready.set()
                result = await self.store.read(
                    self.channel, self.last_seq, limit=1000, wait=self._wait, epoch=self.epoch
                )
            except SSEError as exc:
                # Streams see the error through after() -> None and their own store read.
                self.error = exc
                self._release_all()
                self._notify()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # a bug, not an outage: log it, keep serving
                log.exception("feed for %s failed", self.channel)
                self.error = SSEError("feed failed")
                self._release_all()
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
                self._schedule_round()
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
            self._restart_at(state.first_seq - 1)
        elif not self.epoch and self.last_seq and state.epoch:
            self._restart_at(state.first_seq - 1)
        self.epoch = state.epoch
        self.state = state
        self._notify()

    def _restart_at(self, seq: int) -> None:
        """Read on from ``seq`` in a log other than the one followed so far: every follower
        goes back to its own task, which finds out what it missed (a ``reset``)."""
        self._release_all()
        self.last_seq = self._pushed = seq


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

    def subscribe(self, channel: str, listener: Wake) -> ChannelFeed:
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._feeds[channel] = ChannelFeed(
                self._store, channel, buffer_events=self._buffer, wait=self._wait
            )
            feed.start()
        feed.listeners.add(listener)
        feed._idle_since = None
        return feed

    def unsubscribe(self, feed: ChannelFeed, listener: Wake) -> None:
        feed.listeners.discard(listener)
        if feed.idle:
            feed._idle_since = asyncio.get_running_loop().time()
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.create_task(self._reap(), name="feed-reaper")

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._linger / 2)
            now = loop.time()
            for feed in list(self._feeds.values()):
                # Checked again for each feed, in the step that removes it: a stream may have
                # subscribed while an earlier feed was being stopped.
                if (
                    feed.idle
                    and feed._idle_since is not None
                    and now - feed._idle_since >= (self._linger)
                ):
                    del self._feeds[feed.channel]
                    await feed.stop()
            if not any(f.idle for f in self._feeds.values()):
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
