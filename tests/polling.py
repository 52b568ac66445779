"""Waiting for a condition another process makes true: polled, with a bound that only says
when to give up (a failure names what never happened; no test asserts how long it took)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["wait_until"]


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str,
    *,
    limit: float = 60.0,
    every: float = 0.1,
) -> None:
    """Return once ``check()`` holds (it may be a coroutine function); raise
    ``AssertionError`` naming ``what`` if it still does not after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {limit:.0f} s")
        await asyncio.sleep(every)
