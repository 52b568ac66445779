"""Soak: one process serving 1,000 streams under steady publishing for a long while.

One uvicorn process on a Redis of this test's own; 1,000 readers (raw httpx, resuming window
after window with their last id) follow 200 channels, five each, with 20-second windows (about
50 reconnects a second); four publishers publish 40 events a second over the channels. The
process's memory and file descriptors (read from /proc, sockets told apart by where they lead)
and its /metrics gauges are sampled before the readers come, after a warm-up, all along, at the
end, and once every reader has left. ``SSE_CHAOS_SOAK_SECONDS`` sets the length (60 in the
default suite, 600 with ``make chaos``; the warm-up is a sixth of it, at least 10 s). Each
channel's feed keeps 8 recent events here (``SSE_FEED_BUFFER_EVENTS``, 2048 by default), so
that its ring is full after the warm-up: a ring still filling raises memory by design.

Proves: every reader gets every event exactly once, in order, all along; after the warm-up the
process's memory stays within a bound (not growing with the reconnects it serves) and its
descriptors other than client sockets do not grow; and once every reader has left, it holds no
stream, no channel feed, no client socket, exactly the asyncio tasks and non-socket descriptors
it had before any reader came, and no more store connections than its pools allow. A leak shows
as one of those numbers (printed with every sample) staying up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from serverless_sse.protocol import EventStreamDecoder, ServerSentEvent
from tests.chaos.harness import (
    Delivered,
    Fleet,
    Ledger,
    Stopwatch,
    assert_exactly_once,
    delivery_figures,
    publish_steadily,
    report,
    setting,
    time_limit,
    wait_for_readers,
)
from tests.chaos.metrics import Holdings, gauges, holdings
from tests.polling import wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.chaos

SECONDS = setting("SOAK_SECONDS", 60, 600)
WARM_UP = max(10.0, SECONDS / 6)
STREAMS = int(setting("SOAK_STREAMS", 1000, 1000))
CHANNELS = 200
RATE = setting("SOAK_RATE", 40, 40)  # events a second, over all channels
PUBLISHERS = 4
WINDOW = 20
SAMPLE_EVERY = 5 if SECONDS <= 120 else 30
# The store's connection pools (the defaults: SSE_REDIS_MAX_CONNECTIONS, SSE_REDIS_MAX_WAITS).
STORE_CONNECTIONS_BOUND = 64 + 256
# Memory after the warm-up may move a little (allocator arenas), not grow with the work done:
# at most this much over the soak, whatever its length (measured: about 1 MiB over 60 s and
# over 240 s alike; a leak of 300 bytes per reconnect passes it in the 10-minute soak).
RSS_GROWTH_BOUND = 10 * 2**20
# Each channel's feed keeps its most recent events in memory (SSE_FEED_BUFFER_EVENTS, 2048 by
# default, about 1 KiB each): at 0.2 events a second per channel that ring would still be
# filling after hours, and memory would rise by design, hiding a leak. A small ring fills
# during the warm-up, so that what follows is the steady state.
RING = int(setting("SOAK_RING", 8, 8))


async def read_windows(http: httpx.AsyncClient, base: str, reader: Delivered, cursor: str) -> None:
    """Window after window, resuming with the last id, until the channel's ``end``."""
    url = f"{base}/channels/{reader.channel}/stream?window={WINDOW}"
    while not reader.done:
        decoder = EventStreamDecoder(last_event_id=cursor)
        try:
            async with http.stream("GET", url, headers={"Last-Event-ID": cursor}) as response:
                if response.status_code != 200:
                    reader.failures += 1
                    await asyncio.sleep(0.2)
                    continue
                async for chunk in response.aiter_raw():
                    for item in decoder.feed(chunk):
                        if isinstance(item, ServerSentEvent):
                            reader.take(item.type, item.data, item.last_event_id)
                    if reader.done:
                        break
        except httpx.HTTPError:
            reader.failures += 1
            await asyncio.sleep(0.2)
        decoder.close()
        cursor = decoder.last_event_id


class Samples:
    def __init__(self, pid: int, port: int, store_port: int, http: httpx.AsyncClient, base: str):
        self._pid, self._port, self._store_port = pid, port, store_port
        self._http, self._base = http, base
        self.rows: list[dict[str, Any]] = []
        self._started = time.monotonic()

    async def take(self, label: str) -> tuple[Holdings, dict[str, float]]:
        held = holdings(self._pid, port=self._port, store_port=self._store_port)
        metrics = await gauges(self._http, self._base)
        self.rows.append(
            {
                "at": round(time.monotonic() - self._started),
                "label": label,
                "rss_mib": round(held.rss / 2**20, 1),
                "fds": held.fds,
                "client_sockets": held.client_sockets,
                "store_sockets": held.store_sockets,
                "other_fds": held.other_fds,
                "open_streams": metrics["sse_open_streams"],
                "feeds": metrics["sse_channel_feeds"],
                "tasks": metrics["sse_event_loop_tasks"],
            }
        )
        print(f"soak {self.rows[-1]}", flush=True)
        return held, metrics


@pytest.mark.timeout(time_limit(SECONDS, WARM_UP))
async def test_a_process_serving_1000_streams_stays_flat_and_leaks_nothing(
    redis: RedisServer,
) -> None:
    env = {
        "SSE_STORE": redis.url(0),
        "SSE_HEARTBEAT_SECONDS": "5",
        "SSE_FEED_BUFFER_EVENTS": str(RING),
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "WARNING",
    }
    clock = Stopwatch()
    with Fleet(env, 1) as fleet:
        (base,) = fleet.live()
        server = fleet.servers[0]
        channels = [f"soak/{n}" for n in range(CHANNELS)]
        readers = [Delivered(channels[n % CHANNELS]) for n in range(STREAMS)]
        ledger = Ledger()
        stop = asyncio.Event()
        # /metrics on connections of their own, closed after each request: the only client
        # socket the process may hold once every reader and publisher has left.
        no_keep_alive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=no_keep_alive) as control:
            samples = Samples(fleet.pid(0), server.port, redis.port, control, base)
            await asyncio.sleep(2)
            idle, idle_metrics = await samples.take("idle, before any reader")
            limits = httpx.Limits(max_connections=STREAMS + 50, max_keepalive_connections=50)
            async with (
                httpx.AsyncClient(timeout=60, limits=limits) as http,
                httpx.AsyncClient(timeout=60) as publishers_http,
            ):
                cursors = {
                    c: (await http.get(f"{base}/channels/{c}/events")).json()["cursor"]
                    for c in channels
                }
                reading = [
                    asyncio.create_task(read_windows(http, base, r, cursors[r.channel]))
                    for r in readers
                ]

                async def publisher(own: list[str]) -> None:
                    await asyncio.gather(
                        *(
                            publish_steadily(
                                publishers_http, c, ledger, stop, rate=RATE / CHANNELS, base=base
                            )
                            for c in own
                        )
                    )

                publishing = [
                    asyncio.create_task(publisher(channels[p::PUBLISHERS]))
                    for p in range(PUBLISHERS)
                ]
                cpu_before = fleet_cpu(fleet)
                await asyncio.sleep(WARM_UP)
                warm, _ = await samples.take("after warm-up")
                ends = time.monotonic() + SECONDS - WARM_UP
                while (left := ends - time.monotonic()) > 0:
                    await asyncio.sleep(min(SAMPLE_EVERY, left))
                    await samples.take("soak")
                end, end_metrics = await samples.take("end, readers still connected")
                cpu_seconds = fleet_cpu(fleet) - cpu_before
                stop.set()
                await asyncio.gather(*publishing)
                await wait_for_readers(reading, "every reader reached its channel's end")
            # Every reader and publisher has left (their clients closed their connections).

            async def drained() -> bool:
                held, metrics = await samples.take("readers gone")
                return (
                    metrics["sse_open_streams"] == 0
                    and metrics["sse_channel_feeds"] == 0
                    and metrics["sse_event_loop_tasks"] == idle_metrics["sse_event_loop_tasks"]
                    and held.client_sockets <= 1  # this very /metrics request's
                    and held.other_fds == idle.other_fds
                )

            await wait_until(drained, "the process let go of everything the readers used", every=1)
            gone, _ = await samples.take("after every reader left")

    for reader in readers:
        assert_exactly_once(reader, ledger)
    assert gone.store_sockets <= STORE_CONNECTIONS_BOUND
    assert end.other_fds <= warm.other_fds + 8, "descriptors other than sockets grew"
    assert end.rss - warm.rss <= RSS_GROWTH_BOUND, "memory grew through the soak"
    reconnects = sum(r.endings["timeout:window_elapsed"] for r in readers)
    report(
        f"soak ({STREAMS} streams, {SECONDS:.0f} s, one process)",
        {
            **delivery_figures(readers, ledger),
            "reconnects (windows ended and resumed)": reconnects,
            "memory (RSS MiB) idle / after warm-up / end / after readers left": [
                round(h.rss / 2**20, 1) for h in (idle, warm, end, gone)
            ],
            "fds idle / after warm-up / end / after readers left": [
                h.fds for h in (idle, warm, end, gone)
            ],
            "client sockets, store sockets, other fds at end": [
                end.client_sockets,
                end.store_sockets,
                end.other_fds,
            ],
            "open streams / feeds / tasks at end": [
                end_metrics[k]
                for k in ("sse_open_streams", "sse_channel_feeds", "sse_event_loop_tasks")
            ],
            "tasks idle / after readers left": [
                idle_metrics["sse_event_loop_tasks"],
                samples.rows[-1]["tasks"],
            ],
            "server CPU seconds during the soak": round(cpu_seconds, 1),
            "samples": samples.rows,
            "seconds": clock(),
        },
    )


def fleet_cpu(fleet: Fleet) -> float:
    import psutil

    times = psutil.Process(fleet.pid(0)).cpu_times()
    return float(times.user + times.system)
