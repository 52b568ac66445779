"""The job queue contract: every backend must pass every test here.

The worker relies on exactly these behaviours: at-least-once delivery, a taken job hidden from
other takers until acknowledged, given back, or its visibility timeout passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import pytest
import redis

from serverless_sse.queues import Job, JobQueue
from serverless_sse.queues.memory import MemoryQueue
from serverless_sse.queues.redis import RedisQueue
from serverless_sse.queues.sqs import SQSQueue

REDIS_URL = "redis://127.0.0.1:6379/7"
VISIBILITY = 1.0  # SQS counts visibility in whole seconds


@dataclass
class QueueBackend:
    name: str
    open: Callable[[str], JobQueue]
    shared: bool  # two queue objects on one URL see the same jobs (two instances)
    context: Callable[[], AbstractContextManager[object]] = nullcontext


def _mock_aws() -> AbstractContextManager[object]:
    from moto import mock_aws

    return mock_aws()


def _sqs(name: str) -> JobQueue:
    return SQSQueue(f"sqs://{name}?region=us-east-1&create=true", visibility=VISIBILITY)


_shared_memory: dict[str, MemoryQueue] = {}

BACKENDS = {
    "memory": QueueBackend("memory", lambda name: MemoryQueue(visibility=VISIBILITY), False),
    "redis": QueueBackend(
        "redis", lambda name: RedisQueue(f"{REDIS_URL}?name={name}", visibility=VISIBILITY), True
    ),
    "sqs": QueueBackend("sqs", _sqs, True, _mock_aws),
}


@pytest.fixture(scope="module", autouse=True)
def clean_redis_db() -> Iterator[None]:
    yield
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[QueueBackend]:
    chosen = BACKENDS[request.param]
    with chosen.context():
        yield chosen


@pytest.fixture
async def open_queue(backend: QueueBackend) -> AsyncIterator[Callable[[], JobQueue]]:
    """Open queue objects on one fresh queue (several for a shared backend: instances)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    opened: list[JobQueue] = []

    def open_() -> JobQueue:
        queue = opened[0] if opened and not backend.shared else backend.open(name)
        opened.append(queue)
        return queue

    yield open_
    for queue in dict.fromkeys(opened):
        await queue.aclose()


@pytest.fixture
async def queue(open_queue: Callable[[], JobQueue]) -> JobQueue:
    return open_queue()


def job(n: int, **body: object) -> Job:
    return Job(f"job-{n}", "test", {"n": n, **body})


async def take_all(queue: JobQueue, *, until: int, limit: float = 10.0) -> list[Job]:
    taken: list[Job] = []
    deadline = time.monotonic() + limit
    while len(taken) < until and time.monotonic() < deadline:
        for delivery in await queue.take(limit=10, wait=1):
            taken.append(delivery.job)
            await queue.ack(delivery)
    return taken


async def test_a_job_put_is_taken_with_its_id_kind_and_body(queue: JobQueue) -> None:
    await queue.put([Job("j1", "persona_answer", {"text": "héllo 世界", "n": [1, 2]})])
    [delivery] = await queue.take(limit=5, wait=2)
    assert delivery.job == Job("j1", "persona_answer", {"text": "héllo 世界", "n": [1, 2]})
    assert delivery.attempt == 1


async def test_an_empty_queue_waits_then_answers_nothing(queue: JobQueue) -> None:
    started = time.monotonic()
    assert await queue.take(limit=1, wait=1) == []
    assert time.monotonic() - started >= 0.9


async def test_a_waiting_take_returns_a_job_put_meanwhile(
    open_queue: Callable[[], JobQueue],
) -> None:
    taker, putter = open_queue(), open_queue()
    await taker.take(limit=1, wait=0)  # let the backend set itself up
    waiting = asyncio.create_task(taker.take(limit=1, wait=10))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await putter.put([job(1)])
    deliveries = await waiting
    assert [d.job for d in deliveries] == [job(1)]
    assert time.monotonic() - started < 5


async def test_take_returns_at_most_the_limit(queue: JobQueue) -> None:
    await queue.put([job(n) for n in range(5)])
    deliveries = await queue.take(limit=2, wait=2)
    assert 1 <= len(deliveries) <= 2


async def test_every_job_is_delivered_once_when_each_is_acknowledged(queue: JobQueue) -> None:
    await queue.put([job(n) for n in range(25)])
    taken = await take_all(queue, until=25)
    assert sorted(j.body["n"] for j in taken) == list(range(25))


async def test_a_taken_job_is_hidden_from_other_takers(
    open_queue: Callable[[], JobQueue],
) -> None:
    first, second = open_queue(), open_queue()
    await first.put([job(1)])
    assert len(await first.take(limit=1, wait=2)) == 1
    assert await second.take(limit=1, wait=0.3) == []


async def test_a_job_not_acknowledged_comes_back_after_the_visibility_timeout(
    open_queue: Callable[[], JobQueue],
) -> None:
    crashed, survivor = open_queue(), open_queue()
    await crashed.put([job(1)])
    assert len(await crashed.take(limit=1, wait=2)) == 1
    again = await survivor.take(limit=1, wait=VISIBILITY + 3)
    assert [d.job for d in again] == [job(1)]
    assert again[0].attempt == 2


async def test_an_acknowledged_job_never_comes_back(queue: JobQueue) -> None:
    await queue.put([job(1)])
    [delivery] = await queue.take(limit=1, wait=2)
    await queue.ack(delivery)
    assert await queue.take(limit=1, wait=VISIBILITY + 0.3) == []


async def test_a_released_job_is_delivered_again_at_once(queue: JobQueue) -> None:
    await queue.put([job(1)])
    [delivery] = await queue.take(limit=1, wait=2)
    await queue.release(delivery)
    started = time.monotonic()
    [again] = await queue.take(limit=1, wait=VISIBILITY / 2)
    assert again.job == job(1)
    assert again.attempt == 2
    assert time.monotonic() - started < VISIBILITY


async def test_a_job_released_with_a_delay_stays_hidden_until_it_passes(queue: JobQueue) -> None:
    await queue.put([job(1)])
    [delivery] = await queue.take(limit=1, wait=2)
    await queue.release(delivery, delay=VISIBILITY)
    assert await queue.take(limit=1, wait=VISIBILITY / 2) == []
    again = await queue.take(limit=1, wait=VISIBILITY + 3)
    assert [d.job for d in again] == [job(1)]
    assert again[0].attempt == 2


async def test_two_takers_share_the_jobs_without_taking_one_twice(
    open_queue: Callable[[], JobQueue],
) -> None:
    one, two = open_queue(), open_queue()
    await one.put([job(n) for n in range(20)])
    first, second = await asyncio.gather(
        take_all(one, until=10, limit=4), take_all(two, until=10, limit=4)
    )
    rest = await take_all(one, until=20 - len(first) - len(second), limit=4)
    numbers = [j.body["n"] for j in first + second + rest]
    assert sorted(numbers) == list(range(20))
