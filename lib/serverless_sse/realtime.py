"""Chat messages and AI answers for the votes/chat/AI system (SEEDS 003); votes are in
:mod:`serverless_sse.polls`.

Channels: ``votes`` and ``chat`` are shared by everyone; ``ai/<client_id>`` is one client's
answers. ``GET /sse/events?channels=votes,chat,ai`` follows the three with one composite
cursor.

An AI question (:meth:`Assistant.ask`) becomes a job; a worker writes the answer with the
responder and appends it to the client's channel as it is written: ``ai_response`` pieces
(``content``), then ``ai_complete`` with the whole text, or ``ai_error`` (``reason``:
``timeout`` or the responder's) after the pieces it got. Pieces are appended as they come, one
append in flight at a time: the first piece goes alone, at once (time to first token), the
pieces written meanwhile go together in the next append (few store writes for a fast model).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .answers import AnswerCache, pieces_of
from .errors import ResponderFailed, ValidationFailed
from .events import NewEvent, dumps, iso_time
from .personas import ASSISTANT
from .polls import VOTES_CHANNEL
from .queues.base import Job, JobQueue
from .responders.base import Prompt, Responder
from .responders.scripted import split_pieces
from .settings import Settings
from .stores.base import EventStore

__all__ = [
    "AI_ANSWER",
    "CHAT_CHANNEL",
    "STREAMS",
    "Assistant",
    "PieceWriter",
    "ai_channel",
    "post_chat_message",
    "request_id",
    "stream_channels",
]

log = logging.getLogger(__name__)

CHAT_CHANNEL = "chat"
STREAMS = ("votes", "chat", "ai")
"""The names ``?channels=`` takes, in the order a stream follows them."""

AI_ANSWER = "ai_answer"
"""The kind of the jobs that answer a client's question."""


def ai_channel(client_id: str) -> str:
    """The channel of one client's AI answers."""
    return f"ai/{client_id}"


def stream_channels(names: Sequence[str], client_id: str) -> list[str]:
    """The channels behind ``?channels=`` names (``ai`` is the client's own)."""
    unknown = [n for n in names if n not in STREAMS]
    if unknown:
        raise ValidationFailed(f"unknown channels {unknown}; choose from {list(STREAMS)}")
    wanted = set(names)
    table = {"votes": VOTES_CHANNEL, "chat": CHAT_CHANNEL, "ai": ai_channel(client_id)}
    return [table[n] for n in STREAMS if n in wanted]


def request_id(scope: str, idempotency_key: str | None) -> str:
    """A new request's id; the same one for a request repeated with its ``Idempotency-Key``."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.blake2b(f"{scope}\x00{idempotency_key}".encode(), digest_size=16).hexdigest()


async def post_chat_message(
    store: EventStore, client_id: str, text: str, message_id: str
) -> tuple[dict[str, Any], int, str, bool]:
    """Append a ``chat_message``; returns (payload, seq, epoch, repeated). A repeated
    ``message_id`` stores nothing new."""
    message = {
        "id": message_id,
        "client_id": client_id,
        "text": text,
        "timestamp": iso_time(time.time()),
    }
    [appended] = await store.append(
        CHAT_CHANNEL, [NewEvent("chat_message", dumps(message), f"chat/{message_id}")]
    )
    return message, appended.seq, appended.epoch, appended.duplicate


class PieceWriter:
    """Appends events as they come, one append in flight at a time (see the module notes)."""

    def __init__(self, store: EventStore, channel: str) -> None:
        self.store = store
        self.channel = channel
        self.appends = 0
        """Store appends made so far."""
        self._pending: list[NewEvent] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, event: NewEvent) -> None:
        task = self._task
        if task is not None and task.done():
            failure = task.exception()
            if failure is not None:
                raise failure
        self._pending.append(event)
        if task is None or task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self.appends += 1
            await self.store.append(self.channel, batch)

    async def finish(self, last: Sequence[NewEvent] = ()) -> None:
        """Wait for the appends in flight, then append what is left and ``last``."""
        if self._task is not None:
            await self._task
        rest, self._pending = [*self._pending, *last], []
        if rest:
            self.appends += 1
            await self.store.append(self.channel, rest)

    async def abandon(self) -> None:
        """Stop appending (the job was cancelled)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Assistant:
    """Answers clients' questions on their ``ai`` channels."""

    def __init__(self, store: EventStore, *, timeout: float, answer_cache_seconds: float) -> None:
        self.store = store
        self.timeout = timeout
        self.cache = AnswerCache(store, ttl=answer_cache_seconds)

    @classmethod
    def from_settings(cls, store: EventStore, settings: Settings) -> Assistant:
        return cls(
            store,
            timeout=settings.ai_timeout_seconds,
            answer_cache_seconds=settings.answer_cache_seconds,
        )

    async def ask(self, queue: JobQueue, client_id: str, question: str, request: str) -> float:
        """Enqueue the question; returns the answer's deadline (Unix time)."""
        deadline = time.time() + self.timeout
        body = {"client_id": client_id, "question": question, "request_id": request}
        await queue.put([Job(f"ai/{request}", AI_ANSWER, {**body, "deadline": deadline})])
        return deadline

    async def answer(self, job: Job, responder: Responder) -> None:
        """Write the answer to one question (idempotent, like the group chat's jobs)."""
        body = job.body
        channel = ai_channel(body["client_id"])
        request = body["request_id"]
        deadline = float(body["deadline"])
        left = deadline - time.time()
        if left <= 0:
            await self.store.append(channel, [self._failed(request, "timeout", self._late())])
            return
        claim = f"job/{job.id}"
        if not await self.store.put_value(claim, "1", ttl=left + 5, only_if_absent=True):
            return
        try:
            await self._answer(body, responder, channel, deadline)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.store.delete_value(claim)
            raise

    def _late(self) -> str:
        return f"The answer took longer than {self.timeout:g} s."

    @staticmethod
    def _failed(request: str, reason: str, message: str) -> NewEvent:
        failed = {
            "request_id": request,
            "reason": reason,
            "message": message,
            "timestamp": iso_time(time.time()),
        }
        return NewEvent("ai_error", dumps(failed), f"ai/{request}/end")

    @staticmethod
    def _piece(request: str, index: int, content: str) -> NewEvent:
        piece = {"content": content, "request_id": request, "index": index}
        return NewEvent("ai_response", dumps(piece), f"ai/{request}/{index}")

    @staticmethod
    def _complete(request: str, text: str) -> NewEvent:
        done = {"content": text, "request_id": request, "timestamp": iso_time(time.time())}
        return NewEvent("ai_complete", dumps(done), f"ai/{request}/end")

    async def _answer(
        self, body: dict[str, Any], responder: Responder, channel: str, deadline: float
    ) -> None:
        request = body["request_id"]
        prompt = Prompt(ASSISTANT, body["question"])
        key = AnswerCache.key(responder, prompt, "ai")
        cached = await self.cache.get(key)
        if cached is not None:
            pieces = [self._piece(request, i, p) for i, p in enumerate(split_pieces(cached))]
            await self.store.append(channel, [*pieces, self._complete(request, cached)])
            return
        writer = PieceWriter(self.store, channel)
        written: list[str] = []
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + (deadline - time.time())):
                async for piece in pieces_of(responder, prompt):
                    writer.add(self._piece(request, len(written), piece))
                    written.append(piece)
        except TimeoutError:
            await writer.finish([self._failed(request, "timeout", self._late())])
            return
        except ResponderFailed as exc:
            await writer.finish([self._failed(request, exc.reason, exc.detail)])
            return
        except BaseException:
            await writer.abandon()
            raise
        text = "".join(written)
        await self.cache.put(key, text)
        await writer.finish([self._complete(request, text)])
