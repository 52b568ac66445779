"""The worker, driven in-process against the memory queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from serverless_sse.errors import QueueUnavailable
from serverless_sse.jobs import worker_of
from serverless_sse.queues import Delivery, Job
from serverless_sse.queues.memory import MemoryQueue
from serverless_sse.realtime import Assistant
from serverless_sse.responders import Prompt, Responder
from serverless_sse.service import Service
from serverless_sse.settings import Settings
from serverless_sse.worker import Worker, run_jobs


def jobs(n: int) -> list[Job]:
    return [Job(f"j{i}", "test", {"n": i}) for i in range(n)]


class Recorder:
    """A handler that records what ran, how many ran at once, and can fail on purpose."""

    def __init__(self, *, seconds: float = 0.0, failures: dict[str, int] | None = None) -> None:
        self.seconds = seconds
        self.failures = dict(failures or {})
        self.ran: list[str] = []
        self.now = 0
        self.most = 0
        self.finished = asyncio.Event()
        self.expected = 0

    async def __call__(self, job: Job) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.seconds)
            if self.failures.get(job.id, 0) > 0:
                self.failures[job.id] -= 1
                raise RuntimeError(f"{job.id} failed on purpose")
            self.ran.append(job.id)
            if len(self.ran) >= self.expected:
                self.finished.set()
        finally:
            self.now -= 1


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    for _ in range(int(limit / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came true")


async def run_until(worker: Worker, recorder: Recorder, expected: int) -> None:
    recorder.expected = expected
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            await recorder.finished.wait()
        await asyncio.sleep(0.05)  # let the last acknowledgement land
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_every_job_runs_once_and_is_acknowledged() -> None:
    queue = MemoryQueue()
    await queue.put(jobs(10))
    recorder = Recorder()
    worker = Worker(queue, recorder, concurrency=3, poll=0.2)
    await run_until(worker, recorder, 10)
    assert sorted(recorder.ran) == sorted(j.id for j in jobs(10))
    assert len(queue) == 0
    assert worker.done == 10


async def test_no_more_than_the_concurrency_run_at_once_and_all_of_it_is_used() -> None:
    queue = MemoryQueue()
    await queue.put(jobs(12))
    recorder = Recorder(seconds=0.05)
    await run_until(Worker(queue, recorder, concurrency=4, poll=0.2), recorder, 12)
    assert recorder.most == 4


async def test_a_concurrency_of_one_runs_jobs_one_after_another() -> None:
    queue = MemoryQueue()
    await queue.put(jobs(4))
    recorder = Recorder(seconds=0.02)
    await run_until(Worker(queue, recorder, concurrency=1, poll=0.2), recorder, 4)
    assert recorder.most == 1


async def test_a_job_whose_handler_raises_is_tried_again() -> None:
    queue = MemoryQueue()
    await queue.put(jobs(1))
    recorder = Recorder(failures={"j0": 2})
    worker = Worker(queue, recorder, concurrency=2, poll=0.2, retry_delay=0.01)
    await run_until(worker, recorder, 1)
    assert recorder.ran == ["j0"]
    assert worker.retried == 2
    assert len(queue) == 0


async def test_a_job_that_keeps_failing_is_dropped_after_the_last_attempt() -> None:
    queue = MemoryQueue()
    await queue.put(jobs(2))
    recorder = Recorder(failures={"j0": 99})
    worker = Worker(queue, recorder, concurrency=2, poll=0.2, max_attempts=3, retry_delay=0.01)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: worker.dropped == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.ran == ["j1"]
    assert worker.retried == 2
    assert len(queue) == 0


async def test_jobs_running_when_the_worker_stops_come_back_for_the_next_one() -> None:
    queue = MemoryQueue(visibility=0.2)
    await queue.put(jobs(2))
    slow = Recorder(seconds=10)
    first = asyncio.create_task(Worker(queue, slow, concurrency=2, poll=0.1).run())
    await eventually(lambda: slow.most == 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert slow.ran == []
    recorder = Recorder()
    await run_until(Worker(queue, recorder, concurrency=2, poll=0.1), recorder, 2)
    assert sorted(recorder.ran) == ["j0", "j1"]


class FlakyQueue(MemoryQueue):
    """Fails its first takes, as a queue that is briefly unreachable does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            raise QueueUnavailable("down for a moment")
        return await super().take(limit=limit, wait=wait)


async def test_the_worker_keeps_going_when_the_queue_fails_for_a_while() -> None:
    queue = FlakyQueue(failures=3)
    await queue.put(jobs(3))
    recorder = Recorder()
    await run_until(Worker(queue, recorder, concurrency=2, poll=0.1), recorder, 3)
    assert sorted(recorder.ran) == ["j0", "j1", "j2"]


async def test_a_worker_needs_a_concurrency_of_at_least_one() -> None:
    with pytest.raises(ValueError):
        Worker(MemoryQueue(), Recorder(), concurrency=0)


async def test_a_delivered_batch_reports_which_jobs_failed() -> None:
    recorder = Recorder(failures={"j1": 1, "j3": 1})
    batch: Sequence[Job] = jobs(5)
    failed = await run_jobs(batch, recorder, concurrency=2)
    assert failed == [1, 3]
    assert sorted(recorder.ran) == ["j0", "j2", "j4"]
    assert recorder.most <= 2


# -- the service's worker, as configured ------------------------------------------------------


class GatedResponder(Responder):
    """Holds every answer until its gate opens; counts the answers written at once."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.now = 0
        self.most = 0
        self.done = 0

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.gate.wait()
            yield f"about {prompt.message}"
            self.done += 1
        finally:
            self.now -= 1


@pytest.mark.parametrize(
    ("variable", "concurrency"), [("AI_WORKER_CONCURRENCY", 3), ("SSE_AI_WORKER_CONCURRENCY", 2)]
)
async def test_the_worker_concurrency_setting_reaches_the_service_s_worker(
    monkeypatch: pytest.MonkeyPatch, variable: str, concurrency: int
) -> None:
    monkeypatch.setenv(variable, str(concurrency))  # not the default (4)
    settings = Settings()
    service = Service.from_settings(settings)
    responder = GatedResponder()
    assistant = Assistant.from_settings(service.store, settings)
    for n in range(8):
        await assistant.ask(service.queue, f"c{n}", f"question {n}", f"r{n}")
    task = asyncio.create_task(worker_of(service, responder).run())
    try:
        await eventually(lambda: responder.now == concurrency)  # the others wait their turn
        responder.gate.set()
        await eventually(lambda: responder.done == 8)
        assert responder.most == concurrency
        for n in range(8):
            logged = await service.store.read(f"ai/c{n}", 0, limit=10)
            assert [e.type for e in logged.events] == ["ai_response", "ai_complete"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await service.aclose()
