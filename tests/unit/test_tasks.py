"""Agent tasks over a store: output cut anywhere and posted from anywhere, batched writes,
concurrent posts, crash recovery, and finishing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import pytest

from serverless_sse import tasks as tasks_module
from serverless_sse.errors import ChannelClosed, Conflict, NotFound, StoreUnavailable
from serverless_sse.events import NewEvent
from serverless_sse.stores.base import Appended
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.tasks import AgentTasks, task_channel


class RecordingStore(MemoryStore):
    """A memory store that records the size of every append, and can fail one on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []
        self.fail_next_append = False

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        if self.fail_next_append:
            self.fail_next_append = False
            raise StoreUnavailable("injected failure")
        self.appends.append(len(events))
        return await super().append(channel, events)


@pytest.fixture
async def store() -> AsyncIterator[RecordingStore]:
    store = RecordingStore()
    yield store
    await store.aclose()


@pytest.fixture
def tasks(store: RecordingStore) -> AgentTasks:
    return AgentTasks(store, batch_events=10, batch_seconds=0.05, max_event_bytes=2048)


async def pieces(*items: str | bytes, pause: float = 0.0) -> AsyncIterator[str | bytes]:
    for item in items:
        if pause:
            await asyncio.sleep(pause)
        yield item


async def post(tasks: AgentTasks, task_id: str, *items: str | bytes) -> int:
    return (await tasks.write_output(task_id, pieces(*items))).events


async def logged(store: MemoryStore, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    events = (await store.read(task_channel(task_id), 0, limit=10_000)).events
    return [(e.type, json.loads(e.data)["data"]) for e in events]


async def messages(store: MemoryStore, task_id: str) -> list[str]:
    return [d["message"] for t, d in await logged(store, task_id) if t == "log"]


# -- records -------------------------------------------------------------------------------


async def test_a_new_task_is_in_progress_with_an_empty_log(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    record = await tasks.create(title="Build the thing")
    assert (record.status, record.title, len(record.id)) == ("in_progress", "Build the thing", 16)
    assert (await tasks.get(record.id)).view()["status"] == "in_progress"
    assert await logged(store, record.id) == []


async def test_a_chosen_task_id_is_taken_once(tasks: AgentTasks) -> None:
    await tasks.create("nightly")
    with pytest.raises(Conflict, match="already exists"):
        await tasks.create("nightly")


async def test_an_unknown_task_is_not_found(tasks: AgentTasks) -> None:
    with pytest.raises(NotFound):
        await tasks.get("nope")
    with pytest.raises(NotFound):
        await post(tasks, "nope", "hello\n")


# -- output, cut anywhere ------------------------------------------------------------------


async def test_a_line_split_across_posts_is_one_log_event(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    assert await post(tasks, "t", "Starting Pha") == 0
    assert await post(tasks, "t", "se 1: Setup\nfetching de") == 2
    await post(tasks, "t", "pendencies\n")
    assert await logged(store, "t") == [
        ("log", {"message": "Starting Phase 1: Setup", "level": "info", "timestamp": _any}),
        ("phase_update", {"phase": 1, "status": "started", "name": "Setup", "timestamp": _any}),
        ("log", {"message": "fetching dependencies", "level": "info", "timestamp": _any}),
    ]


async def test_a_utf8_character_split_across_posts_survives(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    encoded = "빌드 완료\n".encode()
    await post(tasks, "t", encoded[:4])
    await post(tasks, "t", encoded[4:])
    assert await messages(store, "t") == ["빌드 완료"]


async def test_a_block_split_across_posts_is_one_event(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    await post(tasks, "t", "[DEPENDENCY_REQUEST]\nname: GITHUB")
    await post(tasks, "t", "_TOKEN\ntype: secret\n[/DEPENDENCY_REQ")
    await post(tasks, "t", "UEST]\n")
    [(event_type, data)] = await logged(store, "t")
    assert event_type == "dependency_request"
    assert data["name"] == "GITHUB_TOKEN" and data["type"] == "secret"


async def test_the_record_tracks_phase_step_and_event_count(tasks: AgentTasks) -> None:
    await tasks.create("t")
    await post(tasks, "t", "Starting Phase 2: Build\nStep 3/7: compile\n")
    view = (await tasks.get("t")).view()
    assert view["phase"] == {"phase": 2, "status": "in_progress", "name": "Build"}
    assert view["step"] == {"step": "compile", "progress": 3, "total": 7}
    assert view["events"] == 5


# -- batching ------------------------------------------------------------------------------


async def test_a_burst_is_written_in_batches_of_at_most_ten(
    tasks: AgentTasks, store: RecordingStore
) -> None:
    await tasks.create("t")
    assert await post(tasks, "t", "".join(f"line {n}\n" for n in range(25))) == 25
    assert store.appends == [10, 10, 5]
    assert await messages(store, "t") == [f"line {n}" for n in range(25)]


async def test_a_slow_upload_is_written_as_it_arrives(
    tasks: AgentTasks, store: RecordingStore
) -> None:
    await tasks.create("t")
    seen_during_upload: list[int] = []

    async def upload() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"tick {n}\n".encode()
            await asyncio.sleep(0.2)  # longer than batch_seconds
            seen_during_upload.append(len(await messages(store, "t")))

    await tasks.write_output("t", upload())
    assert seen_during_upload == [1, 2, 3]


async def test_text_from_many_small_pieces_is_gathered_into_few_writes(
    tasks: AgentTasks, store: RecordingStore
) -> None:
    await tasks.create("t")
    await tasks.write_output("t", pieces(*(f"l{n}\n" for n in range(30))))
    assert sum(store.appends) == 30 and len(store.appends) <= 4


# -- concurrency and crashes ---------------------------------------------------------------


async def test_concurrent_posts_to_one_task_never_interleave(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")

    async def writer(name: str) -> None:
        # Each post carries whole lines, sent in awkward pieces with pauses in between.
        text = "".join(f"{name}-{n}\n" for n in range(12))
        await tasks.write_output("t", pieces(*_chop(text, 7), pause=0.001))

    await asyncio.gather(*(writer(name) for name in "abcd"))
    got = await messages(store, "t")
    assert sorted(got) == sorted(f"{w}-{n}" for w in "abcd" for n in range(12))
    for name in "abcd":
        assert [m for m in got if m.startswith(name)] == [f"{name}-{n}" for n in range(12)]
    assert len({m[0] for m in got[:12]}) == 1, "a post is applied as a whole"


async def test_a_crash_between_write_ahead_and_append_loses_nothing_and_repeats_nothing(
    tasks: AgentTasks, store: RecordingStore
) -> None:
    await tasks.create("t")
    await post(tasks, "t", "one\ntw")
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        await post(tasks, "t", "o\nthree\n")
    # The next request, on any instance, finishes the unit that was written ahead.
    await post(tasks, "t", "four\n")
    assert await messages(store, "t") == ["one", "two", "three", "four"]


async def test_a_crash_after_appending_is_not_appended_twice(
    tasks: AgentTasks, store: RecordingStore
) -> None:
    await tasks.create("t")
    record = await tasks.get("t")
    # As if a request wrote its unit ahead, appended, and died before saving the record.
    record.unit = {"base": record.parser, "text": "alpha\nbeta\n", "at": 1.0}
    await store.put_value("task:t", json.dumps(_as_dict(record)))
    await store.append(
        task_channel("t"),
        [NewEvent("log", json.dumps({"data": {"message": "alpha"}}), "0.0")],
    )
    await post(tasks, "t", "gamma\n")
    assert await messages(store, "t") == ["alpha", "beta", "gamma"]


async def test_a_quiet_upload_keeps_its_task_locked(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks_module, "_LOCK_TTL", 0.3)
    tasks = AgentTasks(store, lock_wait=0.1)
    await tasks.create("t")

    async def agent_thinking() -> AsyncIterator[bytes]:
        yield b"start\n"
        await asyncio.sleep(1.0)  # quiet for three lock lifetimes
        yield b"end\n"

    upload = asyncio.create_task(tasks.write_output("t", agent_thinking()))
    await asyncio.sleep(0.6)
    with pytest.raises(Conflict, match="busy"):
        await post(tasks, "t", "intruder\n")
    await upload
    assert await messages(store, "t") == ["start", "end"]


async def test_an_upload_that_breaks_off_keeps_what_arrived(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")

    async def broken() -> AsyncIterator[bytes]:
        yield b"first\nsecond\npart"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await tasks.write_output("t", broken())
    await post(tasks, "t", "ial\n")
    assert await messages(store, "t") == ["first", "second", "partial"]


# -- finishing -----------------------------------------------------------------------------


async def test_completing_flushes_the_last_line_and_closes_the_channel(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    await post(tasks, "t", "Starting Phase 1: Ship\nno newline at the end")
    record = await tasks.complete("t", "succeeded", "shipped")
    assert (record.status, record.summary) == ("succeeded", "shipped")
    types = [t for t, _ in await logged(store, "t")]
    assert types[-3:] == ["log", "phase_update", "complete"]
    assert (await store.state(task_channel("t"))).closed


async def test_a_failed_task_sends_error_then_complete(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    await tasks.complete("t", "failed", "tests are red")
    assert await logged(store, "t") == [
        ("error", {"message": "tests are red", "fatal": True, "timestamp": _any}),
        ("complete", {"status": "failed", "summary": "tests are red", "timestamp": _any}),
    ]


async def test_a_finished_task_takes_no_more_output(tasks: AgentTasks) -> None:
    await tasks.create("t")
    await tasks.complete("t", "succeeded", None)
    with pytest.raises(Conflict, match="finished"):
        await post(tasks, "t", "late\n")
    with pytest.raises(Conflict, match="finished"):
        await tasks.complete("t", "failed", None)


async def test_the_agent_can_finish_its_task_itself(tasks: AgentTasks, store: MemoryStore) -> None:
    await tasks.create("t")
    await post(tasks, "t", "work\n[TASK_COMPLETE] done\nafterwards\n")
    assert (await tasks.get("t")).status == "succeeded"
    assert [t for t, _ in await logged(store, "t")] == ["log", "log", "complete"]
    with pytest.raises(ChannelClosed):
        await store.append(task_channel("t"), [NewEvent("log", "{}")])


async def test_an_event_over_the_size_limit_is_cut_not_lost(
    tasks: AgentTasks, store: MemoryStore
) -> None:
    await tasks.create("t")
    await post(tasks, "t", "x" * 4000 + "\n")
    [(event_type, data)] = await logged(store, "t")
    assert event_type == "log" and data["truncated"] is True
    assert data["message"].startswith("xxx") and data["message"].endswith("…")


# -- helpers -------------------------------------------------------------------------------


class _Anything:
    def __eq__(self, other: object) -> bool:
        return True


_any: Any = _Anything()


def _chop(text: str, size: int) -> Iterable[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


def _as_dict(record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)
