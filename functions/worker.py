"""The answer worker on its own: ``python -m functions.worker`` (a process taking jobs from
``SSE_QUEUE``), and ``handler`` (an AWS Lambda function that SQS invokes with batches).

Run it beside web processes started with ``SSE_WORKER=off``, on a shared store and queue
(``SSE_STORE=redis://…``, ``SSE_QUEUE=redis://…`` or ``sqs://…``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from serverless_sse.jobs import AnswerJobs, run_worker
from serverless_sse.lambda_handler import ContainerLoop
from serverless_sse.queues import Job
from serverless_sse.responders import Responder, open_responder
from serverless_sse.service import Service
from serverless_sse.settings import Settings
from serverless_sse.stores import EventStore, open_store
from serverless_sse.worker import run_jobs

log = logging.getLogger("functions.worker")


async def main(settings: Settings | None = None) -> None:
    """Take and answer jobs until SIGTERM or SIGINT."""
    service = Service.from_settings(settings or Settings())
    task = asyncio.create_task(run_worker(service))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await service.aclose()


async def handle_records(
    records: list[dict[str, Any]], jobs: AnswerJobs, *, concurrency: int
) -> dict[str, Any]:
    """Answer the jobs of an SQS event; the ones that failed go back (partial batch response).

    A record that is not a job is dropped (logged), not returned: it would fail forever.
    """
    batch: list[Job] = []
    ids: list[str] = []
    for record in records:
        try:
            batch.append(Job.from_json(record["body"]))
        except (KeyError, ValueError):
            log.warning("dropping SQS message %s: not a job", record.get("messageId"))
            continue
        ids.append(record["messageId"])
    failed = await run_jobs(batch, jobs, concurrency=concurrency)
    return {"batchItemFailures": [{"itemIdentifier": ids[i]} for i in failed]}


class WorkerFunction:
    """The worker as an AWS Lambda function that SQS invokes with batches (with
    ``ReportBatchItemFailures``). The store and the responder are made on the container's
    first invocation and kept for the next ones, on the container's one event loop."""

    def __init__(self) -> None:
        self._container = ContainerLoop()
        self._opened: tuple[AnswerJobs, EventStore, Responder, int] | None = None

    def __call__(self, event: dict[str, Any], context: object) -> dict[str, Any]:
        return self._container.run(self._handle(event.get("Records", [])))

    async def _handle(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if self._opened is None:
            settings = Settings()
            store, responder = open_store(settings.store, settings), open_responder(settings)
            jobs = AnswerJobs(store, responder, settings)
            self._opened = (jobs, store, responder, settings.ai_worker_concurrency)
        jobs, _, _, concurrency = self._opened
        return await handle_records(records, jobs, concurrency=concurrency)

    def close(self) -> None:
        """Close the store and the responder, as a container that ends would (tests)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            _, store, responder, _ = opened
            self._container.run(responder.aclose())
            self._container.run(store.aclose())
        self._container.close()


handler = WorkerFunction()
"""The Lambda entry point (``functions.worker.handler``)."""


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
