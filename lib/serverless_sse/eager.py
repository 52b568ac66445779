"""Run a coroutine at once, in the caller's step, and hand it to a task only if it waits.

An ASGI ``send`` into a socket with room completes without ever suspending. Running it
eagerly lets the fan-out write one event to a thousand streams in one pass of a loop, instead
of waking a thousand tasks that each write it (a task step costs more than the write itself).
Only a send that must wait (the client's socket is full) becomes a task. Python 3.12's eager
task factory does the same for every task of a loop; this does it for the calls that ask.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any

__all__ = ["run_eagerly"]


def run_eagerly(awaitable: Awaitable[None]) -> asyncio.Future[None] | None:
    """Run ``awaitable`` up to its first suspension, now.

    Returns ``None`` when it finished (its exception, if any, is raised here), or a future
    that finishes it once what it waits for is done.
    """
    if not isinstance(awaitable, Coroutine):
        return asyncio.ensure_future(awaitable)
    try:
        blocked_on = awaitable.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(awaitable, blocked_on))


async def _finish(coro: Coroutine[Any, Any, None], blocked_on: Any) -> None:
    """Go on stepping ``coro`` as a task would: wait for what it yielded, then resume it; a
    cancellation goes to what it waits for and into the coroutine, as a task's would."""
    while True:
        try:
            if blocked_on is None:  # a bare yield (asyncio.sleep(0)): give the loop a turn
                await asyncio.sleep(0)
            else:
                # The coroutine yielded an asyncio future it awaits; this task waits for it
                # instead, and the coroutine takes the result (or exception) when resumed.
                blocked_on._asyncio_future_blocking = False
                await asyncio.wait((blocked_on,))
        except asyncio.CancelledError as cancelled:
            if blocked_on is not None:
                blocked_on.cancel()
            try:
                blocked_on = coro.throw(cancelled)  # it may clean up, or even go on
            except StopIteration:
                return
            continue
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            return
