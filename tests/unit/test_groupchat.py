"""Group-chat exchanges, request side and worker side, on the memory store and queue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from serverless_sse.errors import ResponderFailed
from serverless_sse.groupchat import GroupChat, ends_exchange, of_exchange
from serverless_sse.personas import DEFAULT_PERSONAS, Persona
from serverless_sse.queues import Job
from serverless_sse.queues.memory import MemoryQueue
from serverless_sse.responders import Prompt, Responder
from serverless_sse.responders.scripted import ScriptedResponder
from serverless_sse.rooms import Room, room_channel
from serverless_sse.stores.memory import MemoryStore

ROOM = Room("lobby", "Lobby", DEFAULT_PERSONAS, 0.0)
CHANNEL = room_channel("lobby")


class CountingResponder(ScriptedResponder):
    """The built-in responder, counting answers; personas named in ``failing`` fail and those
    in ``slow`` take ``slow_seconds`` first."""

    def __init__(self, *, failing: set[str] | None = None, slow_seconds: float = 0) -> None:
        super().__init__(piece_seconds=0)
        self.calls: list[str] = []
        self.failing = failing or set()
        self.slow_seconds = slow_seconds

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        self.calls.append(prompt.persona.name)
        if self.slow_seconds:
            await asyncio.sleep(self.slow_seconds)
        if prompt.persona.name in self.failing:
            raise ResponderFailed("the model answered 500: overloaded", reason="upstream_status")
        async for piece in super().stream(prompt):
            yield piece


class Setup:
    def __init__(self, *, timeout: float = 5.0) -> None:
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.chat = GroupChat(self.store, timeout=timeout, exp_per_answer=5)

    async def start(self, message: str = "hello!", exchange: str = "x1") -> list[Job]:
        await self.chat.start(
            self.queue, ROOM, message=message, sender="user_123", user_name="Kim", exchange=exchange
        )
        deliveries = await self.queue.take(limit=100, wait=0)
        return [d.job for d in deliveries]

    async def run(self, jobs: list[Job], responder: Responder) -> None:
        await asyncio.gather(*(self.chat.answer(job, responder) for job in jobs))

    async def events(self) -> list[tuple[str, dict[str, Any]]]:
        found = await self.store.read(CHANNEL, 0, limit=1000)
        return [(e.type, json.loads(e.data)) for e in found.events]


async def test_starting_appends_the_user_message_with_the_seeds_fields() -> None:
    setup = Setup()
    await setup.start("hello!")
    [(kind, said)] = await setup.events()
    assert kind == "user_message"
    assert said["content"] == "hello!"
    assert said["sender"] == "Kim" and said["senderId"] == "user_123"
    assert said["exchangeId"] == "x1"
    assert said["timestamp"].endswith("Z")


async def test_starting_enqueues_one_job_per_persona() -> None:
    jobs = await Setup().start()
    assert sorted(j.body["persona"]["name"] for j in jobs) == ["Haru", "Juno", "Mina"]
    assert len({j.id for j in jobs}) == 3


async def test_every_persona_answers_then_the_exchange_completes() -> None:
    setup = Setup()
    jobs = await setup.start()
    await setup.run(jobs, CountingResponder())
    events = await setup.events()
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "user_message" and kinds[-1] == "complete"
    assert kinds.count("ai_response") == kinds.count("exp_updated") == 3
    answers = [data for kind, data in events if kind == "ai_response"]
    assert {a["aiName"] for a in answers} == {"Haru", "Mina", "Juno"}
    for answer in answers:
        assert answer["content"] and answer["aiId"] == str(answer["personaId"])
        assert answer["exchangeId"] == "x1"
    exp = [data for kind, data in events if kind == "exp_updated"]
    assert {(e["newExp"], e["newLevel"], e["expIncrease"], e["userId"]) for e in exp} == {
        (5, 1, 5, "user_123")
    }
    assert events[-1][1]["answered"] == 3 and events[-1][1]["failed"] == 0


async def test_experience_grows_with_every_exchange() -> None:
    setup = Setup()
    for n in range(3):
        await setup.run(await setup.start(f"message {n}", exchange=f"x{n}"), CountingResponder())
    exp = [data["newExp"] for kind, data in await setup.events() if kind == "exp_updated"]
    assert sorted(exp) == [5, 5, 5, 10, 10, 10, 15, 15, 15]
    assert await setup.chat.friendships.experience("lobby", 1, "user_123") == 15


async def test_a_job_delivered_twice_is_answered_once() -> None:
    setup = Setup()
    jobs = await setup.start()
    responder = CountingResponder()
    await setup.run(jobs + jobs, responder)
    await setup.run(jobs, responder)
    assert sorted(responder.calls) == ["Haru", "Juno", "Mina"]
    kinds = [kind for kind, _ in await setup.events()]
    assert kinds.count("ai_response") == 3 and kinds.count("complete") == 1


async def test_the_same_message_in_the_same_room_is_not_computed_twice() -> None:
    setup = Setup()
    responder = CountingResponder()
    await setup.run(await setup.start("same words", exchange="x1"), responder)
    await setup.run(await setup.start("same words", exchange="x2"), responder)
    assert len(responder.calls) == 3
    answers = [d["content"] for k, d in await setup.events() if k == "ai_response"]
    assert sorted(answers[:3]) == sorted(answers[3:])


async def test_a_repeated_exchange_appends_nothing_new() -> None:
    setup = Setup()
    first = await setup.chat.start(
        setup.queue, ROOM, message="hi", sender="u", user_name="U", exchange="x1"
    )
    again = await setup.chat.start(
        setup.queue, ROOM, message="hi", sender="u", user_name="U", exchange="x1"
    )
    assert again.repeated and not first.repeated
    assert again.user_seq == first.user_seq
    assert again.deadline == pytest.approx(first.deadline, abs=0.01)
    assert [k for k, _ in await setup.events()] == ["user_message"]


async def test_a_failing_persona_reports_an_error_and_the_others_still_complete() -> None:
    setup = Setup()
    await setup.run(await setup.start(), CountingResponder(failing={"Mina"}))
    events = await setup.events()
    [error] = [data for kind, data in events if kind == "error"]
    assert error["personaId"] == 2 and error["aiName"] == "Mina"
    assert error["reason"] == "upstream_status"
    assert "overloaded" in error["message"]
    assert [k for k, _ in events].count("ai_response") == 2
    assert events[-1][0] == "complete"
    assert events[-1][1]["failed"] == 1


async def test_answers_past_the_deadline_end_the_exchange_with_one_timeout() -> None:
    setup = Setup(timeout=0.3)
    await setup.run(await setup.start(), CountingResponder(slow_seconds=2))
    events = await setup.events()
    assert [k for k, _ in events] == ["user_message", "timeout"]
    assert "0.3 s" in events[-1][1]["message"]


async def test_a_job_that_arrives_after_the_deadline_is_not_computed() -> None:
    setup = Setup(timeout=0.1)
    jobs = await setup.start()
    await asyncio.sleep(0.15)
    responder = CountingResponder()
    await setup.run(jobs, responder)
    assert responder.calls == []
    assert [k for k, _ in await setup.events()] == ["user_message", "timeout"]


async def test_an_exchange_that_ended_stays_ended() -> None:
    setup = Setup(timeout=0.3)
    jobs = await setup.start()
    await setup.run(jobs[:1], CountingResponder())
    await asyncio.sleep(0.35)
    await setup.run(jobs[1:], CountingResponder())
    kinds = [k for k, _ in await setup.events()]
    assert kinds == ["user_message", "ai_response", "exp_updated", "timeout"]


async def test_the_exchange_filters_tell_exchanges_apart() -> None:
    setup = Setup()
    await setup.run(await setup.start("one", exchange="aaaa"), CountingResponder())
    await setup.run(await setup.start("two", exchange="bbbb"), CountingResponder())
    found = await setup.store.read(CHANNEL, 0, limit=100)
    mine = [e for e in found.events if of_exchange("bbbb")(e)]
    assert len(mine) == 8 and all(json.loads(e.data)["exchangeId"] == "bbbb" for e in mine)
    assert [e.type for e in found.events if ends_exchange("aaaa")(e)] == ["complete"]


async def test_a_persona_with_its_own_prompt_answers_in_its_room() -> None:
    setup = Setup()
    room = Room("garden", "Garden", (Persona(7, "Ari", "calm", "Be brief."),), time.time())
    await setup.chat.start(setup.queue, room, message="hi", sender="u", user_name="U", exchange="g")
    jobs = [d.job for d in await setup.queue.take(limit=10, wait=0)]
    await setup.run(jobs, CountingResponder())
    found = await setup.store.read(room_channel("garden"), 0, limit=10)
    assert [e.type for e in found.events] == [
        "user_message",
        "ai_response",
        "exp_updated",
        "complete",
    ]
    assert json.loads(found.events[1].data)["personaId"] == 7


@pytest.mark.parametrize("crash", [RuntimeError("bug"), KeyError("x")])
async def test_a_crashing_responder_is_that_persona_s_failure(crash: Exception) -> None:
    class Crashing(ScriptedResponder):
        async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
            raise crash
            yield ""  # an async generator

    setup = Setup()
    await setup.run(await setup.start(), Crashing())
    events = await setup.events()
    assert [d["reason"] for k, d in events if k == "error"] == ["responder_crashed"] * 3
    assert events[-1][0] == "complete"
