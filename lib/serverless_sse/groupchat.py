"""Group chat with AI personas (SEEDS 004): an exchange is a user's message and every persona's
answer to it.

The request side (:meth:`GroupChat.start`) appends ``user_message`` to the room's channel and
enqueues one job per persona. The worker side (:meth:`GroupChat.answer`) writes one persona's
answer and appends ``ai_response`` + ``exp_updated`` together; the job that finds every
persona answered appends ``complete``. The exchange ends with exactly one ``complete`` or
``timeout`` (both use the idempotency key ``x/<exchange>/end``, so the first one wins), and a
persona that fails adds an ``error`` with its reason. Everything is in the room's log, so the
POST that started the exchange, a second member's stream, and a reconnect all read the same
events, in the same order, from any instance.

Payloads carry the seeds' field names (``content``, ``sender``, ``senderId``, ``aiName``,
``aiId``, ``personaId``, ``newExp``, ``newLevel``, ``expIncrease``, ``userId``, ``message``,
``timestamp``) and ``exchangeId``, which tells exchanges in one room apart.

Deadlines: an exchange must end within ``timeout`` seconds of its ``user_message``. A worker
stops a persona's answer at the deadline and appends ``timeout``; a job that reaches a worker
after the deadline appends ``timeout`` without computing. Jobs are idempotent: a job is
claimed before it is computed (``job/<id>`` until the deadline), answers are cached, events
and experience are keyed by exchange and persona.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .answers import AnswerCache, pieces_of
from .errors import ResponderFailed
from .events import NewEvent, StoredEvent, dumps, iso_time
from .friendship import Friendships, level_for
from .personas import Persona
from .queues.base import Job, JobQueue
from .responders.base import Prompt, Responder
from .rooms import Room, room_channel
from .settings import Settings
from .stores.base import EventStore
from .window import EventTest

__all__ = ["PERSONA_ANSWER", "Exchange", "GroupChat", "ends_exchange", "of_exchange"]

log = logging.getLogger(__name__)

PERSONA_ANSWER = "persona_answer"
"""The kind of the jobs that answer as one persona."""

_ENDINGS = ("complete", "timeout")


@dataclass(frozen=True, slots=True)
class Exchange:
    """A started exchange: where its ``user_message`` is in the room's log, and its deadline
    (Unix time)."""

    id: str
    room_id: str
    user_seq: int
    epoch: str
    deadline: float
    repeated: bool = False


def exchange_id(room_id: str, idempotency_key: str | None) -> str:
    """A new exchange's id; the same one for a request repeated with its ``Idempotency-Key``."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    digest = hashlib.blake2b(f"{room_id}\x00{idempotency_key}".encode(), digest_size=16)
    return digest.hexdigest()


def _payload(event: StoredEvent, exchange: str) -> dict[str, Any] | None:
    # The id is hex: an event whose text does not hold it cannot be this exchange's, and
    # most events of a busy room are skipped without being parsed.
    if exchange not in event.data:
        return None
    payload = json.loads(event.data)
    if isinstance(payload, dict) and payload.get("exchangeId") == exchange:
        return payload
    return None


def of_exchange(exchange: str) -> EventTest:
    """Whether a room event belongs to this exchange (the POST response writes only those)."""
    return lambda event: _payload(event, exchange) is not None


def ends_exchange(exchange: str) -> EventTest:
    """Whether a room event ends this exchange (``complete`` or ``timeout``)."""
    return lambda event: event.type in _ENDINGS and _payload(event, exchange) is not None


class GroupChat:
    """Starts exchanges (request side) and answers their jobs (worker side)."""

    def __init__(
        self,
        store: EventStore,
        *,
        timeout: float,
        exp_per_answer: int = 5,
        answer_cache_seconds: float = 3600.0,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.friendships = Friendships(store, exp_per_answer=exp_per_answer)
        self.cache = AnswerCache(store, ttl=answer_cache_seconds)

    @classmethod
    def from_settings(cls, store: EventStore, settings: Settings) -> GroupChat:
        return cls(
            store,
            timeout=settings.ai_timeout_seconds,
            exp_per_answer=settings.exp_per_answer,
            answer_cache_seconds=settings.answer_cache_seconds,
        )

    # -- request side ------------------------------------------------------------------------

    async def start(
        self,
        queue: JobQueue,
        room: Room,
        *,
        message: str,
        sender: str,
        user_name: str,
        exchange: str,
    ) -> Exchange:
        """Append the user's message and enqueue one job per persona.

        Repeating an exchange (same id) appends nothing new and enqueues jobs that find their
        work done; its deadline stays the first one's.
        """
        channel = room_channel(room.id)
        now = time.time()
        said = {
            "content": message,
            "sender": user_name,
            "senderId": sender,
            "timestamp": iso_time(now),
            "exchangeId": exchange,
        }
        [appended] = await self.store.append(
            channel, [NewEvent("user_message", dumps(said), f"x/{exchange}/user")]
        )
        started = now
        if appended.duplicate:
            found = await self.store.read(channel, appended.seq - 1, limit=1)
            if found.events and found.events[0].seq == appended.seq:
                started = found.events[0].created_at
        result = Exchange(
            exchange,
            room.id,
            appended.seq,
            appended.epoch,
            started + self.timeout,
            appended.duplicate,
        )
        body = {
            "room": room.id,
            "exchange": exchange,
            "personas": [p.id for p in room.personas],
            "message": message,
            "sender": sender,
            "userName": user_name,
            "userSeq": appended.seq,
            "epoch": appended.epoch,
            "deadline": result.deadline,
        }
        jobs = [
            Job(f"x/{exchange}/{p.id}", PERSONA_ANSWER, {**body, "persona": p.to_json()})
            for p in room.personas
        ]
        await queue.put(jobs)
        return result

    # -- worker side -------------------------------------------------------------------------

    async def answer(self, job: Job, responder: Responder) -> None:
        """Answer one persona's job (idempotent; see the module's notes)."""
        body = job.body
        persona = Persona.from_json(body["persona"])
        channel = room_channel(body["room"])
        exchange = body["exchange"]
        deadline = float(body["deadline"])
        left = deadline - time.time()
        if left <= 0:
            await self._time_out(channel, exchange)
            return
        claim = f"job/{job.id}"
        if not await self.store.put_value(claim, "1", ttl=left + 5, only_if_absent=True):
            return  # another worker has it, or had it and is done
        try:
            await self._answer(job, responder, persona, channel, deadline)
        except BaseException:
            # Give the claim back so that a redelivery can finish the work (if the store is
            # down this fails too, and the claim lapses at the deadline).
            try:
                await self.store.delete_value(claim)
            except Exception:
                log.warning("could not release claim %s", claim)
            raise

    async def _answer(
        self, job: Job, responder: Responder, persona: Persona, channel: str, deadline: float
    ) -> None:
        body = job.body
        exchange = body["exchange"]
        prompt = Prompt(persona, body["message"], body["userName"])
        key = AnswerCache.key(responder, prompt, body["room"])
        try:
            async with asyncio.timeout_at(_loop_time_of(deadline)):
                text = await self.cache.get(key)
                if text is None:
                    text = "".join([piece async for piece in pieces_of(responder, prompt)])
                    await self.cache.put(key, text)
        except TimeoutError:
            await self._time_out(channel, exchange)
            return
        except ResponderFailed as exc:
            failed = {
                "message": f"{persona.name} could not answer: {exc.detail}",
                "reason": exc.reason,
                "personaId": persona.id,
                "aiName": persona.name,
                "timestamp": iso_time(time.time()),
                "exchangeId": exchange,
            }
            error = NewEvent("error", dumps(failed), f"x/{exchange}/error/{persona.id}")
            await self.store.append(channel, [error])
            await self._complete_if_answered(body)
            return
        grant = await self.friendships.grant(
            body["room"], persona.id, body["sender"], exchange_id=exchange
        )
        answered = {
            "content": text,
            "aiName": persona.name,
            "aiId": str(persona.id),
            "personaId": persona.id,
            "timestamp": iso_time(time.time()),
            "exchangeId": exchange,
        }
        experience = {
            "personaId": persona.id,
            "personaName": persona.name,
            "newExp": grant.exp,
            "newLevel": grant.level,
            "expIncrease": grant.increase,
            "userId": body["sender"],
            "exchangeId": exchange,
        }
        await self.store.append(
            channel,
            [
                NewEvent("ai_response", dumps(answered), f"x/{exchange}/ai/{persona.id}"),
                NewEvent("exp_updated", dumps(experience), f"x/{exchange}/exp/{persona.id}"),
            ],
        )
        await self._complete_if_answered(body)

    async def _time_out(self, channel: str, exchange: str) -> None:
        ended = {
            "message": f"The AI answers took longer than {self.timeout:g} s.",
            "timestamp": iso_time(time.time()),
            "exchangeId": exchange,
        }
        await self.store.append(channel, [NewEvent("timeout", dumps(ended), f"x/{exchange}/end")])

    async def _complete_if_answered(self, body: dict[str, Any]) -> None:
        """Append ``complete`` if every persona has answered or failed.

        Read from the log, which is the truth however jobs were delivered: each job reads
        after its own append, so the last one to append sees every answer.
        """
        channel = room_channel(body["room"])
        exchange = body["exchange"]
        expected = set(body["personas"])
        answered: set[int] = set()
        failed: set[int] = set()
        after = int(body["userSeq"])
        while True:
            found = await self.store.read(channel, after, limit=500)
            if found.state.epoch != body["epoch"]:
                return  # the log was lost: nothing here can be concluded
            for event in found.events:
                payload = _payload(event, exchange)
                if payload is None:
                    continue
                if event.type in _ENDINGS:
                    return
                if event.type == "ai_response":
                    answered.add(payload["personaId"])
                elif event.type == "error":
                    failed.add(payload["personaId"])
            if not found.events:
                break
            after = found.events[-1].seq
        if not expected <= answered | failed:
            return
        done = {
            "message": "All AI answers are complete.",
            "answered": len(answered),
            "failed": len(failed),
            "timestamp": iso_time(time.time()),
            "exchangeId": exchange,
        }
        await self.store.append(channel, [NewEvent("complete", dumps(done), f"x/{exchange}/end")])

    async def friendship(self, room: Room, user_id: str) -> list[dict[str, Any]]:
        """A user's experience and level with each of a room's personas."""
        exps = await asyncio.gather(
            *(self.friendships.experience(room.id, p.id, user_id) for p in room.personas)
        )
        return [
            {
                "personaId": p.id,
                "personaName": p.name,
                "exp": exp,
                "level": level_for(exp),
            }
            for p, exp in zip(room.personas, exps, strict=True)
        ]


def _loop_time_of(deadline: float) -> float:
    """A Unix time as the running loop's clock reads it (for ``asyncio.timeout_at``)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.time())
