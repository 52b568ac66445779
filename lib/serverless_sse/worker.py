"""The worker: takes jobs from a queue and runs them, a bounded number at once.

It runs inside the web process (a local run), as its own process (``python -m
functions.worker``), or not at all where the platform delivers jobs itself (SQS invoking a
Lambda function, which calls :func:`run_jobs`). Handlers must be idempotent: delivery is at
least once.

A handler that returns has done its job (it reports its own failures, as events); one that
raises hit something it could not report (the store is down, a bug), so the job is given back
and tried again a little later, up to ``max_attempts`` deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from .errors import SSEError
from .queues.base import Delivery, Job, JobQueue

__all__ = ["Handler", "Worker", "run_jobs"]

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]


class Worker:
    """Runs jobs from ``queue`` through ``handle``, at most ``concurrency`` at once."""

    def __init__(
        self,
        queue: JobQueue,
        handle: Handler,
        *,
        concurrency: int,
        poll: float = 10.0,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.handle = handle
        self.concurrency = concurrency
        self.poll = poll
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.done = 0
        """Jobs that ran to completion."""
        self.retried = 0
        """Deliveries given back after their handler raised."""
        self.dropped = 0
        """Jobs given up after ``max_attempts`` deliveries."""

    async def run(self) -> None:
        """Take and run jobs until cancelled. Jobs still running are cancelled with it and,
        never acknowledged, are delivered again (to this process later, or to another)."""
        running: set[asyncio.Task[None]] = set()
        backoff = 0.1
        try:
            while True:
                if len(running) >= self.concurrency:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self.queue.take(
                        limit=self.concurrency - len(running), wait=self.poll
                    )
                except SSEError as exc:
                    log.warning("worker: the queue failed (%s); retrying", exc.detail)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                for delivery in deliveries:
                    task = asyncio.create_task(self.process(delivery), name=delivery.job.id)
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*running, return_exceptions=True)

    async def process(self, delivery: Delivery) -> None:
        """Run one delivery; acknowledge it, or give it back to be tried again."""
        job = delivery.job
        try:
            await self.handle(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(delivery, exc)
            return
        self.done += 1
        await self._settle(self.queue.ack(delivery))

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        job = delivery.job
        if delivery.attempt >= self.max_attempts:
            log.error(
                "worker: dropping job %s (%s) after %d attempts",
                job.id,
                job.kind,
                delivery.attempt,
                exc_info=exc,
            )
            self.dropped += 1
            await self._settle(self.queue.ack(delivery))
            return
        log.warning(
            "worker: job %s (%s) failed on attempt %d: %r; retrying",
            job.id,
            job.kind,
            delivery.attempt,
            exc,
        )
        self.retried += 1
        await self._settle(self.queue.release(delivery, delay=self.retry_delay * delivery.attempt))

    @staticmethod
    async def _settle(call: Awaitable[None]) -> None:
        # Not acknowledged (the queue is down): the job comes back after its visibility
        # timeout, and the handler's idempotency makes the repeat harmless.
        try:
            await call
        except SSEError as exc:
            log.warning("worker: could not settle a job: %s", exc.detail)


async def run_jobs(jobs: Sequence[Job], handle: Handler, *, concurrency: int) -> list[int]:
    """Run ``jobs`` (a batch the platform delivered), at most ``concurrency`` at once.

    Returns the indexes of the jobs whose handler raised, for the platform to deliver again
    (SQS's partial batch response).
    """
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int, job: Job) -> int | None:
        async with slots:
            try:
                await handle(job)
            except Exception:
                log.exception("worker: job %s (%s) failed", job.id, job.kind)
                return index
            return None

    results = await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
    return [i for i in results if i is not None]
