"""Client churn: subscribers that hang up at random points and come back.

Two uvicorn processes share a Redis of this test's own; readers (raw httpx, so that the test
decides where each connection is cut) follow four channels, alternating between the processes.
On each connection a reader picks where to hang up: inside an event (its ``id:`` line read, its
final blank line not), inside a heartbeat comment, after a random number of bytes, or not at
all (the window runs out). What was read up to the cut is decoded as an EventSource would (an
event cut short is never dispatched) and the reader reconnects with the last id it dispatched.
Publishers publish in bursts with quiet gaps longer than the heartbeat, so heartbeats happen.

Proves: every reader gets every event exactly once, in order, however its connections were
cut; every kind of cut happened; and once the readers are gone both processes hold no stream
and no channel feed (a hung-up client leaks nothing). A failure shows as a repeated event (an
event cut short that was counted), a missing one (a resume that skipped), a cut kind that never
happened, or a process whose ``sse_open_streams`` / ``sse_channel_feeds`` stay above zero.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

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
from tests.chaos.metrics import gauge
from tests.polling import wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.chaos

SECONDS = setting("CHURN_SECONDS", 15, 120)
READERS = int(setting("CHURN_READERS", 40, 100))
CHANNELS = 4
CUTS = ("mid_event", "mid_heartbeat", "random_byte", "whole_window")
HEARTBEAT = b": hb\n\n"


class Cutter:
    """Where to hang up on one connection, found in the bytes as they arrive."""

    def __init__(self, plan: str, rng: random.Random) -> None:
        self.plan = plan
        self._rng = rng
        self._after = rng.randint(1, 4000)  # random_byte: hang up after this many bytes
        self._seen = 0

    def where(self, chunk: bytes) -> int | None:
        """An offset in ``chunk`` to cut at, or ``None`` to read all of it."""
        seen, self._seen = self._seen, self._seen + len(chunk)
        if self.plan == "random_byte":
            return self._after - seen if seen + len(chunk) > self._after else None
        if self.plan == "mid_event":
            start = chunk.find(b"id: ")
            end = chunk.find(b"\n\n", start)
            if start < 0 or end < 0:
                return None
            return self._rng.randint(start + 1, end + 1)  # never the whole final blank line
        if self.plan == "mid_heartbeat":
            start = chunk.find(HEARTBEAT)
            if start < 0:
                return None
            return self._rng.randint(start + 1, start + len(HEARTBEAT) - 1)
        return None


async def churn(
    http: httpx.AsyncClient,
    bases: list[str],
    reader: Delivered,
    cursor: str,
    cuts: Counter[str],
    rng: random.Random,
) -> None:
    turn = rng.randrange(len(bases))
    while not reader.done:
        turn += 1
        cutter = Cutter(rng.choice(CUTS), rng)
        decoder = EventStreamDecoder(last_event_id=cursor)
        url = f"{bases[turn % len(bases)]}/channels/{reader.channel}/stream?window=3"
        try:
            async with http.stream("GET", url, headers={"Last-Event-ID": cursor}) as response:
                if response.status_code != 200:
                    reader.failures += 1
                    await asyncio.sleep(0.1)
                    continue
                async for chunk in response.aiter_raw():
                    cut = cutter.where(chunk)
                    for item in decoder.feed(chunk if cut is None else chunk[:cut]):
                        if isinstance(item, ServerSentEvent):
                            reader.take(item.type, item.data, item.last_event_id)
                    if reader.done:
                        break
                    if cut is not None:
                        cuts[cutter.plan] += 1
                        break  # leaving the block closes the connection: the client hangs up
        except httpx.HTTPError:
            reader.failures += 1
        decoder.close()  # an event cut short is discarded, never dispatched
        cursor = decoder.last_event_id


@pytest.mark.timeout(time_limit(SECONDS))
async def test_readers_that_hang_up_anywhere_get_every_event_once_in_order(
    redis: RedisServer,
) -> None:
    env = {
        "SSE_STORE": redis.url(0),
        "SSE_HEARTBEAT_SECONDS": "0.3",
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "WARNING",
    }
    rng = random.Random(9)
    clock = Stopwatch()
    cuts: Counter[str] = Counter()
    with Fleet(env, 2) as fleet:
        bases = fleet.live()
        channels = [f"churn/{n}" for n in range(CHANNELS)]
        ledger = Ledger()
        stop = asyncio.Event()
        readers = [Delivered(channels[n % CHANNELS]) for n in range(READERS)]
        limits = httpx.Limits(max_connections=READERS + 20)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            cursors = {
                c: (await http.get(f"{bases[0]}/channels/{c}/events")).json()["cursor"]
                for c in channels
            }
            reading = [
                asyncio.create_task(
                    churn(http, bases, r, cursors[r.channel], cuts, random.Random(rng.random()))
                )
                for r in readers
            ]
            publishing = [
                asyncio.create_task(
                    publish_steadily(
                        http,
                        c,
                        ledger,
                        stop,
                        rate=1.5,
                        batch=3,
                        base=bases[n % 2],
                        rng=random.Random(n),
                    )
                )
                for n, c in enumerate(channels)
            ]
            await asyncio.sleep(SECONDS)
            stop.set()
            await asyncio.gather(*publishing)
            await wait_for_readers(reading, "every reader reached its channel's end")
            for base in bases:

                async def released(base: str = base) -> bool:
                    streams = await gauge(http, base, "sse_open_streams")
                    return streams == 0 and await gauge(http, base, "sse_channel_feeds") == 0

                await wait_until(released, f"{base} holds no stream and no feed")

    for reader in readers:
        assert_exactly_once(reader, ledger)
    assert set(cuts) == set(CUTS) - {"whole_window"}, f"cuts made: {dict(cuts)}"
    report(
        "client churn (hang-ups mid-event, mid-heartbeat, anywhere)",
        {
            "processes": 2,
            "readers": READERS,
            "cuts": dict(sorted(cuts.items())),
            **delivery_figures(readers, ledger),
            "seconds": clock(),
        },
    )
