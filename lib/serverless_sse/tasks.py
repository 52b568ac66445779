"""Coding-agent tasks: output in, typed events out, in each task's channel ``tasks/<id>``.

A task is a record in the store (its status, and the output parser's state) and a channel.
Posts of raw output may land on any instance and may cut lines and blocks anywhere; every
post takes the task's lock (:class:`~serverless_sse.locks.StoreLock`), restores the parser
from the record, feeds it, appends the events, and saves the parser again. So concurrent posts
to one task apply one after the other, never interleaved, and the unfinished line or block
lives in the store, not in a process.

Writes are batched like the source system's client batched its bursts: parsed events are
written when ``batch_events`` are waiting, or when the oldest has waited ``batch_seconds``
(output streamed in a long ``text/plain`` upload), or when the post ends; a write holds at most
``batch_events`` events.

Crash safety: events and parser state are two writes, so each batch of input is a *unit*
written ahead into the record (the parser state before it, the text, its timestamp) before
its events are appended under idempotency keys ``<version>.<n>``. Whoever next takes the lock
finds an unfinished unit and replays it: the parser is deterministic, so the replay makes the
same events with the same keys, the store keeps each once, and the state moves on. A crash
loses no event and stores none twice; a *retried* post is a new post.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints

from .agent_output import (
    AgentEvent,
    AgentOutputParser,
    LogLine,
    PhaseUpdate,
    StepUpdate,
    TaskFinished,
)
from .errors import ChannelClosed, Conflict, NotFound
from .events import NewEvent, dumps
from .locks import StoreLock
from .settings import Settings
from .stores.base import EventStore

__all__ = [
    "AgentTasks",
    "CompleteRequest",
    "CreateRequest",
    "OutputRequest",
    "OutputResult",
    "TaskRecord",
    "TaskStatus",
    "new_task_id",
    "task_channel",
]

TaskStatus = Literal["in_progress", "succeeded", "failed"]
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Text is fed (and written ahead) in slices of at most this many characters, so a record stays
# far below every store's item limit (DynamoDB: 400 KB) whatever one post holds.
_SLICE = 8192
# How long a task's lock outlives a holder that died. A live holder renews it before every
# write and every third of this while an upload is quiet, so it never expires under it.
_LOCK_TTL = 30.0


class CreateRequest(BaseModel):
    """``POST /api/tasks`` body (optional): a chosen id (else one is made) and a title."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: TaskId | None = None
    title: Annotated[str, StringConstraints(max_length=200)] | None = None


class OutputRequest(BaseModel):
    """``POST /api/tasks/{id}/output`` JSON body: raw agent text, cut anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: StrictStr


class CompleteRequest(BaseModel):
    """``POST /api/tasks/{id}/complete`` body (optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["succeeded", "failed"] = "succeeded"
    summary: Annotated[str, StringConstraints(max_length=4000)] | None = None


def new_task_id() -> str:
    """64 random bits, hex: unguessable enough that ids do not leak other tasks."""
    return secrets.token_hex(8)


def task_channel(task_id: str) -> str:
    return f"tasks/{task_id}"


def iso(timestamp: float) -> str:
    """``2026-01-02T03:04:05.678Z``, as JavaScript's ``toISOString`` writes it."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TaskRecord:
    """A task as the store keeps it (``task:<id>``, one JSON value)."""

    id: str
    title: str | None
    status: TaskStatus
    created_at: float
    updated_at: float
    finished_at: float | None = None
    summary: str | None = None
    phase: dict[str, Any] | None = None  # the last phase_update's data
    step: dict[str, Any] | None = None  # the last step_update's data
    events: int = 0  # events this task's output made
    parser: dict[str, Any] = field(default_factory=dict)
    undecoded: str = ""  # hex of a UTF-8 sequence a text/plain post ended in the middle of
    version: int = 0  # units applied
    unit: dict[str, Any] | None = None  # the unit written ahead and not yet known applied

    @property
    def finished(self) -> bool:
        return self.status != "in_progress"

    def view(self) -> dict[str, Any]:
        """What ``GET /api/tasks/{id}`` answers."""
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": None if self.finished_at is None else iso(self.finished_at),
            "summary": self.summary,
            "phase": self.phase,
            "step": self.step,
            "events": self.events,
        }

    @classmethod
    def loads(cls, text: str) -> TaskRecord:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class OutputResult:
    """What one post of output did."""

    record: TaskRecord
    events: int  # events this post appended


class AgentTasks:
    """Create tasks, feed them output, finish them; every method is safe to call from any
    instance at any time."""

    def __init__(
        self,
        store: EventStore,
        *,
        batch_events: int = 10,
        batch_seconds: float = 0.1,
        max_line: int = 4096,
        max_block: int = 8192,
        max_event_bytes: int = 65536,
        retention_seconds: float = 86_400,
        lock_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._batch = batch_events
        self._batch_seconds = batch_seconds
        self._max_line = max_line
        self._max_block = max_block
        self._max_event_bytes = max_event_bytes
        self._ttl = retention_seconds
        self._lock_wait = lock_wait
        self._clock = clock

    @classmethod
    def from_settings(cls, store: EventStore, settings: Settings) -> AgentTasks:
        return cls(
            store,
            batch_events=settings.task_batch_events,
            batch_seconds=settings.task_batch_seconds,
            max_line=settings.task_max_line_chars,
            max_block=settings.task_max_block_chars,
            max_event_bytes=settings.max_event_bytes,
            retention_seconds=settings.retention_seconds,
            lock_wait=settings.task_lock_wait_seconds,
        )

    # -- records -------------------------------------------------------------------------

    async def create(self, task_id: str | None = None, title: str | None = None) -> TaskRecord:
        """A new task, ``in_progress``, with an empty log. A chosen id that exists is 409."""
        now = self._clock()
        record = TaskRecord(
            id=task_id or new_task_id(),
            title=title,
            status="in_progress",
            created_at=now,
            updated_at=now,
            parser=self._parser(None).snapshot(),
        )
        if not await self.store.put_value(
            _key(record.id), _dumps(record), ttl=self._ttl, only_if_absent=True
        ):
            raise Conflict(f"task {record.id!r} already exists")
        return record

    async def get(self, task_id: str) -> TaskRecord:
        """The task's record; :class:`NotFound` (404) for an unknown (or expired) task."""
        raw = await self.store.get_value(_key(task_id))
        if raw is None:
            raise NotFound(f"no task {task_id!r}")
        return TaskRecord.loads(raw)

    # -- output --------------------------------------------------------------------------

    async def write_output(
        self,
        task_id: str,
        pieces: AsyncIterable[str | bytes],
        *,
        before_write: Callable[[int], Awaitable[None]] | None = None,
    ) -> OutputResult:
        """Parse raw agent output (text, or UTF-8 bytes cut anywhere) into the task's events.

        Reads ``pieces`` as they come (a long upload streams), writing events in batches;
        ``before_write(n)`` is awaited before each batch of ``n`` events (a rate limit that
        slows the upload down).
        Raises 404 for an unknown task and 409 for a finished one; output after a
        ``[TASK_COMPLETE]`` / ``[TASK_FAILED]`` line finishes the task and the rest is ignored.
        """
        async with self._lock(task_id) as lock:
            record = await self._settled(task_id)
            if record.finished:
                raise Conflict(f"task {task_id!r} is finished ({record.status})")
            writer = _UnitWriter(self, record, lock, before_write)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            decoder.setstate((bytes.fromhex(record.undecoded), 0))
            deadline: float | None = None  # when the oldest parsed event must be written
            failure: BaseException | None = None
            loop = asyncio.get_running_loop()
            renew_at = loop.time() + _LOCK_TTL / 3
            async with _prefetched(pieces) as queue:
                while not writer.finished:
                    wake = renew_at if deadline is None else min(deadline, renew_at)
                    try:
                        async with asyncio.timeout_at(wake):
                            piece = await queue.get()
                    except TimeoutError:
                        if deadline is not None and loop.time() >= deadline:
                            await writer.flush()  # renews the lock first
                            deadline = None
                        else:
                            await lock.renew()
                        renew_at = loop.time() + _LOCK_TTL / 3
                        continue
                    if piece is None:
                        break
                    if isinstance(piece, BaseException):
                        # The upload broke off: keep what arrived, then report it.
                        failure = piece
                        break
                    if isinstance(piece, str):
                        text = decoder.decode(b"", final=True) + piece
                    else:
                        text = decoder.decode(piece)
                    for start in range(0, len(text), _SLICE):
                        writer.feed(text[start : start + _SLICE])
                        if writer.pending >= self._batch or writer.finished:
                            await writer.flush()
                            deadline = None
                            renew_at = loop.time() + _LOCK_TTL / 3
                        if writer.finished:
                            break
                    if writer.pending and deadline is None:
                        deadline = loop.time() + self._batch_seconds
            await writer.flush()
            record.undecoded = "" if writer.finished else decoder.getstate()[0].hex()
            await lock.renew()
            await self._save(record)
            if failure is not None:
                raise failure
            return OutputResult(record, writer.appended)

    async def complete(
        self, task_id: str, outcome: Literal["succeeded", "failed"], summary: str | None
    ) -> TaskRecord:
        """Finish the task: the unfinished line is flushed, then ``complete`` (for a failure
        ``error`` first), and the channel is closed. 409 if it already finished."""
        async with self._lock(task_id) as lock:
            record = await self._settled(task_id)
            if record.finished:
                raise Conflict(f"task {task_id!r} already finished ({record.status})")
            writer = _UnitWriter(self, record, lock)
            writer.finish(outcome, summary)
            await writer.flush()
            await self._save(record)
            return record

    # -- inside ----------------------------------------------------------------------------

    def _lock(self, task_id: str) -> StoreLock:
        return StoreLock(self.store, f"task:{task_id}", ttl=_LOCK_TTL, wait=self._lock_wait)

    def _parser(self, snapshot: dict[str, Any] | None) -> AgentOutputParser:
        if not snapshot:
            return AgentOutputParser(max_line=self._max_line, max_block=self._max_block)
        return AgentOutputParser.restore(
            snapshot, max_line=self._max_line, max_block=self._max_block
        )

    async def _settled(self, task_id: str) -> TaskRecord:
        """The record, with a unit a crashed request left unfinished applied (under the lock)."""
        record = await self.get(task_id)
        unit = record.unit
        if unit is not None:
            parser = self._parser(unit["base"])
            finish = unit.get("finish")
            if finish is not None:
                events = parser.finish(finish[0], finish[1])
            else:
                events = parser.feed(unit["text"])
            await self._append(record, events, unit["at"], replay=True)
            self._absorb(record, parser, events, unit["at"])
            await self._save(record)
        return record

    async def _append(
        self, record: TaskRecord, events: Sequence[AgentEvent], at: float, *, replay: bool
    ) -> int:
        """Append a unit's events (the final ``complete`` by closing the channel)."""
        channel = task_channel(record.id)
        encoded = [
            self._encode(event, at, f"{record.version}.{n}") for n, event in enumerate(events)
        ]
        final = encoded.pop() if events and isinstance(events[-1], TaskFinished) else None
        try:
            for start in range(0, len(encoded), self._batch):
                await self.store.append(channel, encoded[start : start + self._batch])
            if final is not None:
                await self.store.close(channel, final)
        except ChannelClosed:
            if not replay:
                raise
            # The crashed request got as far as closing the channel: the unit is applied.
        return len(encoded) + (final is not None)

    def _encode(self, event: AgentEvent, at: float, key: str) -> NewEvent:
        """``{"data": {...fields, "timestamp"}}``: the source system's event shape, so its
        client reads ``event.data.message`` in ``onmessage`` unchanged."""
        data = {**event.data(), "timestamp": iso(at)}
        text = dumps({"data": data})
        size = len(text.encode("utf-8"))
        limit = self._max_event_bytes
        if size > limit:
            if isinstance(event, LogLine):
                # Every character escapes to at most 6 bytes: this many always fit.
                keep = max(0, (limit - 200) // 6)
                data["message"] = event.message[:keep] + "…"
                data["truncated"] = True
            else:
                event_type = "log"
                data = {
                    "message": f"{event.type} event dropped: {size} bytes, over the"
                    f" {limit}-byte event limit",
                    "level": "warn",
                    "timestamp": iso(at),
                }
                return NewEvent(event_type, dumps({"data": data}), key)
            text = dumps({"data": data})
        return NewEvent(event.type, text, key if not isinstance(event, TaskFinished) else None)

    def _absorb(
        self,
        record: TaskRecord,
        parser: AgentOutputParser,
        events: Sequence[AgentEvent],
        at: float,
    ) -> None:
        """Move the record past a unit: its parser state, version, status, phase and step."""
        for event in events:
            if isinstance(event, PhaseUpdate):
                record.phase = event.data()
            elif isinstance(event, StepUpdate):
                record.step = event.data()
            elif isinstance(event, TaskFinished):
                record.status = event.status
                record.summary = event.summary
                record.finished_at = at
        record.events += len(events)
        record.parser = parser.snapshot()
        record.version += 1
        record.updated_at = at
        record.unit = None

    async def _save(self, record: TaskRecord) -> None:
        await self.store.put_value(_key(record.id), _dumps(record), ttl=self._ttl)


class _UnitWriter:
    """The units of one request: input fed to the parser, then written ahead and applied."""

    def __init__(
        self,
        tasks: AgentTasks,
        record: TaskRecord,
        lock: StoreLock,
        before_write: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._tasks = tasks
        self._before_write = before_write
        self._record = record
        self._lock = lock
        self._parser = tasks._parser(record.parser)
        self._base = record.parser
        self._text: list[str] = []
        self._finish: tuple[str, str | None] | None = None
        self._events: list[AgentEvent] = []
        self._at: float | None = None
        self.appended = 0

    @property
    def pending(self) -> int:
        return len(self._events)

    @property
    def finished(self) -> bool:
        return self._parser.finished is not None

    def feed(self, text: str) -> None:
        if self._at is None:
            self._at = self._tasks._clock()
        self._text.append(text)
        self._events.extend(self._parser.feed(text))

    def finish(self, outcome: Literal["succeeded", "failed"], summary: str | None) -> None:
        # A unit is one step for the replay: text, or a finish, never both.
        assert not self._text, "finish() must follow a flushed unit"
        if self._at is None:
            self._at = self._tasks._clock()
        self._finish = (outcome, summary)
        self._events.extend(self._parser.finish(outcome, summary))

    async def flush(self) -> None:
        """Write the unit ahead, append its events, and start the next unit. Text that made
        no event only moved the parser's unfinished line: the record takes the new state (the
        caller saves it) and nothing needs writing ahead."""
        tasks, record = self._tasks, self._record
        if not self._events:
            if self._text:
                record.parser = self._base = self._parser.snapshot()
                self._text, self._at = [], None
            return
        at = self._at if self._at is not None else tasks._clock()
        unit: dict[str, Any] = {"base": self._base, "at": at}
        if self._finish is not None:
            unit["finish"] = list(self._finish)
        else:
            unit["text"] = "".join(self._text)
        if self._before_write is not None:
            await self._before_write(len(self._events))
        # Never write under a lock that may have passed to another request.
        await self._lock.renew()
        record.unit = unit
        await tasks._save(record)
        self.appended += await tasks._append(record, self._events, at, replay=False)
        tasks._absorb(record, self._parser, self._events, at)
        self._base = record.parser
        self._text, self._events, self._at, self._finish = [], [], None, None


@contextlib.asynccontextmanager
async def _prefetched(
    pieces: AsyncIterable[str | bytes],
) -> AsyncIterator[asyncio.Queue[str | bytes | BaseException | None]]:
    """Read ``pieces`` in a task into a small queue, so the consumer can wait with a timeout
    (cancelling a request body's own iterator would end it). ``None`` marks the end."""
    queue: asyncio.Queue[str | bytes | BaseException | None] = asyncio.Queue(maxsize=4)

    async def pump() -> None:
        try:
            async for piece in pieces:
                if piece:
                    await queue.put(piece)
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(exc)
            return
        await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _key(task_id: str) -> str:
    return f"task:{task_id}"


def _dumps(record: TaskRecord) -> str:
    return dumps(asdict(record))
