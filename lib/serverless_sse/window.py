"""The stream window: one bounded, resumable SSE response over one or more channels.

A window opens with ``retry:`` and a comment, delivers every event after the reader's position
in each channel (catching up from the store, then live from the shared feed), sends a comment
when it has been quiet for a heartbeat interval, and ends:

- when its time is up, with ``timeout`` carrying the cursor to resume from;
- at once after the final event, when every channel it follows is closed;
- at once after an event its ``until`` test picks (a stream that waits for one outcome);
- with ``error`` when the store fails (the client resumes from its last cursor);
- silently when the client goes away.

Where the platform buffers whole responses (Lambda behind API Gateway, through Mangum), a window
is made a long-poll (:meth:`StreamWindow.buffer`): it answers as soon as it has events, or
after a short wait, and the client's reconnects with ``Last-Event-ID`` join the responses into
one stream.

A window may also write only some of a log's events (``select``: the cursor still moves past
the others), and end with fixed bytes of its own (``epilogue``, e.g. ``data: [DONE]``).

A reader never misses an event without being told: when its position is older than the oldest
retained event, or its log's epoch is gone, it gets ``reset`` with the lost range first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from starlette.types import Receive

from .cursor import Cursor, Position
from .errors import CursorError, SSEError
from .events import EventFormat, StoredEvent
from .fanout import ChannelFeed, FeedItem, FeedRegistry, Follower, Wake, WriteNow, client_gone
from .frames import HEARTBEAT, control_frame, event_body, opening, with_id
from .stores.base import ChannelState, EventStore

__all__ = [
    "Gap",
    "LogRead",
    "StreamPlan",
    "StreamWindow",
    "Synthetic",
    "Ticker",
    "jittered",
    "plan_stream",
    "read_after",
]

Write = Callable[[bytes], Awaitable[None]]

Synthetic = tuple[str, Any]
"""An event a stream makes itself rather than reads from a log: ``(type, payload)``."""

EventTest = Callable[[StoredEvent], bool]
"""A test of a stored event (which events a window writes, and after which one it ends)."""


class Ticker(Protocol):
    """Periodic synthetic events (state that is computed, not stored: fleet metrics).

    Called every ``interval`` seconds while the window runs; what it returns is written with
    the stream's current cursor as id, so resuming is unaffected.
    """

    interval: float

    @property
    def mark(self) -> tuple[str, Position] | None:
        """Where the reader stands in the ticker's own sequence, if it has one: ``(key,
        position)``, carried in every cursor the stream sends beside the channels' positions
        (``key`` is not a channel), so that a reconnect can continue the sequence instead of
        repeating or skipping a step. Read after every call."""
        ...

    async def __call__(self) -> Sequence[Synthetic]: ...


def jittered(seconds: float, *, jitter: float, limit: float) -> float:
    """A connection's window: ``seconds`` ± ``jitter`` (a fraction), never above ``limit``.

    Clients that connected together would otherwise all reconnect together, every window.
    """
    return min(limit, seconds * random.uniform(1 - jitter, 1 + jitter))


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Where a stream starts in each channel, decided before any byte is sent."""

    positions: dict[str, Position]
    states: dict[str, ChannelState]
    resumed: bool = False
    """The reader came back with a cursor (a reconnect)."""

    @property
    def finished(self) -> bool:
        """Every channel is closed and the reader already has its final event (answer 204)."""
        return all(_consumed(self.positions[c], s) for c, s in self.states.items())


def _consumed(position: Position, state: ChannelState) -> bool:
    return state.closed and position.epoch == state.epoch and position.seq >= state.last_seq


async def plan_stream(
    store: EventStore,
    channels: Sequence[str],
    *,
    cursor: str | None,
    from_start: bool = False,
    multiplexed: bool = False,
) -> StreamPlan:
    """Resolve the reader's starting positions.

    ``cursor`` (from ``Last-Event-ID`` or ``?last_event_id=``) wins over ``from_start``.
    Without either a stream starts at each channel's end: new events only. A channel a
    multiplexed cursor does not cover (it was added to the URL) starts at its end. A cursor that
    does not parse, that holds none of the stream's channels, or that is ahead of its channel's
    log, is refused with 400: it cannot have come from this stream.
    """
    parsed = Cursor.decode(cursor) if cursor else None
    if parsed is not None:
        if not multiplexed and parsed.position(channels[0]) is None:
            raise CursorError("the cursor belongs to another channel")
        if multiplexed and not parsed.covers_any(channels):
            raise CursorError("the cursor holds none of these channels")
    states = dict(zip(channels, await store.states(channels), strict=True))
    positions: dict[str, Position] = {}
    for channel, state in states.items():
        position = parsed.position(channel) if parsed is not None else None
        if position is None:
            start = state.first_seq - 1 if from_start and parsed is None else state.last_seq
            position = Position(state.epoch, start)
        elif position.epoch == state.epoch and position.seq > state.last_seq:
            raise CursorError(f"the cursor is ahead of channel {channel!r}")
        positions[channel] = position
    return StreamPlan(positions, states, resumed=parsed is not None)


@dataclass(frozen=True, slots=True)
class Gap:
    """Events a reader can no longer get: its ``reset`` payload."""

    reason: str  # "history_trimmed" | "epoch_changed"
    missed_from: int
    missed_to: int

    def payload(self) -> dict[str, Any]:
        return {"reason": self.reason, "missed_from": self.missed_from, "missed_to": self.missed_to}


@dataclass(frozen=True, slots=True)
class LogRead:
    """What :func:`read_after` found: events, the state, and the gap before them if any.

    ``start`` is the position the events follow: the reader's own, or after a gap the one
    just before the oldest event there is.
    """

    events: list[StoredEvent]
    state: ChannelState
    start: Position
    gap: Gap | None


async def read_after(store: EventStore, channel: str, position: Position, limit: int) -> LogRead:
    """Read a channel's events after ``position``, telling a gap instead of skipping it.

    The gap is ``epoch_changed`` when the position's log is gone (or went backwards) and
    ``history_trimmed`` when retention removed events the reader has not seen; reading then
    continues from the oldest event there is.
    """
    result = await store.read(channel, position.seq, limit=limit)
    state, events = result.state, result.events
    lost = bool(position.epoch) and state.epoch != position.epoch
    regressed = position.epoch == state.epoch and position.seq > state.last_seq
    reason = ""
    if lost or regressed:
        reason = "epoch_changed"
        if state.epoch:
            result = await store.read(channel, state.first_seq - 1, limit=limit)
            state, events = result.state, result.events
        else:
            events = []
    first = events[0].seq if events else state.first_seq
    if not reason and position.seq + 1 < first:
        reason = "history_trimmed"
    if not reason:
        return LogRead(events, state, position, None)
    gap = Gap(reason, position.seq + 1, first - 1)
    return LogRead(events, state, Position(state.epoch, first - 1), gap)


_ASK_CLIENT = 1.0
"""Seconds a busy stream goes without asking whether its client is still there."""


class StreamWindow:
    """One response's worth of a stream. Create it from a :class:`StreamPlan`, then ``run`` it."""

    # A window lives as long as its response, and a process holds thousands: no __dict__.
    __slots__ = (
        "_budget", "_disconnected", "_done", "_epilogue", "_feeds", "_filtered", "_fmt",
        "_full", "_heartbeat", "_lag_allowance", "_lagging", "_long_poll", "_page", "_prelude",
        "_reached_until", "_retry_ms", "_select", "_shared_frames", "_shutting_down", "_single",
        "_spent", "_states", "_ticker", "_ticker_key", "_timeout_payload", "_until", "_wake",
        "channels", "delivered", "duration", "ended_by", "positions", "resets", "store",
    )  # fmt: skip

    def __init__(
        self,
        *,
        store: EventStore,
        feeds: FeedRegistry,
        plan: StreamPlan,
        fmt: EventFormat,
        duration: float,
        heartbeat: float,
        retry_ms: int,
        max_lag: int = 20_000,
        page: int = 1000,
        prelude: Sequence[Synthetic] = (),
        ticker: Ticker | None = None,
        select: EventTest | None = None,
        until: EventTest | None = None,
        epilogue: bytes = b"",
        timeout_payload: Mapping[str, Any] | None = None,
    ) -> None:
        """``prelude``: events written first; ``ticker``: periodic computed events;
        ``select``: only log events it accepts are written (the cursor moves past the others);
        ``until``: the window ends right after writing an event it accepts; ``epilogue``:
        bytes written last whenever the window ends by itself (not when the client went away);
        ``timeout_payload``: fields added to the ``timeout`` event."""
        self.store = store
        self.channels = list(plan.positions)
        self.positions = dict(plan.positions)
        self._states = dict(plan.states)
        self._feeds = feeds
        self._fmt: EventFormat = fmt
        self.duration = duration
        self._heartbeat = heartbeat
        self._retry_ms = retry_ms
        self._page = page
        self._single = len(self.channels) == 1
        self._ticker_key = ""
        if ticker is not None and ticker.mark is not None:
            self._ticker_key, self.positions[ticker.mark[0]] = ticker.mark
        # A single-channel stream can send the feed's shared frames only while its ids hold
        # that channel's position alone.
        self._shared_frames = self._single and not self._ticker_key
        self._prelude = tuple(prelude)
        self._ticker = ticker
        self._select = select
        self._until = until
        self._filtered = select is not None or until is not None
        self._epilogue = epilogue
        self._timeout_payload: Mapping[str, Any] = dict(timeout_payload) if timeout_payload else {}
        self._reached_until = False
        self._done: frozenset[str] = frozenset()  # channels finished (rare: a set when needed)
        # A stream may fall behind by max_lag events beyond the backlog it started with: a
        # reconnect with a large backlog still gets all of it; one that cannot keep up does not
        # hold this instance forever (it resumes later, from its cursor).
        self._lag_allowance = {
            c: max_lag + max(0, s.last_seq - plan.positions[c].seq) for c, s in plan.states.items()
        }
        self._lagging = False
        # A buffered (long-poll) response: see buffer(). _budget is how many bytes of events it
        # may carry (None: a streaming response, unbounded); _full, that it reached them.
        self._long_poll = False
        self._budget: int | None = None
        self._spent = 0
        self._full = False
        self._wake = Wake()
        self._disconnected = False
        self._shutting_down = False
        self.delivered = 0
        """Events written so far (for metrics)."""
        self.resets: dict[str, int] = {}
        """Resets sent, by reason (for metrics)."""
        self.ended_by = ""
        """Why the window ended: timeout, complete, error, disconnect, shutdown, lagging,
        long_poll."""

    # -- control from outside --------------------------------------------------------------

    def disconnect(self) -> None:
        """The client went away: stop at once, write nothing more."""
        self._disconnected = True
        self.ended_by = self.ended_by or "disconnect"
        self._wake.set()

    def shutdown(self) -> None:
        """The server is stopping: end now with ``timeout`` so the client resumes elsewhere."""
        self._shutting_down = True
        self._wake.set()

    def cursor(self) -> str:
        """The cursor of everything delivered so far."""
        return Cursor.encode_positions(self.positions)

    def buffer(self, *, wait: float, retry_ms: int, max_bytes: int) -> None:
        """Make this window one long-poll response, for a platform that delivers a response
        only once it is complete (Lambda behind API Gateway, through Mangum). Call before
        :meth:`run`.

        The window then ends (with ``timeout`` and the cursor) as soon as it has written events
        (a reset, a ticker's events), or after ``wait`` seconds with nothing to write; a window
        that waits for one outcome (``until``) still waits for it, up to ``wait``. It sends no
        heartbeats (nobody would see them before the end), tells the client to reconnect after
        ``retry_ms``, and carries at most ``max_bytes`` of events (at least one, whatever its
        size), so that a long backlog comes in several responses instead of one too large for
        the platform."""
        self.duration = min(self.duration, wait)
        self._heartbeat = math.inf
        self._retry_ms = retry_ms
        self._long_poll = self._until is None
        self._budget = max_bytes

    @property
    def buffered(self) -> bool:
        """Whether this window is a long-poll response (see :meth:`buffer`)."""
        return self._budget is not None

    # -- the loop --------------------------------------------------------------------------

    async def run(
        self, write: Write, write_now: WriteNow | None = None, receive: Receive | None = None
    ) -> None:
        """Stream to ``write`` until the window ends. With ``write_now`` (a write that
        completes at once when the socket has room), a caught-up single-channel stream lets
        its channel's feed write new events for it while it sleeps (see
        :class:`~serverless_sse.fanout.Follower`). With ``receive`` (the ASGI request's), the
        window watches it whenever it sleeps, and ends as soon as the client goes away."""
        await self._run(write, self._follower(write_now), receive)
        if self._epilogue and not self._disconnected:
            await write(self._epilogue)

    def _follower(self, write_now: WriteNow | None) -> Follower | None:
        """A follower for this window, if the feed can write its events as they are: one
        channel, shared frames, every event written, no ticker, not a long-poll."""
        if write_now is None or not self._shared_frames or self._filtered:
            return None
        if self._ticker is not None or self._budget is not None:
            return None
        return Follower(write_now, self._fmt, self._wake, heartbeat=self._heartbeat)

    async def _run(self, write: Write, follower: Follower | None, receive: Receive | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.duration
        wake = self._wake
        opening_bytes = opening(self._retry_ms)
        if self._prelude:
            opening_bytes += b"".join(self._synthetic(self._prelude))
        await write(opening_bytes)
        last_write = loop.time()
        ticker = self._ticker
        next_tick = loop.time() + ticker.interval if ticker is not None else math.inf
        feeds = {c: self._feeds.subscribe(c, wake) for c in self.channels}
        asked = loop.time()
        try:
            while True:
                wake.clear()
                if receive is not None and loop.time() - asked >= _ASK_CLIENT:
                    # A stream that has not slept for a while (catching up, or woken again and
                    # again) asks whether its client is still there: sleeping, it would know.
                    asked = loop.time()
                    if await client_gone(receive):
                        self.disconnect()
                if self._disconnected:
                    self.ended_by = "disconnect"
                    return
                if self._shutting_down:
                    await self._end(write, "server_shutdown")
                    return
                frames: list[bytes] = []
                more = await self._collect(feeds, frames)
                if ticker is not None and loop.time() >= next_tick:
                    ticked = await ticker()
                    if self._ticker_key and ticker.mark is not None:
                        self.positions[self._ticker_key] = ticker.mark[1]
                    frames.extend(self._synthetic(ticked))
                    next_tick = max(next_tick + ticker.interval, loop.time())
                if frames:
                    await write(b"".join(frames))
                    last_write = loop.time()
                if self._reached_until or len(self._done) == len(self.channels):
                    self.ended_by = "complete"
                    return
                if self._full or (frames and self._long_poll):
                    await self._end(write, "long_poll")
                    return
                now = loop.time()
                if now >= deadline:
                    await self._end(write, "window_elapsed")
                    return
                if self._lagging:
                    await self._end(write, "too_far_behind")
                    return
                if more:
                    continue
                if now - last_write >= self._heartbeat:
                    await write(HEARTBEAT)
                    last_write = now
                    continue
                due = min(deadline, last_write + self._heartbeat, next_tick)
                feed = feeds[self.channels[0]]
                if follower is not None and feed.follow(follower, self.positions[feed.channel]):
                    follower.last_write = last_write
                    try:
                        # The feed writes the heartbeats too: only the window's end wakes it.
                        present = await wake.sleep_until(deadline, receive)
                    except BaseException:
                        feed.unfollow(follower)
                        if follower.pending is not None:  # nobody will take it back now
                            asyncio.ensure_future(follower.pending).cancel()
                        raise
                    feed.unfollow(follower)
                    last_write = max(last_write, await self._take_back(follower))
                else:
                    present = await wake.sleep_until(due, receive)
                asked = loop.time()
                if not present:
                    self.disconnect()
        except SSEError as exc:
            self.ended_by = "error"
            if not self._disconnected:
                payload = {"error": exc.code, "detail": exc.detail}
                with contextlib.suppress(Exception):
                    await write(control_frame("error", payload, self.cursor(), self._fmt))
        finally:
            for feed in feeds.values():
                self._feeds.unsubscribe(feed, wake)

    async def _take_back(self, follower: Follower) -> float:
        """Take over from the feed: what it wrote for this stream while it slept (finishing a
        write that had to wait), and when it last wrote."""
        if follower.pending is not None:
            pending, follower.pending = follower.pending, None
            await pending
        self.positions[self.channels[0]] = follower.position
        self.delivered += follower.delivered
        follower.delivered = 0
        return follower.last_write

    _ENDINGS: ClassVar[dict[str, str]] = {
        "window_elapsed": "timeout",
        "server_shutdown": "shutdown",
        "too_far_behind": "lagging",
        "long_poll": "long_poll",
    }

    async def _end(self, write: Write, reason: str) -> None:
        """End with ``timeout``: the client reconnects with the cursor it carries."""
        self.ended_by = self._ENDINGS[reason]
        payload: dict[str, Any] = {
            "reason": reason,
            "retry_ms": self._retry_ms,
            **self._timeout_payload,
        }
        await write(control_frame("timeout", payload, self.cursor(), self._fmt))

    def _synthetic(self, events: Sequence[Synthetic]) -> list[bytes]:
        if not events:
            return []
        cursor = self.cursor()
        return [control_frame(t, payload, cursor, self._fmt) for t, payload in events]

    async def _collect(self, feeds: dict[str, ChannelFeed], frames: list[bytes]) -> bool:
        """Gather every ready event of every channel into ``frames``; true if more may wait."""
        more = False
        for channel in self.channels:
            if self._full:
                break
            if channel in self._done or self._reached_until:
                continue
            feed = feeds[channel]
            items = feed.after(self.positions[channel])
            if items is not None:
                if items:
                    self._deliver_items(channel, items, frames)
                self._states[channel] = feed.state
            else:
                more |= await self._read_store(channel, feed, frames)
            if _consumed(self.positions[channel], self._states[channel]):
                self._done |= {channel}
        return more

    async def _read_store(self, channel: str, feed: ChannelFeed, frames: list[bytes]) -> bool:
        found = await read_after(self.store, channel, self.positions[channel], self._page)
        if found.gap is not None:
            self.positions[channel] = found.start
            payload = found.gap.payload()
            if not self._single:
                payload["channel"] = channel
            frames.append(control_frame("reset", payload, self.cursor(), self._fmt))
            self.resets[found.gap.reason] = self.resets.get(found.gap.reason, 0) + 1
        self._deliver_events(channel, found.state.epoch, found.events, frames)
        self._states[channel] = found.state
        head = found.state.last_seq
        if feed.epoch == found.state.epoch:
            head = max(head, feed.last_seq)
        if head - self.positions[channel].seq > self._lag_allowance[channel]:
            self._lagging = True
        return len(found.events) >= self._page

    def _deliver_items(self, channel: str, items: list[FeedItem], frames: list[bytes]) -> None:
        fmt = self._fmt
        if self._filtered:
            self._deliver_selected(channel, ((i.epoch, i.event, i) for i in items), frames)
            return
        if self._shared_frames:
            shared = [item.frame(channel, fmt) for item in items]
            count = self._fitting(shared)
            if count:
                frames.extend(shared[:count])
                last = items[count - 1]
                self.positions[channel] = Position(last.epoch, last.event.seq)
                self.delivered += count
            return
        positions = self.positions
        for item in items:
            before = positions[channel]
            positions[channel] = Position(item.epoch, item.event.seq)
            frame = with_id(Cursor.encode_positions(positions), item.body(fmt))
            if not self._fits(frame):
                positions[channel] = before
                return
            frames.append(frame)
            self.delivered += 1

    def _deliver_events(
        self, channel: str, epoch: str, events: list[StoredEvent], frames: list[bytes]
    ) -> None:
        fmt = self._fmt
        if self._filtered:
            self._deliver_selected(channel, ((epoch, e, None) for e in events), frames)
            return
        positions = self.positions
        for event in events:
            before = positions[channel]
            positions[channel] = Position(epoch, event.seq)
            body = event_body(event.type, event.data, fmt)
            frame = with_id(Cursor.encode_positions(positions), body)
            if not self._fits(frame):
                positions[channel] = before
                return
            frames.append(frame)
            self.delivered += 1

    def _deliver_selected(
        self,
        channel: str,
        events: Iterable[tuple[str, StoredEvent, FeedItem | None]],
        frames: list[bytes],
    ) -> None:
        """Write the events ``select`` accepts, and stop after the first ``until`` accepts.

        Bodies are made only for the events written (shared through the feed's item if the
        event came from one)."""
        select, until, fmt = self._select, self._until, self._fmt
        positions = self.positions
        for epoch, event, item in events:
            before = positions[channel]
            positions[channel] = Position(epoch, event.seq)
            if select is not None and not select(event):
                continue
            body = item.body(fmt) if item is not None else event_body(event.type, event.data, fmt)
            frame = with_id(Cursor.encode_positions(positions), body)
            if not self._fits(frame):
                positions[channel] = before
                return
            frames.append(frame)
            self.delivered += 1
            if until is not None and until(event):
                self._reached_until = True
                return

    # -- the byte budget of a buffered response ---------------------------------------------

    def _fits(self, frame: bytes) -> bool:
        """Whether ``frame`` fits what this response may still carry, counting it if so.

        Always true for a streaming response. A buffered one takes its first event whatever its
        size (every response makes progress), and after that only what fits its budget."""
        budget = self._budget
        if budget is None:
            return True
        if self._spent and self._spent + len(frame) > budget:
            self._full = True
            return False
        self._spent += len(frame)
        return True

    def _fitting(self, frames: list[bytes]) -> int:
        """How many of ``frames``, from the first, fit (see :meth:`_fits`)."""
        if self._budget is None:
            return len(frames)
        for count, frame in enumerate(frames):
            if not self._fits(frame):
                return count
        return len(frames)
