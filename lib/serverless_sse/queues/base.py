"""The one interface every job queue implements, and the values it speaks in.

A queue carries :class:`Job` s from the request that creates them to a worker that may run in
another process or on another machine. Delivery is *at least once*: a job taken and not
acknowledged within the visibility timeout (its worker died, or gave it back) is delivered
again, so workers make jobs idempotent (every job has an ``id`` for that). Order is not
promised (SQS standard queues do not keep it).

``tests/contract/test_queue_contract.py`` is the executable form of this contract and runs
against every backend.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delivery", "Job", "JobQueue"]


@dataclass(frozen=True, slots=True)
class Job:
    """Work to do: ``kind`` says which handler runs it, ``body`` is its JSON-able input.

    ``id`` identifies the work, not the message: a job enqueued twice (a retried request) has
    the same id, and the worker computes it once.
    """

    id: str
    kind: str
    body: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "kind": self.kind, "body": self.body},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        """Parse a job; raises ``ValueError`` for anything that is not one."""
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("a job is a JSON object")
        job_id, kind, body = value.get("id"), value.get("kind"), value.get("body", {})
        if not isinstance(job_id, str) or not isinstance(kind, str) or not isinstance(body, dict):
            raise ValueError("a job has a string id and kind and an object body")
        return cls(job_id, kind, body)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job as one worker received it: ``receipt`` acknowledges it, ``attempt`` counts
    deliveries (1 the first time).

    A receipt may outlive its delivery (on Redis it is the entry's id, the same for every
    delivery of a job), so the visibility timeout must exceed the longest a job can run: a
    worker that acknowledges after its job was redelivered acknowledges the redelivery too.
    """

    job: Job
    receipt: str
    attempt: int = 1


class JobQueue(ABC):
    """Jobs in, jobs out, each acknowledged when done or given back to be tried again.

    Every method raises :class:`~serverless_sse.errors.QueueUnavailable` when the backend
    cannot be reached.
    """

    #: The URL scheme this backend is chosen by (``memory``, ``redis``, ``sqs``).
    scheme: str = ""

    @abstractmethod
    async def put(self, jobs: Sequence[Job]) -> None:
        """Enqueue jobs (all of them, or raise having enqueued none where the backend can
        promise that; SQS batches may be partly sent, and their jobs are idempotent anyway)."""

    @abstractmethod
    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        """Up to ``limit`` jobs, waiting up to ``wait`` seconds for the first one.

        A job taken is invisible to every other taker until it is acknowledged, given back, or
        its visibility timeout passes.
        """

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """The job is done: it is never delivered again."""

    @abstractmethod
    async def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        """Give a job back, to be delivered again after ``delay`` seconds (at most the
        visibility timeout: a longer delay may be cut to it)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release connections and threads."""
