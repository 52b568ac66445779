"""AI answers on a client's channel, chat messages, and the stream's channel names."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from serverless_sse.errors import ResponderFailed, ValidationFailed
from serverless_sse.events import NewEvent
from serverless_sse.queues import Job
from serverless_sse.queues.memory import MemoryQueue
from serverless_sse.realtime import (
    Assistant,
    PieceWriter,
    ai_channel,
    post_chat_message,
    request_id,
    stream_channels,
)
from serverless_sse.responders import Prompt
from serverless_sse.responders.scripted import ScriptedResponder
from serverless_sse.stores.base import Appended
from serverless_sse.stores.memory import MemoryStore


class Scripted(ScriptedResponder):
    """The built-in responder, counting calls; it can fail or stall after some pieces."""

    def __init__(self, *, fail_after: int | None = None, stall_after: int | None = None) -> None:
        super().__init__(piece_seconds=0.001)
        self.calls = 0
        self.fail_after = fail_after
        self.stall_after = stall_after

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        self.calls += 1
        count = 0
        async for piece in super().stream(prompt):
            if count == self.fail_after:
                raise ResponderFailed("the model's stream ended before [DONE]", reason="eof")
            if count == self.stall_after:
                await asyncio.sleep(60)
            count += 1
            yield piece


class Setup:
    def __init__(self, *, timeout: float = 5.0) -> None:
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.assistant = Assistant(self.store, timeout=timeout, answer_cache_seconds=60)

    async def ask(self, question: str = "What is SSE?", request: str = "r1") -> Job:
        await self.assistant.ask(self.queue, "alice", question, request)
        [delivery] = await self.queue.take(limit=1, wait=0)
        return delivery.job

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        found = await self.store.read(ai_channel("alice"), 0, limit=1000)
        return [(e.type, json.loads(e.data)) for e in found.events]


async def test_an_answer_arrives_in_pieces_then_complete_with_the_whole_text() -> None:
    setup = Setup()
    await setup.assistant.answer(await setup.ask(), Scripted())
    events = await setup.events()
    pieces = [d for k, d in events if k == "ai_response"]
    assert len(pieces) > 10
    assert [p["index"] for p in pieces] == list(range(len(pieces)))
    assert all(p["request_id"] == "r1" and p["content"] for p in pieces)
    kind, done = events[-1]
    assert kind == "ai_complete"
    assert done["content"] == "".join(p["content"] for p in pieces)
    assert "What is SSE?" in done["content"]


async def test_a_question_asked_before_is_answered_from_the_cache() -> None:
    setup = Setup()
    responder = Scripted()
    await setup.assistant.answer(await setup.ask(request="r1"), responder)
    await setup.assistant.answer(await setup.ask(request="r2"), responder)
    assert responder.calls == 1
    completes = [d for k, d in await setup.events() if k == "ai_complete"]
    assert [c["request_id"] for c in completes] == ["r1", "r2"]
    assert completes[0]["content"] == completes[1]["content"]


async def test_a_job_delivered_twice_is_answered_once() -> None:
    setup = Setup()
    job = await setup.ask()
    responder = Scripted()
    await asyncio.gather(
        setup.assistant.answer(job, responder), setup.assistant.answer(job, responder)
    )
    await setup.assistant.answer(job, responder)
    assert responder.calls == 1
    assert [k for k, _ in await setup.events()].count("ai_complete") == 1


async def test_a_failing_responder_ends_the_answer_with_ai_error() -> None:
    setup = Setup()
    await setup.assistant.answer(await setup.ask(), Scripted(fail_after=3))
    events = await setup.events()
    assert [k for k, _ in events] == ["ai_response"] * 3 + ["ai_error"]
    assert events[-1][1]["reason"] == "eof"
    assert "[DONE]" in events[-1][1]["message"]


async def test_a_slow_answer_ends_with_ai_error_timeout_after_its_pieces() -> None:
    setup = Setup(timeout=0.3)
    await setup.assistant.answer(await setup.ask(), Scripted(stall_after=2))
    events = await setup.events()
    assert [k for k, _ in events] == ["ai_response", "ai_response", "ai_error"]
    assert events[-1][1]["reason"] == "timeout"


async def test_a_question_that_reaches_the_worker_too_late_is_not_answered() -> None:
    setup = Setup(timeout=0.05)
    job = await setup.ask()
    await asyncio.sleep(0.1)
    responder = Scripted()
    await setup.assistant.answer(job, responder)
    assert responder.calls == 0
    assert [k for k, _ in await setup.events()] == ["ai_error"]


class SlowAppendStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        self.batches.append(len(events))
        await asyncio.sleep(0.02)
        return await super().append(channel, events)


async def test_pieces_written_during_an_append_go_together_in_the_next() -> None:
    store = SlowAppendStore()
    writer = PieceWriter(store, "ai/x")
    for n in range(20):
        writer.add(NewEvent("ai_response", json.dumps({"n": n}), f"k{n}"))
        await asyncio.sleep(0.005)
    await writer.finish([NewEvent("ai_complete", "{}")])
    assert store.batches[0] == 1  # the first piece went alone, at once
    assert len(store.batches) < 10
    found = await store.read("ai/x", 0, limit=100)
    assert [json.loads(e.data).get("n") for e in found.events] == [*range(20), None]


async def test_a_chat_message_is_appended_once_per_message_id() -> None:
    store = MemoryStore()
    message, seq, _, repeated = await post_chat_message(store, "alice", "hi all", "m1")
    assert (message["client_id"], message["text"], message["id"]) == ("alice", "hi all", "m1")
    _, again_seq, _, again = await post_chat_message(store, "alice", "hi all", "m1")
    assert not repeated and again and again_seq == seq
    assert (await store.state("chat")).last_seq == 1


def test_stream_names_map_to_channels_with_the_client_s_own_ai_channel() -> None:
    assert stream_channels(["ai", "votes"], "bob") == ["votes", "ai/bob"]
    assert stream_channels(["votes", "chat", "ai"], "bob") == ["votes", "chat", "ai/bob"]
    with pytest.raises(ValidationFailed):
        stream_channels(["votes", "news"], "bob")


def test_a_request_id_repeats_only_for_the_same_idempotency_key() -> None:
    assert request_id("ai/a", "k1") == request_id("ai/a", "k1")
    assert request_id("ai/a", "k1") != request_id("ai/b", "k1")
    assert request_id("ai/a", None) != request_id("ai/a", None)
