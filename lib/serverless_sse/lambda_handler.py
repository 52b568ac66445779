"""AWS Lambda entry points: an ASGI app behind API Gateway (through Mangum), and the event loop
a Lambda container keeps.

Lambda calls a Python handler synchronously, one invocation at a time per container
(execution environment), and freezes the process between invocations. Two things follow:

- Everything the service holds (store clients, the shared feeds, thread pools) is bound to an
  event loop. ``asyncio.run`` per invocation would give each one a new loop and break what an
  earlier invocation made, so a container keeps one loop (:class:`ContainerLoop`) and runs
  every invocation on it; between invocations whatever waits on it stays suspended.
- Mangum (which turns API Gateway and ALB events into ASGI requests and buffers each whole
  response: it never streams) runs the app's lifespan around every invocation by default,
  which would build the service (clients, pools, feeds) again for every request.
  :class:`LambdaHandler` turns that off and runs the app's startup once, on the container's
  first invocation; there is no shutdown (Lambda discards a frozen container without notice).

Streams answer as long-polls there: see ``Service.buffered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mangum import Mangum
    from mangum.protocols import LifespanCycle
    from mangum.types import ASGI

__all__ = ["ContainerLoop", "LambdaHandler"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ContainerLoop:
    """The one event loop of a Lambda container, made on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> asyncio.AbstractEventLoop:
        """The loop, made this thread's current one (Mangum runs each request on that)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one invocation's work to its end."""
        return self.enter().run_until_complete(work)

    def close(self) -> None:
        """Cancel what still waits on the loop, and close it (a new one is made if used again)."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            asyncio.set_event_loop(None)


class LambdaHandler:
    """``app`` as a Lambda handler for API Gateway (HTTP API, REST API) and ALB events.

    The app starts (its lifespan's startup: settings, the service) on the first invocation,
    and serves every later invocation of the container as it is; a startup that fails fails
    that invocation, and the next one tries again. Mangum is imported then too, not when the
    function's module is imported.
    """

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self._container = ContainerLoop()
        self._adapter: Mangum | None = None
        self._lifespan: LifespanCycle | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        adapter = self._adapter or self._start()
        self._container.enter()
        return adapter(event, context)

    def _start(self) -> Mangum:
        from mangum import Mangum
        from mangum.protocols import LifespanCycle

        self._container.enter()  # LifespanCycle runs on the current loop
        lifespan = LifespanCycle(self.app, "on")
        try:
            lifespan.__enter__()  # runs the startup; raises if it failed
        except BaseException:
            self._container.close()
            raise
        self._lifespan = lifespan
        self._adapter = Mangum(self.app, lifespan="off")
        return self._adapter

    @property
    def started(self) -> bool:
        """Whether the app has started in this container."""
        return self._adapter is not None

    def close(self) -> None:
        """Stop the app (its lifespan's shutdown) and the loop, as a container that ends would;
        the next invocation starts the app again. For tests and local runs."""
        lifespan, self._lifespan, self._adapter = self._lifespan, None, None
        try:
            if lifespan is not None:
                self._container.enter()
                with contextlib.suppress(Exception):
                    lifespan.__exit__(None, None, None)
        finally:
            self._container.close()
