"""The answer worker's job handler, and the worker as background work of the web process.

Two kinds of jobs, both answered by the configured responder: ``persona_answer`` (one persona
in a group-chat exchange, :mod:`serverless_sse.groupchat`) and ``ai_answer`` (a client's
question, :mod:`serverless_sse.realtime`).
"""

from __future__ import annotations

import logging

from .groupchat import PERSONA_ANSWER, GroupChat
from .queues.base import Job
from .realtime import AI_ANSWER, Assistant
from .responders import Responder, open_responder
from .service import Service
from .settings import Settings
from .stores.base import EventStore
from .worker import Worker

__all__ = ["AnswerJobs", "in_process_worker", "run_worker", "worker_of"]

log = logging.getLogger(__name__)


class AnswerJobs:
    """Runs an answer job by its kind. A job of an unknown kind is logged and dropped."""

    def __init__(self, store: EventStore, responder: Responder, settings: Settings) -> None:
        self.responder = responder
        self.group_chat = GroupChat.from_settings(store, settings)
        self.assistant = Assistant.from_settings(store, settings)

    async def __call__(self, job: Job) -> None:
        if job.kind == PERSONA_ANSWER:
            await self.group_chat.answer(job, self.responder)
        elif job.kind == AI_ANSWER:
            await self.assistant.answer(job, self.responder)
        else:
            log.warning("dropping job %s of unknown kind %r", job.id, job.kind)


def worker_of(service: Service, responder: Responder) -> Worker:
    """A worker taking the service's queue, as configured (``SSE_AI_WORKER_CONCURRENCY``…)."""
    settings = service.settings
    return Worker(
        service.queue,
        AnswerJobs(service.store, responder, settings),
        concurrency=settings.ai_worker_concurrency,
        poll=settings.queue_poll_seconds,
        max_attempts=settings.queue_max_attempts,
    )


async def run_worker(service: Service) -> None:
    """The worker with the configured responder, until cancelled."""
    responder = open_responder(service.settings)
    try:
        await worker_of(service, responder).run()
    finally:
        await responder.aclose()


async def in_process_worker(service: Service) -> None:
    """The worker as background work of the web process, unless ``SSE_WORKER=off`` (the
    worker runs elsewhere: ``python -m functions.worker``, or SQS invoking a function)."""
    if service.settings.worker == "in-process":
        await run_worker(service)
