"""The DynamoDB store (``dynamodb://table?region=…&endpoint_url=…``).

One table; partition key ``channel`` (string), sort key ``seq`` (number). Items:

============================  ======  ====================================================
``channel``                   ``seq`` holds
============================  ======  ====================================================
``<channel>``                 n ≥ 1   event n: ``e`` epoch, ``y`` type, ``d`` data, ``c``
                                      created (s), ``x`` TTL, ``w`` write token, ``f`` final
``<channel>#idem#<key>``      0       an idempotency key: ``s`` seq, ``e`` epoch, ``c``, ``x``
``#value#<key>``              0       an expiring value: ``v``, ``u`` (expires at), ``x``
``#lease#<group>``            0       a lease group: ``h`` holder → expiry, ``ver``, ``x``
============================  ======  ====================================================

(``#`` never occurs in channel names, so the kinds cannot collide.)

**Gap-free sequences.** The log's head is its newest item (a strongly consistent query, newest
first, limit 1). An append writes items ``head+1…`` on the condition that they do not exist
yet, one conditional ``PutItem`` for a single event, one ``TransactWriteItems`` when there are
several items (a batch, or an idempotency key); on a conflict it reads the head again and
retries. Item ``n+1`` is only ever written by someone who saw item ``n``, so a reader can never
see ``n+1`` before ``n``. There is no counter item: a counter followed by a separate put would
let a reader see a gap when the put comes late or never. A closed channel is one whose head
is its final event, so closing and appending race on the same item and cannot interleave.
The epoch is stored on every event; a log with no items gets a new one.

In one process, one writer per channel writes the publishes one after the other, so the
process never races itself; while publishes keep coming it trusts the head it wrote last
instead of reading it again (a write that finds its item taken reads it). The one thing that
trust could miss, a table deleted and recreated between two writes of a burst, cannot happen
on AWS (deleting a table takes seconds, and writes fail meanwhile, which ends the trust).

**Retention.** Every event carries a TTL attribute (``x``): DynamoDB deletes expired items for
free, but late (up to days), so reads filter by the created time as well. Count retention is
applied on read only (events more than ``retention_events`` behind the head are never
returned); their storage goes with the TTL, which costs less than deleting each event (a
delete is a write). Because created times grow with the sequence, the expired events are a
prefix of the log; its end is found by a binary search over single-item queries and cached
per process. TTL deletion follows no order, so once every event of a channel has expired
the newest one may already be gone: the next append then starts a new epoch (continuing the
numbering), and a reader still holding a cursor into the expired log is told so with
``reset``. The final event of a closed channel lingers for ``SSE_LOG_LINGER_SECONDS`` more,
so a closed channel stays closed.

**Live reads** poll: while events flow every ``SSE_DYNAMODB_POLL_MIN_SECONDS``, backing off
to ``SSE_DYNAMODB_POLL_MAX_SECONDS`` while the channel is idle, at most one poll per interval
per channel however many calls wait (the fan-out makes that one caller per live channel per
process). A poll is one query from the reader's own last event (inclusive): that item proves
the log is still the same one, and anything after it is new.

**Failures.** botocore retries throttling, 5xx answers and lost connections itself
(standard mode, 4 attempts in all, backing off with jitter: up to 1, 2, 4 s after a throttle,
25, 50, 100 ms after an error). A retried write may have landed the first time (only its answer
was lost): every event item carries its write's token (``w``), so a write that finds its item
taken looks whether the item is its own before it counts as a conflict. (DynamoDB also makes a
transaction idempotent by its request token, but only for 10 minutes and not on emulators.)
DynamoDB throttles a transaction by cancelling it (``TransactionCanceledException``, reason
``ThrottlingError``), which botocore does not retry: the store retries it on the same schedule.
Anything that still fails is :class:`StoreUnavailable`, having written nothing or all.

**Threads.** boto3 blocks; every call runs in a bounded thread pool (``SSE_DYNAMODB_THREADS``,
with as many pooled HTTP connections), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import re
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ChannelClosed, PayloadTooLarge, StoreUnavailable
from ..events import NewEvent, StoredEvent
from ..settings import Settings
from .base import Appended, ChannelState, EventStore, ReadResult, new_epoch
from .writers import ChannelWriters

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

__all__ = ["DynamoDBStore", "create_table", "is_table_name", "table_problems"]

R = TypeVar("R")
Item = dict[str, "AttributeValueTypeDef"]

# DynamoDB's own limits on one transaction.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4_000_000
_ITEM_OVERHEAD = 100  # attribute names, keys, numbers: a generous bound per item
_MAX_ATTEMPTS = 100  # conflicts under contention; each one means another publisher progressed
# Throttled transactions: attempts and backoff, as botocore does for a throttled call (standard
# mode): the n-th retry waits a random part of min(2 ** (n - 1), 20) seconds.
_THROTTLED_ATTEMPTS = 4
_THROTTLED_BACKOFF_MAX = 20.0
_THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
_CACHE_CHANNELS = 10_000
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


class _Throttled(StoreUnavailable):
    """DynamoDB cancelled a transaction for lack of capacity: nothing of it was written."""


class _Conflict(Exception):
    """A conditional write found the item already there: someone else wrote first.

    ``item`` is the item found, when DynamoDB returned it.
    """

    def __init__(self, item: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__("conditional write conflict")
        self.item = item


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    epoch: str
    type: str
    data: str
    created: float
    final: bool
    token: str

    @classmethod
    def of(cls, item: Mapping[str, Mapping[str, Any]]) -> _Event:
        return cls(
            seq=int(item["seq"]["N"]),
            epoch=item["e"]["S"],
            type=item["y"]["S"],
            data=item["d"]["S"],
            created=float(item["c"]["N"]),
            final="f" in item,
            token=item["w"]["S"] if "w" in item else "",
        )

    def stored(self, channel: str) -> StoredEvent:
        return StoredEvent(channel, self.seq, self.type, self.data, self.created)


@dataclass(frozen=True, slots=True)
class _First:
    """The first retained event of a log as last found: ``seq`` and its created time."""

    epoch: str
    seq: int
    created: float


@dataclass(frozen=True, slots=True, eq=False)
class _Pending:
    """A request waiting for its channel's writer."""

    events: Sequence[NewEvent]
    closing: bool
    done: asyncio.Future[list[Appended]]


def _transaction_items(events: Sequence[NewEvent]) -> int:
    return len(events) + len({e.idempotency_key for e in events if e.idempotency_key})


def _transaction_bytes(events: Sequence[NewEvent]) -> int:
    return sum(
        len(e.data.encode()) + len(e.type) + 2 * len(e.idempotency_key or "") + _ITEM_OVERHEAD
        for e in events
    )


@dataclass(frozen=True, slots=True)
class _Pace:
    """How often a channel is polled (``interval``), when it was last, and what it showed."""

    interval: float
    last: float
    state: ChannelState
    stale: bool = False  # this store appended since


@dataclass(frozen=True, slots=True)
class _Head:
    """The newest event of a log as a writer last wrote or read it."""

    seq: int
    epoch: str
    created: float
    final: bool


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _time(value: float) -> AttributeValueTypeDef:
    return {"N": f"{value:.3f}"}


def _key(partition: str, seq: int = 0) -> Item:
    return {"channel": _s(partition), "seq": _n(seq)}


def _idempotency_partition(channel: str, key: str) -> str:
    return f"{channel}#idem#{key}"


class DynamoDBStore(EventStore):
    """Event logs in one DynamoDB table; see the module docstring for the item layout."""

    scheme = "dynamodb"

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        retention_events: int = 10_000,
        retention_seconds: float = 86_400,
        linger_seconds: float = 7 * 86_400,
        poll_min: float = 0.1,
        poll_max: float = 2.0,
        threads: int = 16,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self._db: DynamoDBClient = _client(region, endpoint_url, threads=threads, timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dynamodb")
        self._closed = False
        self._retention_events = retention_events
        self._retention = retention_seconds
        self._linger = linger_seconds
        self._poll_min = poll_min
        self._poll_max = max(poll_min, poll_max)
        self._clock = clock
        # Per channel, bounded: where retention begins (saves the search), and when and how
        # fast to poll (fast while events flow, backing off while idle).
        self._firsts: OrderedDict[str, _First] = OrderedDict()
        self._paces: OrderedDict[str, _Pace] = OrderedDict()
        # Wake-ups for readers waiting on a channel this store appends to, kept only while
        # someone waits (weakly held).
        self._signals: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        # Requests waiting to be appended, and the task writing them, per channel.
        self._writers = ChannelWriters[_Pending]("dynamodb", self._drain)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> DynamoDBStore:
        """``dynamodb://<table>?region=<region>&endpoint_url=<url>`` (both optional: boto3's
        usual configuration applies; ``endpoint_url`` points at moto or another emulator)."""
        table, options = parse_url(url)
        return cls(
            table,
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
            retention_events=settings.retention_events,
            retention_seconds=settings.retention_seconds,
            linger_seconds=settings.log_linger_seconds,
            poll_min=settings.dynamodb_poll_min_seconds,
            poll_max=settings.dynamodb_poll_max_seconds,
            threads=settings.dynamodb_threads,
            timeout=settings.dynamodb_timeout_seconds,
        )

    async def _call(self, call: Callable[[], R]) -> R:
        """Run one boto3 call in the thread pool; conflicts raise :class:`_Conflict`, anything
        else that fails is :class:`StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable("dynamodb: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, call)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise _Conflict(exc.response.get("Item")) from None  # type: ignore[arg-type]
            if code == "TransactionCanceledException":
                reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
                if reasons & {"ConditionalCheckFailed", "TransactionConflict"}:
                    raise _Conflict from None
                if reasons & _THROTTLING_REASONS:
                    raise _Throttled(f"dynamodb: throttled: {error.get('Message', '')}") from exc
            raise StoreUnavailable(f"dynamodb: {code}: {error.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"dynamodb: {exc}") from exc

    # -- reading items ---------------------------------------------------------------------

    async def _query(
        self, channel: str, *, start: int, limit: int, newest_first: bool = False
    ) -> tuple[list[_Event], bool]:
        """Events with ``seq >= start`` (strongly consistent), and whether more may follow."""
        page = await self._call(
            lambda: self._db.query(
                TableName=self.table,
                KeyConditionExpression="#c = :c AND #s >= :s",
                ExpressionAttributeNames={"#c": "channel", "#s": "seq"},
                ExpressionAttributeValues={":c": _s(channel), ":s": _n(start)},
                ScanIndexForward=not newest_first,
                Limit=limit,
                ConsistentRead=True,
            )
        )
        events = [_Event.of(item) for item in page["Items"]]
        return events, "LastEvaluatedKey" in page

    async def _head(self, channel: str) -> _Event | None:
        events, _ = await self._query(channel, start=1, limit=1, newest_first=True)
        return events[0] if events else None

    async def _at_or_after(self, channel: str, seq: int) -> _Event | None:
        events, _ = await self._query(channel, start=seq, limit=1)
        return events[0] if events else None

    async def _state_of(self, channel: str, head: _Event | None, horizon: float) -> ChannelState:
        if head is None:
            return ChannelState.empty()
        closed = head.seq if head.final else None
        if head.created < horizon:
            return ChannelState(head.epoch, head.seq + 1, head.seq, closed)
        first = await self._first_retained(channel, head, horizon)
        return ChannelState(head.epoch, first, head.seq, closed)

    async def _first_retained(self, channel: str, head: _Event, horizon: float) -> int:
        """The first event within both retentions, given a head that is within them."""
        floor = max(1, head.seq - self._retention_events + 1)
        start = floor
        known = self._firsts.get(channel)
        if known is not None and known.epoch == head.epoch and known.seq <= head.seq:
            # Nothing before a first retained event comes back, so it stays first until it
            # expires itself: usually no call at all.
            if known.created >= horizon:
                return max(floor, known.seq)
            start = max(floor, known.seq)
        found = head
        oldest = await self._at_or_after(channel, start) if start < head.seq else None
        if oldest is not None and oldest.seq < head.seq:
            if oldest.created >= horizon:
                found = oldest
            else:
                # Expired events are a prefix: binary search for its end. ``dead`` is an
                # expired event; ``found`` is the first alive one at or after ``alive``.
                dead, alive = oldest.seq, head.seq
                while alive - dead > 1:
                    mid = (dead + alive) // 2
                    probe = await self._at_or_after(channel, mid)
                    if probe is None or probe.seq >= alive:
                        alive = mid  # nothing in [mid, alive): TTL already deleted it
                    elif probe.created >= horizon:
                        alive, found = mid, probe
                    else:
                        dead = probe.seq
        self._remember(self._firsts, channel, _First(head.epoch, found.seq, found.created))
        return max(floor, found.seq)

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], channel: str, value: object) -> None:
        cache[channel] = value
        cache.move_to_end(channel)
        if len(cache) > _CACHE_CHANNELS:
            cache.popitem(last=False)

    async def _read_now(self, channel: str, after: int, limit: int) -> ReadResult:
        horizon = self._clock() - self._retention
        # From the reader's own last event, inclusive: when nothing is new, that one item is
        # the head and proves the log is the one the reader followed (one call per poll).
        page, more = await self._query(channel, start=max(after, 1), limit=limit + 1)
        head = page[-1] if page and not more else await self._head(channel)
        state = await self._state_of(channel, head, horizon)
        if head is None:
            return ReadResult([], state)
        start = max(after + 1, state.first_seq)
        if start == after + 1:
            events = [e for e in page if e.seq >= start]
        else:  # the reader is behind the retention: read from the first retained event
            events, _ = await self._query(channel, start=start, limit=limit)
        return ReadResult([e.stored(channel) for e in events[:limit]], state)

    async def read(
        self, channel: str, after: int, *, limit: int, wait: float = 0.0, epoch: str = ""
    ) -> ReadResult:
        if wait <= 0:
            return await self._read_now(channel, after, limit)
        deadline = self._monotonic() + wait
        while True:
            # One poll per interval per channel, across calls: a live reader that has all the
            # last poll saw asks again one interval later, not at once (an immediate query
            # would find what the next poll finds, for one more read unit). An append through
            # this store sets the fast pace and marks what the last poll saw as stale.
            now = self._monotonic()
            pace = self._paces.get(channel)
            if pace is not None and after >= pace.state.last_seq:
                if pace.state.closed or (epoch and pace.state.epoch != epoch):
                    return ReadResult([], pace.state)  # nothing more will come to this reader
                due = pace.last + pace.interval
                if due > now:
                    if pace.stale:
                        due = min(due, deadline)  # look before the wait ends, at the latest
                    elif due >= deadline:
                        if not await self._nap(channel, deadline - now):
                            return ReadResult([], pace.state)  # nothing new since last poll
                        continue
                    await self._nap(channel, due - now)
                    continue
            result = await self._read_now(channel, after, limit)
            interval = self._poll_min if pace is None else pace.interval
            interval = self._poll_min if result.events else min(interval * 2, self._poll_max)
            self._remember(self._paces, channel, _Pace(interval, self._monotonic(), result.state))
            if result.events or result.state.closed or (epoch and result.state.epoch != epoch):
                return result
            if self._monotonic() >= deadline:
                return result

    @staticmethod
    def _monotonic() -> float:
        """The clock of polls and waits: the event loop's (the tests' is virtual)."""
        return asyncio.get_running_loop().time()

    async def _nap(self, channel: str, seconds: float) -> bool:
        """Sleep ``seconds``, or less if this store appends to ``channel`` (then true)."""
        signal = self._signals.get(channel)
        if signal is None:
            signal = self._signals[channel] = asyncio.Event()
        try:
            async with asyncio.timeout(seconds):
                await signal.wait()
        except TimeoutError:
            return False
        return True

    def _appended(self, channel: str) -> None:
        pace = self._paces.get(channel)
        if pace is not None:
            self._paces[channel] = _Pace(self._poll_min, pace.last, pace.state, stale=True)
        signal = self._signals.pop(channel, None)
        if signal is not None:
            signal.set()

    async def state(self, channel: str) -> ChannelState:
        horizon = self._clock() - self._retention
        return await self._state_of(channel, await self._head(channel), horizon)

    # -- appending -------------------------------------------------------------------------

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        return await self._writers.submit(channel, self._write(events, closing=False))

    async def close(self, channel: str, final: NewEvent) -> Appended:
        (appended,) = await self._writers.submit(channel, self._write([final], closing=True))
        return appended

    def _write(self, events: Sequence[NewEvent], *, closing: bool) -> _Pending:
        """A request for the channel's writer, if DynamoDB can take it in one transaction."""
        if _transaction_items(events) > MAX_TRANSACTION_ITEMS:
            raise PayloadTooLarge(
                f"{len(events)} events take {_transaction_items(events)} items (an event with"
                f" an idempotency key takes two); DynamoDB writes at most"
                f" {MAX_TRANSACTION_ITEMS} in one transaction"
            )
        if _transaction_bytes(events) > MAX_TRANSACTION_BYTES:
            raise PayloadTooLarge(
                f"the events take about {_transaction_bytes(events)} bytes; DynamoDB writes at"
                f" most {MAX_TRANSACTION_BYTES} in one transaction"
            )
        return _Pending(events, closing, asyncio.get_running_loop().create_future())

    async def _drain(self, channel: str, queue: list[_Pending]) -> None:
        """Write a channel's queued requests one after the other.

        One writer per channel per process, so the process's own publishers never race each
        other for the next sequence (every lost race is a failed conditional write, which
        DynamoDB bills like a write, plus a read of the new head). While requests keep
        coming the writer knows the head it wrote last and skips reading it; a write that
        finds its item taken (another process wrote) reads the head again. Costs 1 write
        (and under a steady flow no read) per single-event publish; bounds one process to
        about one write round trip per event on a channel.
        """
        head: _Head | None = None
        pending: _Pending | None = None
        try:
            while queue:
                pending = queue.pop(0)
                try:
                    results, head = await self._append(channel, pending, head)
                except Exception as exc:
                    head = None
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                else:
                    self._appended(channel)
                    if not pending.done.done():
                        pending.done.set_result(results)
        except asyncio.CancelledError:
            if pending is not None and not pending.done.done():
                pending.done.set_exception(StoreUnavailable("dynamodb: the store closed"))
            raise

    async def _append(
        self, channel: str, pending: _Pending, known_head: _Head | None
    ) -> tuple[list[Appended], _Head | None]:
        """Append a request's events after the log's head, all or nothing, retrying when
        another process got there first; its results, and the head after it."""
        events = pending.events
        keys = list(dict.fromkeys(e.idempotency_key for e in events if e.idempotency_key))
        for attempt in range(_MAX_ATTEMPTS):
            now = self._clock()
            horizon = now - self._retention
            head = known_head if known_head is not None else await self._read_head(channel)
            known_head = None  # trusted once: after a conflict, read it again
            if head is not None and head.final:
                raise ChannelClosed(f"channel {channel!r} is closed")
            if head is not None and head.created >= horizon:
                epoch, last, created = head.epoch, head.seq, max(now, head.created)
            else:
                # No log, or every event expired (and TTL may have deleted the newest ones
                # already, in any order): a new epoch, so no old cursor can be mistaken.
                epoch, last, created = new_epoch(), head.seq if head else 0, now
            known = await self._known_keys(channel, keys, epoch, horizon) if keys else {}
            results: list[Appended] = []
            fresh: list[tuple[int, NewEvent]] = []
            for event in events:
                key = event.idempotency_key
                if key is not None and key in known:
                    results.append(Appended(known[key], epoch, duplicate=True))
                    continue
                last += 1
                if key is not None:
                    known[key] = last
                fresh.append((last, event))
                results.append(Appended(last, epoch))
            if not fresh:
                return results, head
            written = _Head(last, epoch, created, pending.closing)
            token = secrets.token_urlsafe(9)
            try:
                await self._put_patiently(
                    channel, epoch, fresh, created, token, closing=pending.closing
                )
                return results, written
            except _Conflict as conflict:
                # It may be this very write, landed on an attempt whose answer was lost and that
                # botocore sent again. A failed put returns the item in its way; a transaction
                # does not, so its first item is read (all or none of it was written).
                found = conflict.item
                if found is None:
                    found = await self._item(channel, fresh[0][0])
                if (found or {}).get("w", {}).get("S") == token:
                    return results, written
            # Another process appended first: read the new head and try again, a little
            # later each time, so that contending processes spread out.
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
        raise StoreUnavailable(f"channel {channel!r} is too contended to append to")

    async def _put_patiently(
        self,
        channel: str,
        epoch: str,
        fresh: list[tuple[int, NewEvent]],
        created: float,
        token: str,
        *,
        closing: bool,
    ) -> None:
        """:meth:`_put`, sent again after a backoff while DynamoDB cancels it for throttling.

        Again the very same write (items, token): an earlier attempt of it may have landed with
        its answer lost (botocore's retry was then the one throttled), and only the same token
        lets the next attempt recognise its own items (a new one would append them twice)."""
        for throttled in range(1, _THROTTLED_ATTEMPTS + 1):
            try:
                await self._put(channel, epoch, fresh, created, token, closing=closing)
                return
            except _Throttled:
                if throttled == _THROTTLED_ATTEMPTS:
                    raise
                ceiling = min(2.0 ** (throttled - 1), _THROTTLED_BACKOFF_MAX)
                await asyncio.sleep(random.uniform(0, ceiling))

    async def _item(self, channel: str, seq: int) -> Mapping[str, Mapping[str, Any]] | None:
        answer = await self._call(
            lambda: self._db.get_item(
                TableName=self.table, Key=_key(channel, seq), ConsistentRead=True
            )
        )
        return answer.get("Item")

    async def _read_head(self, channel: str) -> _Head | None:
        event = await self._head(channel)
        if event is None:
            return None
        return _Head(event.seq, event.epoch, event.created, event.final)

    async def _known_keys(
        self, channel: str, keys: list[str], epoch: str, horizon: float
    ) -> dict[str, int]:
        """The idempotency keys this log has seen within retention, with their sequences."""
        wanted = [_key(_idempotency_partition(channel, k)) for k in keys]
        found: dict[str, int] = {}
        prefix = len(_idempotency_partition(channel, ""))
        while wanted:
            batch, wanted = wanted[:100], wanted[100:]
            request: Mapping[str, Any] = {
                self.table: {"Keys": batch, "ConsistentRead": True},
            }
            while request:
                answer = await self._call(
                    functools.partial(self._db.batch_get_item, RequestItems=request)
                )
                for item in answer["Responses"].get(self.table, []):
                    if item["e"].get("S") == epoch and float(item["c"].get("N", "0")) >= horizon:
                        found[item["channel"].get("S", "")[prefix:]] = int(item["s"].get("N", "0"))
                request = answer.get("UnprocessedKeys") or {}
        return found

    def _event_item(
        self, channel: str, epoch: str, seq: int, event: NewEvent, created: float, token: str
    ) -> Item:
        item: Item = {
            **_key(channel, seq),
            "e": _s(epoch),
            "y": _s(event.type),
            "d": _s(event.data),
            "c": _time(created),
            "w": _s(token),
            "x": _n(math.ceil(created + self._retention)),
        }
        return item

    async def _put(
        self,
        channel: str,
        epoch: str,
        fresh: list[tuple[int, NewEvent]],
        created: float,
        token: str,
        *,
        closing: bool,
    ) -> None:
        items = [self._event_item(channel, epoch, s, e, created, token) for s, e in fresh]
        if closing:
            items[-1]["f"] = {"BOOL": True}
            items[-1]["x"] = _n(math.ceil(created + self._retention + self._linger))
        new_item = "attribute_not_exists(#s)"
        names = {"#s": "seq"}
        keyed = [(s, e.idempotency_key) for s, e in fresh if e.idempotency_key is not None]
        if len(items) == 1 and not keyed:
            (item,) = items
            await self._call(
                lambda: self._db.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression=new_item,
                    ExpressionAttributeNames=names,
                    # A failed write returns the item in the way (free): is it this write's?
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            )
            return
        actions: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": item,
                    "ConditionExpression": new_item,
                    "ExpressionAttributeNames": names,
                }
            }
            for item in items
        ]
        for seq, key in keyed:
            record: Item = {
                **_key(_idempotency_partition(channel, key)),
                "s": _n(seq),
                "e": _s(epoch),
                "c": _time(created),
                "x": _n(math.ceil(created + self._retention)),
            }
            # A key of an expired event, or of an older log, no longer counts.
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": record,
                        "ConditionExpression": (
                            "attribute_not_exists(#s) OR #c < :horizon OR #e <> :epoch"
                        ),
                        "ExpressionAttributeNames": {"#s": "seq", "#c": "c", "#e": "e"},
                        "ExpressionAttributeValues": {
                            ":horizon": _time(created - self._retention),
                            ":epoch": _s(epoch),
                        },
                    }
                }
            )
        await self._call(
            lambda: self._db.transact_write_items(TransactItems=actions, ClientRequestToken=token)
        )

    async def forget_log(self, channel: str) -> None:
        """Delete a channel's events, as losing the table would (for tests and operators).

        A later append starts a new log with a new epoch; idempotency keys of the old log no
        longer count (they carry its epoch).
        """
        while True:
            events, _ = await self._query(channel, start=1, limit=25)
            if not events:
                break
            deletes: Any = [{"DeleteRequest": {"Key": _key(channel, e.seq)}} for e in events]
            request: Mapping[str, Any] = {self.table: deletes}
            while request:
                answer = await self._call(
                    functools.partial(self._db.batch_write_item, RequestItems=request)
                )
                request = answer.get("UnprocessedItems") or {}
        self._firsts.pop(channel, None)

    # -- small expiring values -------------------------------------------------------------

    async def _get(self, partition: str) -> Mapping[str, Mapping[str, Any]] | None:
        answer = await self._call(
            lambda: self._db.get_item(
                TableName=self.table, Key=_key(partition), ConsistentRead=True
            )
        )
        return answer.get("Item")

    def _live(self, item: Mapping[str, Mapping[str, Any]] | None) -> bool:
        return item is not None and ("u" not in item or float(item["u"]["N"]) > self._clock())

    async def get_value(self, key: str) -> str | None:
        item = await self._get(f"#value#{key}")
        if item is None or not self._live(item):
            return None
        value = item["v"]
        return str(value["S"] if "S" in value else value["N"])

    def _expiry(self, ttl: float | None) -> Item:
        if ttl is None:
            return {}
        until = self._clock() + ttl
        return {"u": _time(until), "x": _n(math.ceil(until))}

    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        item: Item = {**_key(f"#value#{key}"), "v": _s(value), **self._expiry(ttl)}
        if not only_if_absent:
            await self._call(lambda: self._db.put_item(TableName=self.table, Item=item))
            return True
        try:
            await self._call(
                lambda: self._db.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#s) OR #u <= :now",
                    ExpressionAttributeNames={"#s": "seq", "#u": "u"},
                    ExpressionAttributeValues={":now": _time(self._clock())},
                )
            )
        except _Conflict:
            return False
        return True

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        partition = f"#value#{key}"
        while True:
            now = _time(self._clock())
            add = functools.partial(
                self._db.update_item,
                TableName=self.table,
                Key=_key(partition),
                UpdateExpression="SET #v = #v + :a",
                ConditionExpression="attribute_exists(#v) AND "
                "(attribute_not_exists(#u) OR #u > :now)",
                ExpressionAttributeNames={"#v": "v", "#u": "u"},
                ExpressionAttributeValues={":a": _n(amount), ":now": now},
                ReturnValues="UPDATED_NEW",
            )
            try:
                return int((await self._call(add))["Attributes"]["v"]["N"])
            except _Conflict:
                pass  # absent or expired: create it (unless someone else just did)
            create = functools.partial(
                self._db.put_item,
                TableName=self.table,
                Item={**_key(partition), "v": _n(amount), **self._expiry(ttl)},
                ConditionExpression="attribute_not_exists(#s) OR #u <= :now",
                ExpressionAttributeNames={"#s": "seq", "#u": "u"},
                ExpressionAttributeValues={":now": now},
            )
            try:
                await self._call(create)
                return amount
            except _Conflict:
                continue

    async def delete_value(self, key: str) -> None:
        await self._call(
            lambda: self._db.delete_item(TableName=self.table, Key=_key(f"#value#{key}"))
        )

    async def acquire_lease(self, group: str, holder: str, *, limit: int, ttl: float) -> bool:
        partition = f"#lease#{group}"
        while True:
            item = await self._get(partition)
            now = self._clock()
            version = int(item["ver"]["N"]) if item is not None else 0
            held = item["h"]["M"] if item is not None else {}
            # Leases of instances that died without releasing them stop counting here.
            live = {h: float(v["N"]) for h, v in held.items() if float(v["N"]) > now}
            if holder not in live and len(live) >= limit:
                return False
            live[holder] = now + ttl
            write = functools.partial(
                self._db.put_item,
                TableName=self.table,
                Item={
                    **_key(partition),
                    "h": {"M": {h: _time(until) for h, until in live.items()}},
                    "ver": _n(version + 1),
                    "x": _n(math.ceil(max(live.values())) + 1),
                },
                ConditionExpression="attribute_not_exists(#s) OR #ver = :ver",
                ExpressionAttributeNames={"#s": "seq", "#ver": "ver"},
                ExpressionAttributeValues={":ver": _n(version)},
            )
            try:
                await self._call(write)
                return True
            except _Conflict:
                continue  # another instance changed the group: look again

    async def release_lease(self, group: str, holder: str) -> None:
        with contextlib.suppress(_Conflict):  # not held (released, or expired and dropped)
            await self._call(
                lambda: self._db.update_item(
                    TableName=self.table,
                    Key=_key(f"#lease#{group}"),
                    # The version moves too, so a concurrent acquire that read the old holders
                    # cannot write this lease back.
                    UpdateExpression="REMOVE #h.#holder SET #ver = #ver + :one",
                    ConditionExpression="attribute_exists(#h.#holder)",
                    ExpressionAttributeNames={"#h": "h", "#holder": holder, "#ver": "ver"},
                    ExpressionAttributeValues={":one": _n(1)},
                )
            )

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> None:
        # One eventually consistent read of an item that never exists: the cheapest call
        # that proves the table answers (half a read unit).
        await self._call(lambda: self._db.get_item(TableName=self.table, Key=_key("#ping")))

    async def aclose(self) -> None:
        self._closed = True
        # A writer's call is bounded by the client's timeouts (and botocore's retries).
        await self._writers.aclose(grace=10.0)
        # Waiting for in-flight calls must not block the event loop; they are bounded by the
        # client's timeouts.
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        self._db.close()


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """The table and options of ``dynamodb://<table>?region=…&endpoint_url=…``."""
    parts = urlsplit(url)
    if parts.scheme != "dynamodb":
        raise ValueError(f"not a DynamoDB URL: {url!r}")
    table = parts.netloc
    if not _TABLE_NAME.fullmatch(table) or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} does not name a table: dynamodb://<table>?region=…")
    options = dict(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
    unknown = set(options) - {"region", "endpoint_url"}
    if unknown:
        raise ValueError(f"unknown DynamoDB URL options {sorted(unknown)} in {url!r}")
    return table, options


def _client(
    region: str | None, endpoint_url: str | None, *, threads: int, timeout: float
) -> DynamoDBClient:
    config = Config(
        max_pool_connections=threads,
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "max_attempts": 3},
    )
    client: DynamoDBClient = boto3.session.Session().client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return client


def is_table_name(name: str) -> bool:
    """Whether DynamoDB accepts ``name`` as a table name (3–255 of ``A-Za-z0-9_.-``)."""
    return _TABLE_NAME.fullmatch(name) is not None


# The store's keys: (attribute, key type, attribute type).
_KEYS: tuple[tuple[str, Literal["HASH", "RANGE"], Literal["S", "N"]], ...] = (
    ("channel", "HASH", "S"),
    ("seq", "RANGE", "N"),
)
_TTL_ATTRIBUTE = "x"


def create_table(
    table: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeout: float = 60.0,
) -> bool:
    """Create the store's table (on-demand capacity, TTL on ``x``) and wait until it is active.

    For local use and tests (moto, DynamoDB Local); deployments create it from
    ``infra/dynamodb-table.yml``. Returns ``False`` when the table already existed (see
    :func:`table_problems` to check that it fits).
    """
    client = _client(region, endpoint_url, threads=1, timeout=timeout)
    try:
        try:
            client.create_table(
                TableName=table,
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": kind} for name, _, kind in _KEYS
                ],
                KeySchema=[{"AttributeName": name, "KeyType": key} for name, key, _ in _KEYS],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceInUseException":
                return False
            raise
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(timeout))}
        )
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": _TTL_ATTRIBUTE},
        )
        return True
    finally:
        client.close()


def table_problems(
    table: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """What keeps an existing table from being the store's, one sentence each (none: it fits).

    The keys must be ``channel`` (string, partition key) and ``seq`` (number, sort key), and
    TTL must be on ``x`` (without it expired events are never deleted and storage only grows).
    """
    client = _client(region, endpoint_url, threads=1, timeout=timeout)
    try:
        description = client.describe_table(TableName=table)["Table"]
        types = {
            a["AttributeName"]: a["AttributeType"]
            for a in description.get("AttributeDefinitions", [])
        }
        found = [
            (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
            for k in description.get("KeySchema", [])
        ]
        problems = []
        if sorted(found) != sorted(_KEYS):
            problems.append(f"its keys are {_show_keys(found)}, not {_show_keys(_KEYS)}")
        ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or (
            ttl.get("AttributeName") != _TTL_ATTRIBUTE
        ):
            problems.append(f"TTL is not enabled on the attribute {_TTL_ATTRIBUTE!r}")
        return problems
    finally:
        client.close()


def _show_keys(keys: Sequence[tuple[str, str, str]]) -> str:
    return ", ".join(f"{name} ({kind}, {key})" for name, key, kind in keys)
