"""The embedded store: everything in this process's memory (``memory://``).

The default for a local run and for tests: no server, no persistence, one process. It keeps
the full contract (epochs, retention by count and age, idempotency, closing, expiring values),
so code that works here works on the durable backends. Retention is enforced when a log is
touched, so an idle channel costs nothing.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import ChannelClosed
from ..events import NewEvent, StoredEvent
from .base import Appended, ChannelState, EventStore, ReadResult, new_epoch

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Log:
    epoch: str
    events: deque[StoredEvent] = field(default_factory=deque)
    last_seq: int = 0
    closed_seq: int | None = None
    # idempotency key -> (seq, stored at); insertion-ordered, so the oldest are pruned first
    keys: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def state(self) -> ChannelState:
        first = self.events[0].seq if self.events else self.last_seq + 1
        return ChannelState(self.epoch, first, self.last_seq, self.closed_seq)


class MemoryStore(EventStore):
    scheme = "memory"

    def __init__(
        self,
        *,
        retention_events: int = 10_000,
        retention_seconds: float = 86_400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._logs: dict[str, _Log] = {}
        # Wake-ups for readers waiting on a channel, kept only while someone waits (weakly
        # held), and apart from the logs: waiting on a channel must not create its log.
        self._signals: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._values: dict[str, tuple[str, float | None]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._retention_events = retention_events
        self._retention_seconds = retention_seconds
        self._clock = clock

    # -- logs ------------------------------------------------------------------------------

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _Log(new_epoch())
        if log.closed_seq is not None:
            raise ChannelClosed(f"channel {channel!r} is closed")
        now = self._clock()
        self._trim(log, now)
        results: list[Appended] = []
        for event in events:
            if event.idempotency_key is not None:
                seen = log.keys.get(event.idempotency_key)
                if seen is not None:
                    results.append(Appended(seen[0], log.epoch, duplicate=True))
                    continue
            results.append(self._put(log, channel, event, now))
        self._trim(log, now)
        self._wake(channel)
        return results

    async def close(self, channel: str, final: NewEvent) -> Appended:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = _Log(new_epoch())
        if log.closed_seq is not None:
            raise ChannelClosed(f"channel {channel!r} is already closed")
        now = self._clock()
        appended = self._put(log, channel, final, now)
        log.closed_seq = appended.seq
        self._trim(log, now)
        self._wake(channel)
        return appended

    async def read(
        self, channel: str, after: int, *, limit: int, wait: float = 0.0, epoch: str = ""
    ) -> ReadResult:
        result = self._read_now(channel, after, limit)
        if result.events or wait <= 0 or result.state.closed or self._lost(result, epoch):
            return result
        try:
            async with asyncio.timeout(wait):
                while True:
                    await self._signal(channel).wait()
                    result = self._read_now(channel, after, limit)
                    if result.events or result.state.closed or self._lost(result, epoch):
                        return result
        except TimeoutError:
            return self._read_now(channel, after, limit)

    @staticmethod
    def _lost(result: ReadResult, epoch: str) -> bool:
        return bool(epoch) and result.state.epoch != epoch

    def _signal(self, channel: str) -> asyncio.Event:
        signal = self._signals.get(channel)
        if signal is None:
            signal = self._signals[channel] = asyncio.Event()
        return signal

    async def state(self, channel: str) -> ChannelState:
        log = self._logs.get(channel)
        if log is None:
            return ChannelState.empty()
        self._trim(log, self._clock())
        return log.state()

    def _read_now(self, channel: str, after: int, limit: int) -> ReadResult:
        log = self._logs.get(channel)
        if log is None:
            return ReadResult([], ChannelState.empty())
        self._trim(log, self._clock())
        events = log.events
        if not events or after >= log.last_seq:
            return ReadResult([], log.state())
        # Sequences are contiguous, so the first wanted event's index is arithmetic: O(limit).
        start = max(0, after + 1 - events[0].seq)
        stop = min(len(events), start + limit)
        if start == 0 and stop == len(events):
            picked = list(events)
        else:
            picked = [events[i] for i in range(start, stop)]
        return ReadResult(picked, log.state())

    def _put(self, log: _Log, channel: str, event: NewEvent, now: float) -> Appended:
        log.last_seq += 1
        log.events.append(StoredEvent(channel, log.last_seq, event.type, event.data, now))
        if event.idempotency_key is not None:
            log.keys[event.idempotency_key] = (log.last_seq, now)
        return Appended(log.last_seq, log.epoch)

    def _trim(self, log: _Log, now: float) -> None:
        events = log.events
        while len(events) > self._retention_events:
            events.popleft()
        horizon = now - self._retention_seconds
        while events and events[0].created_at < horizon:
            events.popleft()
        keys = log.keys
        while keys:
            oldest_key, (_, stored_at) = next(iter(keys.items()))
            if stored_at >= horizon and len(keys) <= self._retention_events:
                break
            del keys[oldest_key]

    def _wake(self, channel: str) -> None:
        # Waiters hold the current event; the next append gets a fresh one.
        signal = self._signals.pop(channel, None)
        if signal is not None:
            signal.set()

    def forget_log(self, channel: str) -> None:
        """Lose a channel's log, as a restarted store without persistence would (for tests)."""
        self._logs.pop(channel, None)
        self._wake(channel)

    # -- small expiring values -------------------------------------------------------------

    def _live_value(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= self._clock():
            del self._values[key]
            return None
        return value

    async def get_value(self, key: str) -> str | None:
        return self._live_value(key)

    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and self._live_value(key) is not None:
            return False
        self._values[key] = (value, None if ttl is None else self._clock() + ttl)
        return True

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        current = self._live_value(key)
        if current is None:
            total = amount
            expires = None if ttl is None else self._clock() + ttl
        else:
            total = int(current) + amount
            expires = self._values[key][1]
        self._values[key] = (str(total), expires)
        return total

    async def delete_value(self, key: str) -> None:
        self._values.pop(key, None)

    async def acquire_lease(self, group: str, holder: str, *, limit: int, ttl: float) -> bool:
        now = self._clock()
        leases = self._leases.setdefault(group, {})
        for expired in [h for h, until in leases.items() if until <= now]:
            del leases[expired]
        if holder not in leases and len(leases) >= limit:
            return False
        leases[holder] = now + ttl
        return True

    async def release_lease(self, group: str, holder: str) -> None:
        leases = self._leases.get(group)
        if leases is not None:
            leases.pop(holder, None)
            if not leases:
                del self._leases[group]

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> None:
        return None
