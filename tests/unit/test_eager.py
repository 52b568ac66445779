"""run_eagerly: a coroutine runs at once, and becomes a task only if it has to wait."""

from __future__ import annotations

import asyncio

import pytest

from serverless_sse.eager import run_eagerly


async def test_a_coroutine_that_never_waits_is_done_before_the_call_returns() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert run_eagerly(write()) is None
    assert done == ["written"]


async def test_a_coroutine_that_waits_is_finished_by_the_future_returned() -> None:
    room = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def write() -> None:
        steps.append("started")
        steps.append(await room)

    pending = run_eagerly(write())
    assert steps == ["started"] and pending is not None and not pending.done()
    room.set_result("finished")
    await pending
    assert steps == ["started", "finished"]


async def test_an_error_before_the_first_wait_is_raised_by_the_call() -> None:
    async def write() -> None:
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        run_eagerly(write())


async def test_an_error_after_a_wait_reaches_the_coroutine_and_then_the_future() -> None:
    room = asyncio.get_running_loop().create_future()
    seen: list[BaseException] = []

    async def write() -> None:
        try:
            await room
        except OSError as exc:
            seen.append(exc)
            raise

    pending = run_eagerly(write())
    assert pending is not None
    room.set_exception(OSError("reset"))
    with pytest.raises(OSError, match="reset"):
        await pending
    assert len(seen) == 1


async def test_cancelling_the_future_cancels_the_coroutine_as_a_task_would() -> None:
    waited = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def write() -> None:
        try:
            await waited
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0)  # cleanup may itself await
            seen.append("cleaned up")
            raise

    pending = run_eagerly(write())
    assert pending is not None
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert seen == ["cancelled", "cleaned up"]
    assert waited.cancelled(), "what it waited for is cancelled too"


async def test_a_coroutine_that_yields_to_the_loop_goes_on_after_its_turn() -> None:
    steps: list[int] = []

    async def write() -> None:
        steps.append(1)
        await asyncio.sleep(0)
        steps.append(2)

    pending = run_eagerly(write())
    assert steps == [1] and pending is not None
    await pending
    assert steps == [1, 2]


async def test_an_awaitable_that_is_not_a_coroutine_is_awaited_as_a_future() -> None:
    future = asyncio.get_running_loop().create_future()
    pending = run_eagerly(future)
    assert pending is future
