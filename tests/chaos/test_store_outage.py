"""Store outage: the Redis server killed (SIGKILL) under load, and started again a few seconds
later, with and without persistence.

Two uvicorn processes share a Redis of this test's own. Subscribers, with the project's own
client through a round-robin balancer, follow two channels; publishers publish batches of three
events (each with an idempotency key), retrying every failure with the same keys.

Proves, with persistence (append-only file, ``appendfsync always``): nothing is lost; every
subscriber gets every acknowledged event exactly once, in order, with no ``reset``. Without
persistence (the log is gone): each subscriber gets what it had, then exactly one ``reset``
(``epoch_changed``, ``missed_from`` right after the last event it had), then the whole new
log in order. In both: publishes during the outage are answered 503 (never another error) and
stored nothing half-way (a batch is whole in the log or absent), and open streams end with
``error`` (``store_unavailable``) rather than hanging. A failure shows as a lost or repeated
event, a second or missing ``reset``, a publish answered other than 201/503, or a batch whose
events are not consecutive.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverless_sse.cursor import Cursor, Position
from tests.chaos.harness import (
    BALANCER,
    Delivered,
    Fleet,
    Ledger,
    Stopwatch,
    assert_exactly_once,
    assert_told_of_loss,
    balanced_client,
    delivery_figures,
    follow,
    publish_steadily,
    report,
    setting,
    time_limit,
    wait_for_readers,
)
from tests.polling import wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.chaos

OUTAGE = setting("OUTAGE_SECONDS", 3, 10)
AROUND = setting("OUTAGE_AROUND_SECONDS", 3, 20)  # load before and after the outage
READERS = int(setting("OUTAGE_READERS", 20, 60))
CHANNELS = ("outage/a", "outage/b")


@pytest.fixture(params=["persistent", "volatile"])
def redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "redis" if request.param == "persistent" else None
    with RedisServer(data_dir=data) as server:
        yield server


def first_cursor(channel: str, ledger: Ledger) -> str:
    first = ledger.acked[channel][0]
    return Cursor.encode_positions({channel: Position(first.epoch, first.seq)})


def assert_batches_whole(reader: Delivered) -> None:
    """Each publish of three events (keys 3m, 3m+1, 3m+2) fills one aligned triple of its log's
    sequences (every log starts at 1 and takes three at a time), never a part of one."""
    for e in reader.events:
        if e.type == "message":
            n = int(e.key.rpartition("#")[2])
            assert n % 3 == (e.seq - 1) % 3, f"{reader.channel}: {e} is out of its batch"
    triples: dict[tuple[str, int], set[int]] = {}
    for e in reader.events:
        if e.type == "message":
            triples.setdefault((e.epoch, (e.seq - 1) // 3), set()).add(
                int(e.key.rpartition("#")[2]) // 3
            )
    assert all(len(batches) == 1 for batches in triples.values()), "two publishes in one triple"


@pytest.mark.timeout(time_limit(OUTAGE, AROUND, AROUND))
async def test_a_redis_outage_loses_nothing_it_kept_and_tells_what_it_lost(
    redis: RedisServer,
) -> None:
    persistent = redis.data_dir is not None
    env = {
        "SSE_STORE": redis.url(0),
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_REDIS_TIMEOUT_SECONDS": "1",
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "ERROR",
    }
    clock = Stopwatch()
    with Fleet(env, 2) as fleet:
        ledger = Ledger()
        stop = asyncio.Event()
        readers = [Delivered(CHANNELS[n % len(CHANNELS)]) for n in range(READERS)]
        async with (
            balanced_client(fleet.live, connections=READERS + 20) as subscribers_http,
            balanced_client(fleet.live, connections=20) as publishers_http,
        ):
            cursors = {
                c: (await publishers_http.get(f"/channels/{c}/events")).json()["cursor"]
                for c in CHANNELS
            }
            following = [
                asyncio.create_task(
                    follow(
                        f"{BALANCER}/channels/{r.channel}/stream?window=5",
                        r,
                        cursors[r.channel],
                        client=subscribers_http,
                    )
                )
                for r in readers
            ]
            publishing = [
                asyncio.create_task(
                    publish_steadily(publishers_http, c, ledger, stop, rate=4, batch=3)
                )
                for c in CHANNELS
            ]
            # Every reader holds a cursor into the log before it goes.
            await wait_until(lambda: all(r.events for r in readers), "every reader has events")
            await asyncio.sleep(AROUND)
            redis.stop(signal.SIGKILL)
            await asyncio.sleep(OUTAGE)
            refused_during_outage = ledger.statuses["503"]
            redis.start()
            # Readers that come back only now, from a cursor at each channel's first event:
            # everything after it was in the log while they were away.
            late = [Delivered(c, start=1) for c in CHANNELS for _ in range(2)]
            following += [
                asyncio.create_task(
                    follow(
                        f"{BALANCER}/channels/{r.channel}/stream?window=5",
                        r,
                        first_cursor(r.channel, ledger),
                        client=subscribers_http,
                    )
                )
                for r in late
            ]
            readers += late
            await asyncio.sleep(AROUND)
            stop.set()
            await asyncio.gather(*publishing)
            await wait_for_readers(following, "every reader reached its channel's end")

    lost_and_told = 0
    for reader in readers:
        if persistent:
            assert_exactly_once(reader, ledger)
        else:
            lost_and_told += assert_told_of_loss(reader, ledger)
        assert_batches_whole(reader)
    assert refused_during_outage >= 1, "publishes during the outage were answered 503"
    # Streams open when Redis went were ended (error), or cut, not left hanging.
    assert all(r.endings["error:store_unavailable"] + r.failures for r in readers if not r.start)
    assert set(ledger.statuses) <= {"201", "503"}, ledger.statuses
    figures = delivery_figures(readers, ledger)
    if not persistent:
        # Counted as lost above: events of the old log the readers never got, each told with
        # its reader's reset; nothing was lost without a reset.
        figures["events in the log Redis lost"] = sum(
            len([e for e in ledger.acked[c] if e.epoch == ledger.acked[c][0].epoch])
            for c in CHANNELS
        )
        figures["lost (the store's, each told with reset)"] = lost_and_told
        figures["resets"] = sum(len(r.resets) for r in readers)
    report(
        f"store outage ({'with' if persistent else 'without'} persistence, Redis SIGKILLed"
        f" for {OUTAGE:.0f} s)",
        {"readers": len(readers), **figures, "seconds": clock()},
    )
