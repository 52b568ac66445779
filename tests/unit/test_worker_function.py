"""The worker as a Lambda function invoked by SQS: a batch of records in, failures out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from functions import worker as worker_function
from serverless_sse.jobs import AnswerJobs
from serverless_sse.queues import Job
from serverless_sse.realtime import AI_ANSWER, ai_channel
from serverless_sse.responders import open_responder
from serverless_sse.settings import Settings
from serverless_sse.stores.memory import MemoryStore


def record(message_id: str, body: str) -> dict[str, str]:
    return {"messageId": message_id, "body": body, "eventSource": "aws:sqs"}


def question(request: str, **extra: object) -> str:
    body = {
        "client_id": "alice",
        "question": f"question {request}?",
        "request_id": request,
        "deadline": time.time() + 30,
        **extra,
    }
    return Job(f"ai/{request}", AI_ANSWER, body).to_json()


@dataclass
class OpenedStore:
    """The store the Lambda entry point opens, and how often it opened one."""

    store: MemoryStore = field(default_factory=MemoryStore)
    times: int = 0

    def open(self, url: str, settings: Settings) -> MemoryStore:
        self.times += 1
        return self.store


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenedStore]:
    opened = OpenedStore()
    monkeypatch.setattr(worker_function, "open_store", opened.open)
    yield opened
    worker_function.handler.close()


async def test_a_batch_is_answered_and_failed_records_are_reported() -> None:
    store = MemoryStore()
    records = [
        record("m1", question("r1")),
        record("m2", Job("ai/r2", AI_ANSWER, {"client_id": "alice"}).to_json()),  # no question
        record("m3", question("r3")),
        record("m4", "not a job"),
    ]
    settings = Settings(responder_piece_seconds=0)
    jobs = AnswerJobs(store, open_responder(settings), settings)
    result = await worker_function.handle_records(records, jobs, concurrency=4)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    found = await store.read(ai_channel("alice"), 0, limit=1000)
    completes = [json.loads(e.data) for e in found.events if e.type == "ai_complete"]
    assert sorted(c["request_id"] for c in completes) == ["r1", "r3"]


def test_the_lambda_entry_point_runs_a_batch(
    opened: OpenedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSE_RESPONDER_PIECE_SECONDS", "0")
    result = worker_function.handler({"Records": [record("m1", question("r1"))]}, None)
    assert result == {"batchItemFailures": []}


def test_invocations_of_one_container_share_its_store(
    opened: OpenedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSE_RESPONDER_PIECE_SECONDS", "0")
    for request in ("r1", "r2", "r3"):
        result = worker_function.handler({"Records": [record(request, question(request))]}, None)
        assert result == {"batchItemFailures": []}
    assert opened.times == 1
    found = asyncio.run(opened.store.read(ai_channel("alice"), 0, limit=1000))
    assert sum(1 for e in found.events if e.type == "ai_complete") == 3
