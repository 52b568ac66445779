"""DynamoDB throttling and errors: the service on a DynamoDB endpoint that throttles, fails
and loses answers at random, under steady publishing and live readers.

A uvicorn process uses moto's server through a fault-injecting proxy (tests/faults.py): each
request may be throttled (``ProvisionedThroughputExceededException``; a transaction cancelled
with ``ThrottlingError``), fail with 500, or be carried out with its answer lost (500, or the
connection dropped). Publishers send three kinds of publish in turn: a keyed event (a
transaction; retried with its key until acknowledged), an unkeyed event (one conditional put)
and an unkeyed batch of two (a transaction); the unkeyed ones are not retried by the publisher
(it cannot know whether they were stored), so only botocore's and the store's retries act.
Readers use the project's client, which resumes after every ``error``.

Proves: the faults were injected and retried, every read and write path recovered, and the log
every reader sees is gap-free (1, 2, 3 …), holds no event twice (a retried write whose first
attempt landed is not appended again), holds every acknowledged event, and nothing that was
never published, in publish order. A failure shows as a duplicated key, a gap, a missing
acknowledged event, or readers that disagree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from serverless_sse.stores.dynamodb import create_table
from tests.chaos.harness import (
    Delivered,
    Fleet,
    Ledger,
    Stopwatch,
    delivery_figures,
    duplicates,
    event,
    follow,
    publish,
    report,
    setting,
    time_limit,
    wait_for_readers,
)
from tests.faults import DynamoDBFaults, RandomFaults
from tests.servers import MotoServer

pytestmark = pytest.mark.chaos

SECONDS = setting("DYNAMODB_SECONDS", 12, 90)
REGION = "us-east-1"
CHANNELS = ("ddb/a", "ddb/b")
READERS_PER_CHANNEL = 3
RATES = {
    "PutItem": {"throttle": 0.1, "error": 0.05, "lost_answer": 0.08, "drop": 0.04},
    "TransactWriteItems": {
        "transaction_throttle": 0.1,
        "throttle": 0.05,
        "error": 0.05,
        "lost_answer": 0.08,
        "drop": 0.03,
    },
    "Query": {"throttle": 0.05, "error": 0.05},
    "GetItem": {"throttle": 0.05, "error": 0.05},
    "BatchGetItem": {"error": 0.05},
}

# Every kind of fault once on each write path first (a forwarded request between two faults, so
# that one publish meets them one at a time), then the random ones above.
FIRST = {
    "PutItem": ["lost_answer", None, "drop", None, "throttle", None, "error"],
    "TransactWriteItems": [
        "lost_answer",
        None,
        "transaction_throttle",
        None,
        "drop",
        None,
        "error",
    ],
}


@pytest.fixture
async def faults(moto_server: MotoServer) -> AsyncIterator[DynamoDBFaults]:
    plan = RandomFaults(RATES, seed=int(setting("SEED", 3, 3)), first=FIRST)
    async with DynamoDBFaults(moto_server.endpoint_url, plan) as proxy:
        yield proxy


async def publish_kinds(
    http: httpx.AsyncClient, base: str, channel: str, ledger: Ledger, stop: asyncio.Event
) -> None:
    """Keyed event, unkeyed event, unkeyed batch of two, in turn; then the ``end`` event."""
    n = 0
    while not stop.is_set():
        kind = n % 3
        if kind == 0:
            batch = [event(f"{channel}#{n}", n=n)]
        elif kind == 1:
            batch = [event(f"{channel}#{n}", n=n, keyed=False)]
        else:
            batch = [event(f"{channel}#{n}.{i}", n=n, keyed=False) for i in range(2)]
        await publish(http, channel, ledger, batch, retry=kind == 0, base=base)
        n += 1
        await asyncio.sleep(0.3)
    await publish(http, channel, ledger, [event(f"{channel}#end", type="end")], base=base)


def order(key: str) -> tuple[int, str]:
    number = key.rpartition("#")[2]
    return (10**9, "") if number == "end" else (int(number.partition(".")[0]), number)


@pytest.mark.timeout(time_limit(SECONDS))
async def test_throttling_and_errors_are_retried_and_nothing_is_appended_twice(
    moto_server: MotoServer, faults: DynamoDBFaults
) -> None:
    table = f"sse-chaos-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(
        create_table, table, region=REGION, endpoint_url=moto_server.endpoint_url
    )
    env = {
        "SSE_STORE": f"dynamodb://{table}?region={REGION}&endpoint_url={faults.url}",
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_DYNAMODB_POLL_MIN_SECONDS": "0.2",
        "SSE_DYNAMODB_POLL_MAX_SECONDS": "0.5",
        "SSE_WORKER": "off",
        "SSE_LOG_LEVEL": "ERROR",
    }
    clock = Stopwatch()
    with Fleet(env, 1) as fleet:
        (base,) = fleet.live()
        ledger = Ledger(strict=False)
        stop = asyncio.Event()
        readers = [Delivered(c) for c in CHANNELS for _ in range(READERS_PER_CHANNEL)]
        async with httpx.AsyncClient(timeout=60) as http:
            cursors = {}
            for channel in CHANNELS:
                for _ in range(50):  # the first read may meet a fault too
                    answer = await http.get(f"{base}/channels/{channel}/events")
                    if answer.status_code == 200:
                        cursors[channel] = answer.json()["cursor"]
                        break
                    await asyncio.sleep(0.1)
            following = [
                asyncio.create_task(
                    follow(f"{base}/channels/{r.channel}/stream?window=5", r, cursors[r.channel])
                )
                for r in readers
            ]
            publishing = [
                asyncio.create_task(publish_kinds(http, base, c, ledger, stop)) for c in CHANNELS
            ]
            await asyncio.sleep(SECONDS)
            stop.set()
            await asyncio.gather(*publishing)
            await wait_for_readers(following, "every reader reached its channel's end")

    for reader in readers:
        acked = {e.key for e in ledger.acked[reader.channel]}
        unknown = set(ledger.unknown.get(reader.channel, []))
        keys = [e.key for e in reader.events]
        assert duplicates(reader.events) == 0 and len(set(keys)) == len(keys), "appended twice"
        assert [e.seq for e in reader.events] == list(range(1, len(keys) + 1)), "a gap"
        assert len({e.epoch for e in reader.events}) == 1
        assert acked <= set(keys), f"acknowledged but never delivered: {acked - set(keys)}"
        assert set(keys) <= acked | unknown, "delivered but never published"
        assert keys == sorted(keys, key=order), "not in publish order"
        same = [r.events for r in readers if r.channel == reader.channel]
        assert all(events == reader.events for events in same), "readers disagree"
    injected = {f"{op} {fault}": count for (op, fault), count in sorted(faults.injected.items())}
    kinds = {fault for _, fault in faults.injected}
    assert kinds == {"throttle", "transaction_throttle", "error", "lost_answer", "drop"}
    assert faults.retried["PutItem"] and faults.retried["TransactWriteItems"]
    figures = delivery_figures(readers, ledger)
    report(
        "DynamoDB throttling, 5xx and lost answers (fault-injecting proxy before moto)",
        {
            "readers": len(readers),
            **figures,
            "duplicated": sum(duplicates(r.events) for r in readers),
            "unacknowledged unkeyed publishes (stored or not, never twice)": sum(
                len(v) for v in ledger.unknown.values()
            ),
            "of which stored": sum(
                len(set(ledger.unknown.get(c, [])) & {e.key for e in readers[i].events})
                for i, c in enumerate(r.channel for r in readers)
                if i % READERS_PER_CHANNEL == 0
            ),
            "faults injected": injected,
            "requests retried by botocore": dict(sorted(faults.retried.items())),
            "requests forwarded": sum(faults.forwarded.values()),
            "seconds": clock(),
        },
    )
