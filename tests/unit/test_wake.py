"""Wake: what a stream sleeps on, and how it watches its client meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

from serverless_sse.fanout import Wake


def later(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


class Client:
    """An ASGI ``receive``: the request's (empty) body first, then nothing until it leaves."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.calls = 0

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_a_wake_set_before_the_sleep_returns_at_once() -> None:
    wake = Wake()
    wake.set()
    async with asyncio.timeout(1):
        assert await wake.sleep_until(later(60)) is True
        assert await wake.sleep_until(later(60), Client().receive) is True


async def test_setting_a_wake_ends_the_sleep_with_or_without_a_client() -> None:
    for receive in (None, Client().receive):
        wake = Wake()
        sleep = asyncio.create_task(wake.sleep_until(later(60), receive))
        await asyncio.sleep(0.01)
        assert not sleep.done()
        wake.set()
        async with asyncio.timeout(1):
            assert await sleep is True


async def test_the_sleep_ends_at_its_due_time() -> None:
    for receive in (None, Client().receive):
        async with asyncio.timeout(2):
            assert await Wake().sleep_until(later(0.05), receive) is True


async def test_a_client_that_leaves_ends_the_sleep_with_false() -> None:
    client = Client()
    sleep = asyncio.create_task(Wake().sleep_until(later(60), client.receive))
    await asyncio.sleep(0.01)
    assert not sleep.done(), "the request's body is not a reason to wake"
    client.left.set()
    async with asyncio.timeout(1):
        assert await sleep is False


async def test_a_wake_cleared_sleeps_again() -> None:
    wake = Wake()
    wake.set()
    wake.clear()
    sleep = asyncio.create_task(wake.sleep_until(later(60)))
    await asyncio.sleep(0.01)
    assert not sleep.done()
    sleep.cancel()
