"""ChannelWriters: one writer per channel, and every write learns its outcome."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Any

import pytest

from serverless_sse.errors import StoreUnavailable
from serverless_sse.stores.base import Appended
from serverless_sse.stores.writers import ChannelWriters


@dataclass(eq=False)
class Write:
    n: int
    done: asyncio.Future[list[Appended]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Store:
    """A drain that writes one queued write at a time, each after ``gate`` opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.written: list[int] = []
        self.writers = ChannelWriters[Write]("test", self.drain)

    async def drain(self, channel: str, queue: list[Write]) -> None:
        while queue:
            write = queue.pop(0)
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                write.done.set_exception(StoreUnavailable("cut off"))
                raise
            if write.n < 0:
                write.done.set_exception(StoreUnavailable("refused"))
                continue
            self.written.append(write.n)
            write.done.set_result([Appended(len(self.written), "e")])


async def test_writes_to_a_channel_are_written_one_after_the_other_in_order() -> None:
    store = Store()
    results = await asyncio.gather(*(store.writers.submit("c", Write(n)) for n in range(5)))
    assert store.written == [0, 1, 2, 3, 4]
    assert [r[0].seq for r in results] == [1, 2, 3, 4, 5]


async def test_a_writer_s_error_is_its_write_s_and_the_next_write_goes_on() -> None:
    store = Store()
    failed, ok = await asyncio.gather(
        store.writers.submit("c", Write(-1)), store.writers.submit("c", Write(1)),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(failed, StoreUnavailable) and ok == [Appended(1, "e")]


async def test_a_writer_cut_off_before_it_ran_fails_what_was_queued() -> None:
    store = Store()
    write = asyncio.create_task(store.writers.submit("c", Write(1)))
    await asyncio.sleep(0)
    (task,) = store.writers._tasks
    task.cancel()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(write, 1)
    assert await store.writers.submit("c", Write(2)) == [Appended(1, "e")], "a new writer"


async def test_a_write_given_up_before_it_was_taken_is_never_written() -> None:
    store = Store()
    store.gate.clear()
    first = asyncio.create_task(store.writers.submit("c", Write(1)))
    await asyncio.sleep(0.01)  # taken, waiting at the gate
    second = asyncio.create_task(store.writers.submit("c", Write(2)))
    await asyncio.sleep(0.01)
    second.cancel()
    store.gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert store.written == [1]


async def test_a_write_given_up_after_it_was_taken_leaves_no_unread_error() -> None:
    store = Store()
    store.gate.clear()
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        write = asyncio.create_task(store.writers.submit("c", Write(-1)))
        await asyncio.sleep(0.01)  # taken
        write.cancel()
        store.gate.set()
        await asyncio.sleep(0.01)
        del write
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_closing_lets_writers_finish_within_the_grace_and_refuses_new_writes() -> None:
    store = Store()
    store.gate.clear()
    held = asyncio.create_task(store.writers.submit("c", Write(1)))
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(store.writers.aclose(grace=5))
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailable, match="closing"):
        await store.writers.submit("c", Write(2))
    store.gate.set()
    await closing
    assert await held == [Appended(1, "e")]


async def test_closing_cuts_off_writers_that_outlast_the_grace() -> None:
    store = Store()
    store.gate.clear()
    held = asyncio.create_task(store.writers.submit("c", Write(1)))
    queued = asyncio.create_task(store.writers.submit("c", Write(2)))
    await asyncio.sleep(0.01)
    await store.writers.aclose(grace=0.05)
    for write in (held, queued):
        with pytest.raises(StoreUnavailable):
            await write
