"""Graceful shutdown: a rolling restart, every process stopped with SIGTERM in turn, as a
platform stops instances (a deploy, a scale-in, Lambda recycling an environment).

Three uvicorn processes share a Redis of this test's own. Subscribers, with the project's own
client through a round-robin balancer, follow four channels with windows of 300 s (longer
than the whole test: any stream that ends before, ended because its process stopped); a
publisher per channel publishes steadily. Each process in turn gets SIGTERM, must exit (a hang
fails after 60 s), and is started again.

Proves: a stopping process ends every open stream with ``timeout`` (reason
``server_shutdown``) and its cursor, instead of holding it until its window ends; clients
resume on another process without ever seeing a failure (no cut connection, no refused
request); every subscriber gets every event exactly once, in order. A failure shows as a
process that does not exit, a client that saw its connection cut, or a lost or repeated event.
"""

from __future__ import annotations

import asyncio
import signal

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

ROUNDS = int(setting("RESTART_ROUNDS", 1, 5))
SUBSCRIBERS = int(setting("RESTART_SUBSCRIBERS", 60, 200))
CHANNELS = 4


@pytest.mark.timeout(time_limit(ROUNDS * 3 * 10))
async def test_a_rolling_restart_ends_streams_with_timeout_and_no_client_sees_a_failure(
    redis: RedisServer,
) -> None:
    env = {
        "SSE_STORE": redis.url(0),
        "SSE_WINDOW_SECONDS": "300",
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_RETRY_MS": "100",
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "WARNING",
    }
    clock = Stopwatch()
    exit_codes = []
    with Fleet(env, 3) as fleet:
        channels = [f"rolling/{n}" for n in range(CHANNELS)]
        ledger = Ledger()
        stop = asyncio.Event()
        readers = [Delivered(channels[n % CHANNELS]) for n in range(SUBSCRIBERS)]
        async with (
            balanced_client(fleet.live, connections=SUBSCRIBERS + 20) as subscribers_http,
            balanced_client(fleet.live, connections=20) as publishers_http,
        ):
            cursors = {
                c: (await publishers_http.get(f"/channels/{c}/events")).json()["cursor"]
                for c in channels
            }
            following = [
                asyncio.create_task(
                    follow(
                        f"{BALANCER}/channels/{r.channel}/stream",
                        r,
                        cursors[r.channel],
                        client=subscribers_http,
                        backoff=Backoff(initial=0.05, maximum=1.0),
                    )
                )
                for r in readers
            ]
            publishing = [
                asyncio.create_task(publish_steadily(publishers_http, c, ledger, stop, rate=4))
                for c in channels
            ]
            await asyncio.sleep(2)
            for _ in range(ROUNDS):
                for index in range(3):
                    exit_codes.append(await fleet.terminate(index))
                    await fleet.restart(index)
                    await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*publishing)
            await wait_for_readers(following, "every subscriber reached its channel's end")

    for reader in readers:
        assert_exactly_once(reader, ledger)
    assert set(exit_codes) <= {0, -signal.SIGTERM}
    failures = sum(r.failures for r in readers)
    assert failures == 0, f"clients saw {failures} failed connections"
    shutdowns = sum(r.endings["timeout:server_shutdown"] for r in readers)
    assert shutdowns >= fleet.terminations
    assert sum(r.endings["timeout:window_elapsed"] for r in readers) == 0
    report(
        "graceful shutdown (rolling restart, SIGTERM)",
        {
            "processes": 3,
            "subscribers": SUBSCRIBERS,
            "SIGTERMs": fleet.terminations,
            "streams ended with timeout:server_shutdown": shutdowns,
            **delivery_figures(readers, ledger),
            "seconds": clock(),
        },
    )
