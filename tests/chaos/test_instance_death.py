"""Instance death: processes killed with SIGKILL while they stream and publish.

Three uvicorn processes share a Redis of this test's own. Subscribers (200 by default), with
the project's own reconnecting client, follow ten channels through a round-robin balancer with
short windows; one publisher per channel publishes at a steady rate, with idempotency keys,
retrying every failure on another process. Every few seconds one process is killed with
SIGKILL (no cleanup, connections cut mid-stream) and started again on its port.

Proves: at the end every subscriber has every acknowledged event of its channel exactly once,
in order, with no ``reset``; every kill was survived. A failure shows as a missing, repeated or
misordered event (named with its channel and key), a publish answered other than 201/503, a
reader that never reached its channel's ``end`` event, or an unexpected ``reset``.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from serverless_sse.client import Backoff
from tests.chaos.harness import (
    BALANCER,
    Delivered,
    Fleet,
    Ledger,
    Stopwatch,
    assert_exactly_once,
    balanced_client,
    delivery_figures,
    follow,
    publish_steadily,
    report,
    setting,
    time_limit,
    wait_for_readers,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.chaos

SECONDS = setting("KILL_SECONDS", 24, 180)
KILL_EVERY = setting("KILL_EVERY", 3, 3)
SUBSCRIBERS = int(setting("SUBSCRIBERS", 200, 200))
CHANNELS = 10
RATE = 2.0  # events a second per channel
WINDOW = 4  # seconds (jittered ±10 %)


@pytest.mark.timeout(time_limit(SECONDS))
async def test_every_subscriber_gets_every_event_once_in_order_while_processes_are_killed(
    redis: RedisServer,
) -> None:
    env = {
        "SSE_STORE": redis.url(0),
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_REDIS_TIMEOUT_SECONDS": "2",
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "WARNING",
    }
    clock = Stopwatch()
    with Fleet(env, 3) as fleet:
        channels = [f"death/{n}" for n in range(CHANNELS)]
        ledger = Ledger()
        stop = asyncio.Event()
        readers = [Delivered(channels[n % CHANNELS]) for n in range(SUBSCRIBERS)]
        async with (
            balanced_client(fleet.live, connections=SUBSCRIBERS + 50) as subscribers_http,
            balanced_client(fleet.live, connections=50) as publishers_http,
        ):
            cursors = {}
            for channel in channels:  # an empty channel's cursor: resume from its first event
                answer = await publishers_http.get(f"/channels/{channel}/events")
                cursors[channel] = answer.json()["cursor"]
            following = [
                asyncio.create_task(
                    follow(
                        f"{BALANCER}/channels/{r.channel}/stream?window={WINDOW}",
                        r,
                        cursors[r.channel],
                        client=subscribers_http,
                        backoff=Backoff(initial=0.05, maximum=1.0),
                        http_timeout=httpx.Timeout(10.0, read=20.0),
                    )
                )
                for r in readers
            ]
            publishing = [
                asyncio.create_task(publish_steadily(publishers_http, c, ledger, stop, rate=RATE))
                for c in channels
            ]
            victims = itertools.cycle(range(3))
            loop = asyncio.get_running_loop()
            ends = loop.time() + SECONDS
            while loop.time() < ends:
                await asyncio.sleep(KILL_EVERY)
                victim = next(victims)
                await fleet.kill(victim)
                await asyncio.sleep(0.5)  # clients meet the dead process meanwhile
                await fleet.restart(victim)
            stop.set()
            await asyncio.gather(*publishing)
            await wait_for_readers(following, "every subscriber reached its channel's end")
            routed = subscribers_http._transport.routed  # type: ignore[attr-defined]

    for reader in readers:
        assert_exactly_once(reader, ledger)
    assert fleet.kills >= 1
    figures = delivery_figures(readers, ledger)
    report(
        "instance death (SIGKILL and restart)",
        {
            "processes": 3,
            "subscribers": SUBSCRIBERS,
            "channels": CHANNELS,
            "kills survived": fleet.kills,
            **figures,
            "stream requests per process": sorted(routed.values()),
            "seconds": clock(),
        },
    )
    assert figures["reader connection failures"] > 0  # the kills did cut streams
