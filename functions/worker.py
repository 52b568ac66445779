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
from serverless_sse.queues import Job
from serverless_sse.responders import open_responder
from serverless_sse.service import Service
from serverless_sse.settings import Settings
from serverless_sse.stores import open_store
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
    records: list[dict[str, Any]], settings: Settings | None = None
) -> dict[str, Any]:
    """Answer the jobs of an SQS event; the ones that failed go back (partial batch response).

    A record that is not a job is dropped (logged), not returned: it would fail forever.
    """
    settings = settings or Settings()
    store = open_store(settings.store, settings)
    responder = open_responder(settings)
    jobs: list[Job] = []
    ids: list[str] = []
    for record in records:
        try:
            jobs.append(Job.from_json(record["body"]))
        except (KeyError, ValueError):
            log.warning("dropping SQS message %s: not a job", record.get("messageId"))
            continue
        ids.append(record["messageId"])
    try:
        handle = AnswerJobs(store, responder, settings)
        failed = await run_jobs(jobs, handle, concurrency=settings.ai_worker_concurrency)
    finally:
        await responder.aclose()
        await store.aclose()
    return {"batchItemFailures": [{"itemIdentifier": ids[i]} for i in failed]}


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point for an SQS event source (with ReportBatchItemFailures)."""
    return asyncio.run(handle_records(event.get("Records", [])))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
