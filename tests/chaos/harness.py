"""What the chaos scenarios share: their lengths, the processes they break, a load balancer,
publishers that keep a ledger of what the store acknowledged, readers that keep what they were
delivered, the exactly-once check between the two, and the figures each scenario reports.

Every scenario checks the same promise: a reader gets every acknowledged event of its channel
exactly once and in order, whatever broke meanwhile; or, where the store itself lost events,
is told so with ``reset`` before anything of the new log.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from serverless_sse.client import Backoff, ConnectionState, StateChange, aconnect
from serverless_sse.cursor import Cursor
from tests.polling import wait_until
from tests.servers import UvicornServer

# -- how long, how many ------------------------------------------------------------------------

LONG = os.environ.get("SSE_CHAOS_LONG", "") not in ("", "0")
"""``SSE_CHAOS_LONG=1`` (``make chaos``) runs the full-length versions."""


def setting(name: str, short: float, long: float) -> float:
    """``SSE_CHAOS_<NAME>`` from the environment, else the short or the long default."""
    value = os.environ.get(f"SSE_CHAOS_{name}")
    return float(value) if value else (long if LONG else short)


def time_limit(*seconds: float) -> float:
    """A pytest timeout for a scenario that runs ``seconds``: generous, a hang's bound."""
    return 240 + 3 * sum(seconds)


# -- processes ---------------------------------------------------------------------------------


class Fleet:
    """Uvicorn processes of one deployment, each on a port of its own that it keeps across
    restarts; stopped by process id whatever happens (use it as a context manager)."""

    def __init__(self, env: Mapping[str, str], count: int) -> None:
        self.servers = [UvicornServer(dict(env)) for _ in range(count)]
        self.kills = 0
        self.terminations = 0

    def __enter__(self) -> Fleet:
        try:
            for server in self.servers:
                server.start()
        except Exception:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def live(self) -> list[str]:
        return [s.url for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def pid(self, index: int) -> int:
        proc = self.servers[index].proc
        assert proc is not None
        return proc.pid

    async def kill(self, index: int) -> None:
        """SIGKILL: no cleanup, no goodbye; open connections are cut where they are."""
        server = self.servers[index]
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait, 30)
        server.proc = None
        self.kills += 1

    async def terminate(self, index: int, *, limit: float = 60.0) -> int:
        """SIGTERM, as a platform stops an instance; waits for the process to exit (a hang
        fails after ``limit`` seconds). Returns its exit code."""
        server = self.servers[index]
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(server.proc.wait, limit)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"uvicorn did not exit within {limit:.0f} s of SIGTERM") from None
        server.proc = None
        self.terminations += 1
        return code

    async def restart(self, index: int) -> None:
        await asyncio.to_thread(self.servers[index].start)


# -- a load balancer in front of the fleet -----------------------------------------------------

BALANCER = "http://balancer"
"""The base URL clients use; :class:`RoundRobin` sends each request to a live process."""


class RoundRobin(httpx.AsyncBaseTransport):
    """Sends each request to the next process in turn, skipping one that does not answer,
    as a load balancer with health checks would.

    A request that reached nothing (refused) goes to the next process; so does a GET whose
    connection broke before any answer (the process closed its listener under it). Once an
    answer has started, a broken connection is the client's to see: that is the fault under
    test.
    """

    def __init__(self, backends: Callable[[], Sequence[str]], *, connections: int) -> None:
        self._backends = backends
        self._turn = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._inner = httpx.AsyncHTTPTransport(limits=limits)
        self.routed: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        last: Exception | None = None
        for _ in range(20):
            backends = list(self._backends())
            if not backends:
                await asyncio.sleep(0.1)
                continue
            self._turn += 1
            base = httpx.URL(backends[self._turn % len(backends)])
            request.url = request.url.copy_with(host=base.host, port=base.port)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.ConnectError as exc:
                last = exc
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if request.method != "GET":
                    raise
                last = exc
            else:
                self.routed[str(base)] += 1
                return response
            await asyncio.sleep(0.02)
        raise httpx.ConnectError(f"no process answers: {last}", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def balanced_client(
    backends: Callable[[], Sequence[str]], *, connections: int
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=BALANCER,
        transport=RoundRobin(backends, connections=connections),
        timeout=httpx.Timeout(10.0, read=30.0),
    )


# -- publishing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acked:
    """An event the store acknowledged: where it went, and what it was."""

    epoch: str
    seq: int
    key: str
    type: str = "message"


@dataclass
class Ledger:
    """What was acknowledged, per channel, in order; and every publish attempt's outcome."""

    strict: bool = True
    """Each acknowledged event right after the one before (every publish acknowledged);
    otherwise only after it (publishes without retries may have stored events unseen)."""
    acked: dict[str, list[Acked]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    unknown: dict[str, list[str]] = field(default_factory=dict)
    """Keys of publishes that failed in a way that may or may not have stored them (only for
    publishes made without retrying)."""

    def record(self, channel: str, answer: Mapping[str, Any], batch: Sequence[Mapping[str, Any]]):
        """Record a 201, checking that the log grew by exactly these events, right after the
        last ones (publishers of a channel publish one request at a time)."""
        log = self.acked.setdefault(channel, [])
        for item, event in zip(answer["events"], batch, strict=True):
            position = Cursor.decode(item["id"]).position(channel)
            assert position is not None
            acked = Acked(
                position.epoch, item["seq"], event["data"]["k"], event.get("type", "message")
            )
            if acked in log:
                # Answered before and retried all the same: the store says it has it already.
                assert item.get("duplicate"), f"{channel}: {acked} stored twice"
                continue
            # A retry of a publish whose first answer was lost may be told it is a duplicate:
            # that is this ledger's first news of it.
            previous = log[-1] if log else None
            if previous is not None and previous.epoch == acked.epoch:
                follows = acked.seq == previous.seq + 1 or (
                    not self.strict and acked.seq > previous.seq
                )
                assert follows, f"{channel}: acked {acked} after {previous}"
            else:
                assert acked.seq == 1 or previous is None, f"{channel}: new log at {acked}"
            log.append(acked)

    @property
    def published(self) -> int:
        return sum(len(events) for events in self.acked.values())


def event(key: str, *, type: str = "message", keyed: bool = True, **data: Any) -> dict[str, Any]:
    """An event whose data carries its ``key`` (and ``data``); with ``keyed``, the key is its
    idempotency key too."""
    body: dict[str, Any] = {"type": type, "data": {"k": key, **data}}
    if keyed:
        body["idempotency_key"] = key
    return body


async def publish(
    http: httpx.AsyncClient,
    channel: str,
    ledger: Ledger,
    batch: Sequence[Mapping[str, Any]],
    *,
    retry: bool = True,
    base: str = "",
) -> bool:
    """Publish ``batch`` (one request), retrying every failure with the same idempotency keys
    until the store acknowledges it (``retry``), so that it is stored exactly once. Without
    ``retry`` a failure is recorded as unknown. Returns whether it was acknowledged."""
    body: Any = list(batch) if len(batch) > 1 else batch[0]
    while True:
        try:
            answer = await http.post(f"{base}/channels/{channel}/events", json=body)
        except httpx.HTTPError as exc:
            ledger.statuses[type(exc).__name__] += 1
        else:
            ledger.statuses[str(answer.status_code)] += 1
            if answer.status_code == 201:
                ledger.record(channel, answer.json(), batch)
                return True
            assert answer.status_code in (502, 503), f"publish answered {answer.status_code}"
        if not retry:
            ledger.unknown.setdefault(channel, []).extend(e["data"]["k"] for e in batch)
            return False
        await asyncio.sleep(0.05)


async def publish_steadily(
    http: httpx.AsyncClient,
    channel: str,
    ledger: Ledger,
    stop: asyncio.Event,
    *,
    rate: float,
    batch: int = 1,
    rng: random.Random | None = None,
    base: str = "",
) -> None:
    """Publish ``rate`` requests a second (of ``batch`` events each) until ``stop``, then the
    channel's ``end`` event. Each event's key is ``<channel>#<n>``."""
    n = 0
    pause = 1.0 / rate
    while not stop.is_set():
        events = [event(f"{channel}#{n + i}", n=n + i) for i in range(batch)]
        await publish(http, channel, ledger, events, base=base)
        n += batch
        delay = pause if rng is None else rng.uniform(0, 2 * pause)
        try:
            async with asyncio.timeout(delay):
                await stop.wait()
        except TimeoutError:
            pass
    await publish(http, channel, ledger, [event(f"{channel}#end", type="end", n=n)], base=base)


# -- reading -----------------------------------------------------------------------------------


@dataclass
class Delivered:
    """What one reader of one channel was given."""

    channel: str
    start: int = 0
    """How many of the channel's first events it had already (it starts from a cursor
    there)."""
    events: list[Acked] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)
    endings: Counter[str] = field(default_factory=Counter)
    """How responses ended: ``timeout:<reason>``, ``error:<code>``."""
    failures: int = 0
    """Connections that failed under the reader (cut, refused, refused with a status)."""
    done: bool = False

    def take(self, type: str, data: str, last_event_id: str) -> None:
        """One event as the reader's code sees it."""
        if type in ("message", "end"):
            position = Cursor.decode(last_event_id).position(self.channel)
            assert position is not None
            self.events.append(Acked(position.epoch, position.seq, json.loads(data)["k"], type))
            self.done = type == "end"
        elif type == "reset":
            self.resets.append({**json.loads(data), "after": len(self.events)})
        elif type == "timeout":
            self.endings[f"timeout:{json.loads(data)['reason']}"] += 1
        elif type == "error":
            self.endings[f"error:{json.loads(data)['error']}"] += 1


def duplicates(events: Iterable[Acked]) -> int:
    seen: set[Acked] = set()
    count = 0
    for item in events:
        count += item in seen
        seen.add(item)
    return count


def assert_exactly_once(reader: Delivered, ledger: Ledger) -> None:
    """The reader got every acknowledged event of its channel once, in order, and nothing
    else; and was never told of a reset (nothing was lost)."""
    expected = ledger.acked[reader.channel][reader.start :]
    assert not reader.resets, f"{reader.channel}: unexpected reset {reader.resets}"
    assert duplicates(reader.events) == 0, f"{reader.channel}: repeated events"
    missing = [e for e in expected if e not in set(reader.events)]
    assert not missing, f"{reader.channel}: {len(missing)} events never delivered: {missing[:5]}"
    assert reader.events == expected, f"{reader.channel}: delivered out of order"


def assert_told_of_loss(reader: Delivered, ledger: Ledger) -> int:
    """For a store that lost its log once (a restart without persistence): the reader got a
    prefix of the old log in order, then one ``reset`` (``epoch_changed``, from right after
    that prefix), then every event of the new log once, in order. Returns how many of the
    old log's acknowledged events it never got (the store lost them, and said so)."""
    acked = ledger.acked[reader.channel]
    old_epoch = acked[0].epoch
    had = acked[: reader.start]
    old = [e for e in acked if e.epoch == old_epoch]
    new = [e for e in acked if e.epoch != old_epoch]
    assert new and len({e.epoch for e in new}) == 1, f"{reader.channel}: one new log"
    assert acked == old + new, f"{reader.channel}: old and new logs interleaved"
    got_old = [e for e in reader.events if e.epoch == old_epoch]
    assert reader.events == got_old + [e for e in reader.events if e.epoch != old_epoch]
    assert had + got_old == old[: len(had + got_old)], f"{reader.channel}: old log out of order"
    assert reader.events[len(got_old) :] == new, f"{reader.channel}: new log not whole, in order"
    assert len(reader.resets) == 1, f"{reader.channel}: resets {reader.resets}"
    (reset,) = reader.resets
    assert reset["reason"] == "epoch_changed"
    assert reset["after"] == len(got_old), "the reset comes before anything of the new log"
    assert reset["missed_from"] == len(had + got_old) + 1
    return len(old) - len(had + got_old)


# -- figures -----------------------------------------------------------------------------------

REPORT: list[tuple[str, dict[str, Any]]] = []
"""(scenario, figures) of every scenario run in this process, for the session's summary."""


def delivery_figures(readers: Sequence[Delivered], ledger: Ledger) -> dict[str, Any]:
    """Published, delivered, lost and duplicated, over every reader."""
    expected = sum(len(ledger.acked[r.channel][r.start :]) for r in readers)
    delivered = sum(len(r.events) for r in readers)
    unique = sum(len(set(r.events)) for r in readers)
    lost = sum(len(set(ledger.acked[r.channel][r.start :]) - set(r.events)) for r in readers)
    return {
        "events published (acknowledged)": ledger.published,
        "deliveries expected": expected,
        "delivered": delivered,
        "lost": lost,
        "duplicated": delivered - unique,
        "publish answers": dict(sorted(ledger.statuses.items())),
        "reader connection failures": sum(r.failures for r in readers),
        "responses ended": dict(sorted(sum((r.endings for r in readers), Counter()).items())),
    }


def report(scenario: str, figures: dict[str, Any]) -> None:
    REPORT.append((scenario, figures))
    lines = [f"chaos: {scenario}"] + [f"    {k}: {v}" for k, v in figures.items()]
    print("\n".join(lines), file=sys.stderr)
    path = os.environ.get("SSE_CHAOS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"scenario": scenario, **figures}, default=str) + "\n")


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.started, 1)


async def wait_for_readers(
    readers: Sequence[asyncio.Task[Any]], what: str, *, limit: float = 120.0
) -> None:
    """Wait for every reader task to finish (each ends at its channel's ``end`` event); a
    reader that failed raises here."""

    def finished() -> bool:
        for task in readers:
            if task.done() and task.exception() is not None:
                task.result()  # a reader that failed: its error, at once
        return all(task.done() for task in readers)

    try:
        await wait_until(finished, what, limit=limit, every=0.25)
    finally:
        for task in readers:
            task.cancel()


async def follow(
    url: str,
    reader: Delivered,
    cursor: str,
    *,
    client: httpx.AsyncClient | None = None,
    backoff: Backoff | None = None,
    http_timeout: httpx.Timeout | None = None,
) -> None:
    """The project's client, as an application would use it, from ``cursor`` until the
    reader has its channel's ``end``; a connection that fails counts in ``reader.failures``."""

    def on_state(change: StateChange) -> None:
        if change.state is ConnectionState.ERROR:
            reader.failures += 1

    options: dict[str, Any] = {} if http_timeout is None else {"timeout": http_timeout}
    source = aconnect(
        url,
        client=client,
        last_event_id=cursor,
        backoff=backoff or Backoff(initial=0.1, maximum=1.0),
        on_state=on_state,
        **options,
    )
    async with source:
        async for item in source:
            reader.take(item.type, item.data, item.id)
            if reader.done:
                return
