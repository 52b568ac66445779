"""The Redis store: one Redis Stream per channel (``redis://``, ``redis+cluster://``).

Layout, per channel, under one hash tag so that a channel's keys share one slot and every
command stays single-slot on Redis Cluster (channel names never contain braces)::

    sse:{<channel>}:meta   hash    epoch, base, last (seq), time (of the last event), closed
    sse:{<channel>}:log    stream  entry id <base>-<seq>: t (created, ms), y (type), d (data),
                                   k (idempotency key, if any)
    sse:{<channel>}:keys   hash    idempotency key -> seq, for the retained events

Appending is one Lua script (``lua/append.lua``): closed check, epoch creation, idempotency,
contiguous sequences and trimming by count and age happen atomically, and the script writes
nothing unless it can write everything. Reading is another (``lua/read.lua``, read-only): the
state and the events after a sequence in one consistent look, with a binary search for the
first event within the age retention, so an idle channel nobody trimmed still reads in
O(log n).

Live waits block in ``XREAD`` after the log's last entry id. The ``base`` part of the ids is
the log's creation time, so when a log is lost (``FLUSHDB``, a restart without persistence)
the recreated log's ids sort after the lost one's and the blocked read wakes up at its first
event; the caller then sees the new epoch. (If nothing is appended after the loss, live
readers notice within a minute: a waiting read looks at the state at least that often.)

Connections. Each waiting read holds a connection for its whole wait, and the fan-out keeps
one waiting read per live channel per process. So waits have their own bounded pool
(``SSE_REDIS_MAX_WAITS``), apart from the pool for commands (``SSE_REDIS_MAX_CONNECTIONS``):
a process with many live channels can never starve its publishes and catch-up reads of
connections. When every wait connection is busy, further waits poll every
``SSE_REDIS_POLL_SECONDS`` instead: one cheap script call per poll, in exchange for a bounded
number of sockets. A process opens at most the sum of both (per node, on a cluster).

Publishing is grouped: one writer per channel per process (:mod:`.writers`) sends the
channel's appends one script call at a time, each call taking every append that queued while
the last was running (``_drain``). A lone publish goes out at once; under load, many publishes
share one call. Each call wakes Redis once and costs one pass through the client library,
which (measured: about 110 µs of CPU per call here, most of it the round trip's syscalls) is
the bulk of a publish.
Merging changes nothing a publisher can see: the script is atomic, a publish's events stay
together and in order, a closed channel refuses every one of them, and an idempotency key
repeated within one call stores one event. A close ends a call, so that appends queued after it
are refused as they would be one by one.

Failures: every Redis error or lost connection surfaces as :class:`StoreUnavailable`. Commands
are not retried by the client library: a retried append whose first attempt did reach Redis
would store its events twice. A connection that went stale while idle is replaced when it is
taken from the pool, before anything is sent on it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ..errors import ChannelClosed, StoreUnavailable
from ..events import NewEvent, StoredEvent
from .base import Appended, ChannelState, EventStore, ReadResult, new_epoch
from .writers import ChannelWriters

__all__ = ["RedisStore"]

T = TypeVar("T")
Client = Redis | RedisCluster

_PREFIX = "sse"
_SEEN_CHANNELS = 10_000
_SEEN_FOR = 60.0  # seconds a waiting read may start from a state read earlier
# Everything that means "Redis did not do it": errors, lost connections, an unreachable cluster.
_FAILURES = (RedisError, RedisClusterException, OSError)
_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class _Lua:
    """A script of ``lua/``, run by its SHA1 (``EVALSHA``), loaded again when Redis lost it."""

    text: str
    sha: str


@functools.cache
def _lua(name: str) -> _Lua:
    text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()
    return _Lua(text, hashlib.sha1(text.encode()).hexdigest())


def _meta_key(channel: str) -> str:
    return f"{_PREFIX}:{{{channel}}}:meta"


def _log_key(channel: str) -> str:
    return f"{_PREFIX}:{{{channel}}}:log"


def _keys_key(channel: str) -> str:
    return f"{_PREFIX}:{{{channel}}}:keys"


def _value_key(key: str) -> str:
    return f"{_PREFIX}:val:{key}"


def _lease_key(group: str) -> str:
    return f"{_PREFIX}:lease:{group}"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# The most a grouped append call carries (a single publish always goes out whole, however
# large): the script holds Redis for the whole call. Sizes count characters, plus some bytes
# an event costs whatever its size.
_GROUP_BYTES = 1 << 20
_GROUP_EVENTS = 1000
_EVENT_OVERHEAD = 64


@dataclass(slots=True, eq=False)
class _Pending:
    """A publish (or a close) waiting for its channel's writer."""

    events: Sequence[NewEvent]
    closing: bool
    done: asyncio.Future[list[Appended]]
    size: int = 0

    def __post_init__(self) -> None:
        self.size = sum(
            len(e.type) + len(e.data) + len(e.idempotency_key or "") + _EVENT_OVERHEAD
            for e in self.events
        )


def _fail(writes: Sequence[_Pending], error: BaseException) -> None:
    for pending in writes:
        if not pending.done.done():
            pending.done.set_exception(error)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A read, plus the log's id base (``None`` without a log) for a following ``XREAD``,
    and when it was taken (event loop time)."""

    result: ReadResult
    base: str | None
    taken: float = 0.0


class RedisStore(EventStore):
    """Event logs in Redis Streams; see the module docstring for the layout and trade-offs.

    Build one with :meth:`from_url`. ``commands`` and ``waits`` are two clients of the same
    server or cluster: the second one only runs blocking ``XREAD`` s.
    """

    scheme = "redis"

    def __init__(
        self,
        commands: Client,
        waits: Client,
        *,
        retention_events: int = 10_000,
        retention_seconds: float = 86_400,
        linger_seconds: float = 7 * 86_400,
        max_connections: int = 64,
        max_waits: int = 256,
        poll_seconds: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self._client = commands
        self._blocking = waits
        self._cluster = isinstance(commands, RedisCluster)
        self._retention_events = retention_events
        self._retention_ms = _ms(retention_seconds)
        self._linger_ms = _ms(linger_seconds) if linger_seconds > 0 else 0
        # Semaphores, not only pool sizes: a cluster node's pool raises instead of queueing
        # when it is full, and a wait must know whether it can block or has to poll.
        self._commands = asyncio.Semaphore(max_connections)
        self._waits = asyncio.Semaphore(max_waits)
        self._poll = poll_seconds
        self._timeout = timeout
        self._append, self._read = _lua("append"), _lua("read")
        self._lease, self._increment = _lua("lease"), _lua("increment")
        self._loading = asyncio.Lock()
        self._loads = 0
        self._writers = ChannelWriters[_Pending]("redis", self._drain)
        # The last state read of each channel (bounded), and its log's id base: where a
        # waiting read starts its XREAD.
        self._seen: OrderedDict[str, _Snapshot] = OrderedDict()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        retention_events: int = 10_000,
        retention_seconds: float = 86_400,
        linger_seconds: float = 7 * 86_400,
        max_connections: int = 64,
        max_waits: int = 256,
        poll_seconds: float = 0.5,
        timeout: float = 5.0,
    ) -> RedisStore:
        """A store for ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS), or a
        cluster: ``redis+cluster://host:port[,host:port…]`` (``rediss+cluster://``), where the
        nodes listed are where discovery starts."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"not a Redis URL: {url!r}")
        # No retries inside the client: see the module docstring.
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if parts.scheme.endswith("+cluster"):
            commands: Client = _cluster(parts, max_connections, socket_timeout=timeout, **common)
            waits: Client = _cluster(parts, max_waits, socket_timeout=None, **common)
        else:
            commands = Redis(
                connection_pool=ConnectionPool.from_url(
                    url, max_connections=max_connections, socket_timeout=timeout, **common
                )
            )
            waits = Redis(
                connection_pool=ConnectionPool.from_url(
                    url, max_connections=max_waits, socket_timeout=None, **common
                )
            )
        return cls(
            commands,
            waits,
            retention_events=retention_events,
            retention_seconds=retention_seconds,
            linger_seconds=linger_seconds,
            max_connections=max_connections,
            max_waits=max_waits,
            poll_seconds=poll_seconds,
            timeout=timeout,
        )

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one command (or pipeline) on the commands pool; failures become 503s."""
        async with self._commands:
            try:
                await _ready(self._client)
                return await call()
            except _FAILURES as exc:
                raise StoreUnavailable(f"redis: {exc or type(exc).__name__}") from exc

    async def _load_scripts(self, seen: int) -> None:
        """Load every script (on every primary of a cluster), once per loss.

        One at a time: a burst of calls that all found the scripts missing (a restarted or
        failed-over Redis) loads them once, and concurrent loads to all nodes of a cluster
        upset redis-py's cluster client.
        """
        async with self._loading:
            if self._loads != seen:
                return  # another call loaded them meanwhile
            for script in (self._append, self._read, self._lease, self._increment):
                await self._client.script_load(script.text)
            self._loads += 1

    async def _eval(self, script: _Lua, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run a script on the commands pool (``keys`` of one slot); failures become 503s."""

        async def call() -> Any:
            seen = self._loads
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._load_scripts(seen)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)

        return await self._run(call)

    # -- logs ------------------------------------------------------------------------------

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        return await self._queued(channel, events, closing=False)

    async def close(self, channel: str, final: NewEvent) -> Appended:
        (appended,) = await self._queued(channel, [final], closing=True)
        return appended

    async def _queued(
        self, channel: str, events: Sequence[NewEvent], *, closing: bool
    ) -> list[Appended]:
        pending = _Pending(events, closing, asyncio.get_running_loop().create_future())
        return await self._writers.submit(channel, pending)

    async def _drain(self, channel: str, queue: list[_Pending]) -> None:
        """Write a channel's queued writes, each call taking all that queued meanwhile (up to
        _GROUP_BYTES and _GROUP_EVENTS, and never past a close), until none is left."""
        while queue:
            size, events, taken = 0, 0, 0
            for pending in queue:
                size += pending.size
                events += len(pending.events)
                if taken and (size > _GROUP_BYTES or events > _GROUP_EVENTS):
                    break
                taken += 1
                if pending.closing:
                    break
            group, queue[:taken] = queue[:taken], []
            try:
                results = await self._write(channel, group)
            except asyncio.CancelledError:
                _fail(group, StoreUnavailable("redis: the store closed"))
                raise
            except Exception as exc:
                _fail(group, exc)
            else:
                for pending, result in zip(group, results, strict=True):
                    if not pending.done.done():
                        pending.done.set_result(result)

    async def _write(self, channel: str, group: Sequence[_Pending]) -> list[list[Appended]]:
        """One script call for ``group``'s events, in order; each write's results."""
        args: list[str | int] = [
            self._retention_events,
            self._retention_ms,
            self._linger_ms,
            new_epoch(),
            1 if group[-1].closing else 0,
        ]
        for pending in group:
            for event in pending.events:
                args += (event.type, event.data, event.idempotency_key or "")
        keys = [_meta_key(channel), _log_key(channel), _keys_key(channel)]
        reply = await self._eval(self._append, keys, args)
        if reply[0] == "closed":
            raise ChannelClosed(f"channel {channel!r} is closed")
        epoch = reply[1]
        appended = [
            Appended(int(reply[i]), epoch, duplicate=bool(int(reply[i + 1])))
            for i in range(2, len(reply), 2)
        ]
        results, start = [], 0
        for pending in group:
            results.append(appended[start : start + len(pending.events)])
            start += len(pending.events)
        return results

    def _read_args(self, after: int, limit: int) -> list[int]:
        return [after, limit, self._retention_events, self._retention_ms]

    async def _read_now(self, channel: str, after: int, limit: int) -> _Snapshot:
        keys = [_meta_key(channel), _log_key(channel)]
        args = self._read_args(after, limit)
        snapshot = _snapshot(channel, await self._eval(self._read, keys, args))
        taken = asyncio.get_running_loop().time()
        self._seen[channel] = _Snapshot(ReadResult([], snapshot.result.state), snapshot.base, taken)
        self._seen.move_to_end(channel)
        if len(self._seen) > _SEEN_CHANNELS:
            self._seen.popitem(last=False)
        return snapshot

    async def read(
        self, channel: str, after: int, *, limit: int, wait: float = 0.0, epoch: str = ""
    ) -> ReadResult:
        if wait <= 0:
            return (await self._read_now(channel, after, limit)).result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait

        def done(result: ReadResult) -> bool:
            lost = bool(epoch) and result.state.epoch != epoch
            return bool(result.events) or result.state.closed or lost

        # A live reader calls again as soon as it got events: the log's id base is known
        # from then, so the wait starts with XREAD after its own position, which returns at
        # once if anything is there already. That saves a script call per wake-up. The state
        # is looked at again at least every minute all the same: a lost log whose successor
        # got ids below the lost one's (Redis's clock went back) would wake no XREAD.
        seen = self._seen.get(channel)
        if seen is None or done(seen.result) or loop.time() - seen.taken > _SEEN_FOR:
            seen = await self._read_now(channel, after, limit)
            if done(seen.result):
                return seen.result
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                # Nothing was appended (that would have ended the wait): the state last seen
                # still holds, but for what time alone changes (age retention).
                return ReadResult([], seen.result.state)
            if await self._wait(channel, seen, min(after, seen.result.state.last_seq), remaining):
                snapshot = await self._read_now(channel, after, limit)
                if done(snapshot.result):
                    return snapshot.result
                seen = snapshot

    async def _wait(self, channel: str, seen: _Snapshot, after: int, seconds: float) -> bool:
        """Wait until the log may have something after ``after`` (true), or ``seconds``
        passed with nothing (false)."""
        if self._waits.locked():
            # Every blocking connection is busy: poll.
            await asyncio.sleep(min(seconds, self._poll))
            return True
        position = f"{seen.base}-{after}" if seen.base is not None else "0-0"
        async with self._waits:
            try:
                # The connection has no socket timeout (it blocks on purpose); this bounds it.
                async with asyncio.timeout(seconds + self._timeout):
                    await _ready(self._blocking)
                    found = await self._blocking.xread(
                        {_log_key(channel): position}, count=1, block=_ms(seconds)
                    )
            except _FAILURES as exc:
                raise StoreUnavailable(f"redis: {exc or type(exc).__name__}") from exc
            except TimeoutError:
                raise StoreUnavailable("redis did not answer a blocking read in time") from None
        return bool(found)

    async def state(self, channel: str) -> ChannelState:
        return (await self._read_now(channel, 0, 0)).result.state

    async def states(self, channels: Sequence[str]) -> list[ChannelState]:
        if self._cluster or len(channels) < 2:
            # On a cluster every channel may live on another node: one single-slot script call
            # each, concurrently (never one cross-slot command).
            return await super().states(channels)
        args = self._read_args(0, 0)

        async def pipelined() -> list[Any]:
            seen = self._loads
            try:
                return await self._read_pipeline(channels, args)
            except NoScriptError:
                await self._load_scripts(seen)
                return await self._read_pipeline(channels, args)

        replies = await self._run(pipelined)
        return [_snapshot(c, r).result.state for c, r in zip(channels, replies, strict=True)]

    async def _read_pipeline(self, channels: Sequence[str], args: Sequence[int]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for channel in channels:
            pipe.evalsha(self._read.sha, 2, _meta_key(channel), _log_key(channel), *args)
        return await pipe.execute()

    async def forget_log(self, channel: str) -> None:
        """Delete a channel's log entirely, as losing the data would (for tests and operators).

        A later append starts a new log with a new epoch.
        """
        keys = (_meta_key(channel), _log_key(channel), _keys_key(channel))
        await self._run(lambda: self._client.delete(*keys))

    # -- small expiring values -------------------------------------------------------------

    async def get_value(self, key: str) -> str | None:
        value = await self._run(lambda: self._client.get(_value_key(key)))
        return value.decode() if isinstance(value, bytes) else value

    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = None if ttl is None else _ms(ttl)
        written = await self._run(
            lambda: self._client.set(_value_key(key), value, px=px, nx=only_if_absent)
        )
        return bool(written)

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        args = [amount, 0 if ttl is None else _ms(ttl)]
        total = await self._eval(self._increment, [_value_key(key)], args)
        return int(total)

    async def delete_value(self, key: str) -> None:
        await self._run(lambda: self._client.delete(_value_key(key)))

    async def acquire_lease(self, group: str, holder: str, *, limit: int, ttl: float) -> bool:
        args: list[str | int] = [holder, limit, _ms(ttl)]
        held = await self._eval(self._lease, [_lease_key(group)], args)
        return bool(held)

    async def release_lease(self, group: str, holder: str) -> None:
        await self._run(lambda: self._client.zrem(_lease_key(group), holder))

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda: self._client.ping())

    async def aclose(self) -> None:
        # Each call of a writer is bounded by the command timeout.
        await self._writers.aclose(grace=2 * self._timeout)
        await self._client.aclose()
        await self._blocking.aclose()


async def _ready(client: Client) -> None:
    """Let a cluster client (re)discover the cluster before a command, never during one.

    redis-py discovers lazily, on first use and after a connection error; commands that run
    while another one rediscovers lose their connections. ``initialize`` waits for a running
    discovery and returns at once when none is needed.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()


def _snapshot(channel: str, reply: list[Any]) -> _Snapshot:
    if not reply:
        return _Snapshot(ReadResult([], ChannelState.empty()), None)
    epoch, base, first, last, closed = reply[:5]
    flat = reply[5:]
    events = [
        StoredEvent(channel, int(flat[i]), flat[i + 2], flat[i + 3], int(flat[i + 1]) / 1000)
        for i in range(0, len(flat), 4)
    ]
    state = ChannelState(epoch, int(first), int(last), int(closed) or None)
    return _Snapshot(ReadResult(events, state), base)


def _cluster(parts: SplitResult, max_connections: int, **options: Any) -> RedisCluster:
    """A cluster client from ``redis+cluster://[user:password@]host:port[,host:port…]``."""
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster URL lists host:port pairs, not {host_port!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return RedisCluster(
        startup_nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=parts.scheme.startswith("rediss"),
        max_connections=max_connections,
        **options,
    )
