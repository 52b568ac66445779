"""The bench's scenarios, each against a freshly started target, each returning one record of
measured figures (a flat dict, one JSON line).

- :func:`fanout`: N subscribers on one channel, events at R a second for a while: latency
  from publish to receipt, loss, duplicates, order, deliveries a second, connect time, server
  memory per (idle) connection, CPU of the server, its store and the load tool.
- :func:`catch_up`: a subscriber leaves, K events are published, it comes back with
  ``Last-Event-ID``: does it get exactly the K, and how fast.
- :func:`publish_throughput`: C publishers back to back into one channel: events a second
  accepted (and, where the answers say, that their sequences are exactly 1..count).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from array import array
from multiprocessing.connection import Connection
from typing import Any

from .processes import cpu_seconds, rss_bytes
from .publishers import Http1, publisher_main
from .subscribers import (
    Subscriber,
    SubscriberProtocol,
    Tally,
    now_us,
    run,
    stream_request,
    worker_main,
)
from .targets import Target
from .wire import payload

__all__ = ["catch_up", "fanout", "publish_throughput"]

HOST = "127.0.0.1"
_mp = multiprocessing.get_context("spawn")


def percentile(ordered: array[int], fraction: float) -> float:
    """The ``fraction`` quantile of sorted µs values, in ms (nearest rank)."""
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank] / 1000


class Workers:
    """Subscriber processes, driven over pipes (see ``subscribers.worker_main``)."""

    def __init__(self, count: int) -> None:
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(count):
            mine, theirs = _mp.Pipe()
            proc = _mp.Process(target=worker_main, args=(theirs,), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def ask(self, command: str, args_per_worker: list[dict[str, Any]]) -> list[Any]:
        for pipe, args in zip(self.pipes, args_per_worker, strict=True):
            pipe.send((command, args))
        return [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("close", {}))
                pipe.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def publish(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a publisher process to the end (see ``publishers.publisher_main``)."""
    mine, theirs = _mp.Pipe()
    proc = _mp.Process(target=publisher_main, args=(theirs, spec), daemon=True)
    proc.start()
    result: dict[str, Any] = mine.recv()
    proc.join(5)
    return result


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def fanout(
    target: Target,
    *,
    subscribers: int,
    rate: float,
    seconds: float,
    workers: int = 2,
    pad: int = 0,
    drain_limit: float = 15.0,
) -> dict[str, Any]:
    """``subscribers`` streams on one channel; ``rate`` events a second for ``seconds``."""
    count = max(1, round(rate * seconds))
    channel = "f" + uuid.uuid4().hex[:12]
    request = stream_request(target.stream_path(channel))
    pool = Workers(workers)
    try:
        _warm_up(target, pool)
        time.sleep(1.0)
        rss_before = rss_bytes(target.server_pids)
        connect_started = time.monotonic()
        shares = _split(subscribers, workers)
        opened = pool.ask(
            "connect",
            [
                {"host": HOST, "port": target.port, "request": request, "count": n,
                 "expect": count}
                for n in shares
            ],
        )  # fmt: skip
        connect_seconds = time.monotonic() - connect_started
        time.sleep(2.0)  # let the server settle before reading its memory
        rss_after = rss_bytes(target.server_pids)
        live = sum(o["opened"] for o in opened)
        connect_us = array("q", sorted(t for o in opened for t in o["connect_us"]))

        cpu = _cpu(target, pool)
        tool_cpu = pool.ask("cpu", [{}] * workers)
        wall = time.monotonic()
        published = publish(
            {"mode": "steady", "host": HOST, "port": target.port,
             "path": target.publish_path(channel), "wrap": target.wrap,
             "type": target.content_type, "rate": rate, "count": count, "pad": pad}
        )  # fmt: skip
        drained = pool.ask("drain", [{"quiet": 3.0, "limit": drain_limit}] * workers)
        wall = time.monotonic() - wall
        used = {k: v - cpu[k] for k, v in _cpu(target, pool).items()}
    finally:
        pool.close()

    latencies = array("q")
    for d in drained:
        latencies.frombytes(d["latencies_us"])
    ordered = array("q", sorted(latencies))
    unique = sum(d["unique"] for d in drained)
    expected = live * count
    firsts = [d["first_arrival_us"] for d in drained if d["first_arrival_us"]]
    lasts = [d["last_arrival_us"] for d in drained if d["last_arrival_us"]]
    span = (max(lasts) - min(firsts)) / 1e6 if firsts else 0.0
    received = sum(d["received"] for d in drained)
    return {
        "scenario": "fanout",
        "target": target.name,
        "subscribers": subscribers,
        "connected": live,
        "refused": sum(o["failed"] for o in opened),
        "rate": rate,
        "events": count,
        "published_rate": round(published["rate"], 1),
        "publish_statuses": published["statuses"],
        "publisher_max_behind_ms": round(published["max_behind_ms"], 1),
        "expected_deliveries": expected,
        "delivered": received,
        "lost": expected - unique,
        "loss_pct": round(100 * (expected - unique) / expected, 3) if expected else 0.0,
        "duplicates": sum(d["duplicates"] for d in drained),
        "out_of_order": sum(d["out_of_order"] for d in drained),
        "p50_ms": percentile(ordered, 0.50),
        "p90_ms": percentile(ordered, 0.90),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] / 1000 if ordered else float("nan"),
        "deliveries_per_s": round(received / span) if span else 0,
        "connect_p50_ms": percentile(connect_us, 0.50),
        "connect_p99_ms": percentile(connect_us, 0.99),
        "connect_all_s": round(connect_seconds, 2),
        "rss_per_conn_kib": round((rss_after - rss_before) / max(1, live) / 1024, 1),
        "server_rss_mib": round(rss_after / 2**20, 1),
        "server_cpu_pct": round(100 * used["server"] / wall, 1),
        "store_cpu_pct": round(100 * used["store"] / wall, 1),
        # the busiest subscriber process: far below 100 % means the tool kept up
        "tool_cpu_pct_max": round(
            100 * max(d["cpu_seconds"] - c for d, c in zip(drained, tool_cpu, strict=True)) / wall,
            1,
        ),
        "seconds": round(wall, 1),
    }


def _cpu(target: Target, pool: Workers) -> dict[str, float]:
    return {
        "server": cpu_seconds(target.server_pids),
        "store": cpu_seconds(target.store_pids),
    }


def _warm_up(target: Target, pool: Workers) -> None:
    """A few streams and events first, so that one-time costs (imports, first connections to
    the store) do not count as per-connection memory or latency."""
    channel = "w" + uuid.uuid4().hex[:12]
    request = stream_request(target.stream_path(channel))
    shares = _split(20, len(pool.pipes))
    pool.ask(
        "connect",
        [{"host": HOST, "port": target.port, "request": request, "count": n, "expect": 5}
         for n in shares],
    )  # fmt: skip
    publish(
        {"mode": "steady", "host": HOST, "port": target.port,
         "path": target.publish_path(channel), "wrap": target.wrap,
         "type": target.content_type, "rate": 50, "count": 5}
    )  # fmt: skip
    pool.ask("drain", [{"quiet": 1.0, "limit": 5.0}] * len(pool.pipes))
    pool.ask("disconnect", [{}] * len(pool.pipes))


def catch_up(target: Target, *, missed: int) -> dict[str, Any]:
    """A subscriber misses ``missed`` events and comes back with ``Last-Event-ID``."""
    return run(_catch_up(target, missed))


async def _catch_up(target: Target, missed: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    channel = "c" + uuid.uuid4().hex[:12]
    http = Http1(HOST, target.port)
    path = target.publish_path(channel)
    # 1. follow the channel until one event (number 0) arrived (with its id, if the system
    # gives one); then leave
    seen = Tally()
    first = Subscriber(stream_request(target.stream_path(channel)), seen, expect=0)
    first.track_ids = True
    leaving = SubscriberProtocol(first)
    await loop.create_connection(lambda: leaving, HOST, target.port)
    await asyncio.wait_for(asyncio.shield(leaving.opened), 10)
    await asyncio.sleep(0.2)  # the peer subscribes to Redis only after it answered
    await http.post(path, target.wrap % payload(0, now_us()), target.content_type)
    deadline = time.monotonic() + 10
    while not seen.received and time.monotonic() < deadline:  # noqa: ASYNC110 - protocol state
        await asyncio.sleep(0.01)
    leaving.close()
    # 2. meanwhile, ``missed`` events
    started = time.monotonic()
    if target.batch_wrap is not None:
        item, batch = target.batch_wrap
        for low in range(1, missed + 1, 100):
            body = b",".join(item % payload(n, 0) for n in range(low, min(low + 100, missed + 1)))
            await http.post(path, batch % body, target.content_type)
    else:
        for n in range(1, missed + 1):
            await http.post(path, target.wrap % payload(n, 0), target.content_type)
    publish_seconds = time.monotonic() - started
    await http.close()
    # 3. come back with the last id seen
    tally = Tally()
    request = stream_request(target.stream_path(channel), last_event_id=first.last_id)
    back = Subscriber(request, tally, expect=missed)
    coming_back = SubscriberProtocol(back)
    sent = time.monotonic()
    await loop.create_connection(lambda: coming_back, HOST, target.port)
    await asyncio.wait_for(asyncio.shield(coming_back.opened), 10)
    deadline = time.monotonic() + 30
    last_count, quiet_since = -1, time.monotonic()
    while not back.complete and time.monotonic() < deadline:
        if tally.received != last_count:
            last_count, quiet_since = tally.received, time.monotonic()
        elif time.monotonic() - quiet_since > 3:
            break  # nothing more is coming
        await asyncio.sleep(0.002)
    done = time.monotonic()
    coming_back.close()
    took = done - sent
    return {
        "scenario": "catch_up",
        "target": target.name,
        "missed": missed,
        "had_id": bool(first.last_id),
        "received": back.unique,
        "lost": missed - back.unique,
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "seconds": round(took, 3) if back.complete else None,
        "events_per_s": round(missed / took) if back.complete and took else None,
        "publish_seconds": round(publish_seconds, 2),
    }


def publish_throughput(target: Target, *, connections: int, count: int) -> dict[str, Any]:
    """``connections`` publishers back to back into one channel until ``count`` are sent."""
    channel = "p" + uuid.uuid4().hex[:12]
    cpu = cpu_seconds(target.server_pids), cpu_seconds(target.store_pids)
    result = publish(
        {"mode": "flood", "host": HOST, "port": target.port,
         "path": target.publish_path(channel), "wrap": target.wrap,
         "type": target.content_type, "count": count, "connections": connections}
    )  # fmt: skip
    server = cpu_seconds(target.server_pids) - cpu[0]
    store = cpu_seconds(target.store_pids) - cpu[1]
    seqs = sorted(result["seqs"])
    accepted = sum(n for status, n in result["statuses"].items() if 200 <= status < 300)
    return {
        "scenario": "publish",
        "target": target.name,
        "connections": connections,
        "sent": count,
        "accepted": accepted,
        "statuses": result["statuses"],
        "events_per_s": round(accepted / result["seconds"]),
        # the project answers with each event's sequence: exactly 1..count, none twice
        "gap_free": seqs == list(range(1, count + 1)) if seqs else None,
        "server_cpu_pct": round(100 * server / result["seconds"], 1),
        "store_cpu_pct": round(100 * store / result["seconds"], 1),
        "tool_cpu_pct": round(100 * result["cpu_seconds"] / result["seconds"], 1),
        "seconds": round(result["seconds"], 2),
    }
