"""Learning that the server is stopping while responses are still open.

ASGI tells an app that its server stops only through the lifespan's shutdown, and uvicorn
sends that only after every open response has finished: on SIGTERM it stops accepting, then
waits for open connections (with no limit unless ``--timeout-graceful-shutdown`` is given),
and only then runs the lifespan's shutdown. A stream would hold the process until its window
ends (minutes), and the platform then kills it mid-stream: every client sees a cut connection
instead of a ``timeout`` with the cursor to resume from elsewhere.

Servers learn that they should stop from SIGTERM (the platform) or SIGINT (Ctrl-C), through a
Python signal handler that they install before the app starts (uvicorn's
``Server.handle_exit``, installed with ``signal.signal``). :func:`on_exit_signal` chains onto
such a handler: the server's own handler still runs, unchanged, and the app's callback is
scheduled on its event loop as well. A signal that has no Python handler (``SIG_DFL``,
``SIG_IGN``: no server is managing its shutdown) is left alone, so nothing changes what a
signal does to the process. A server that listens through ``loop.add_signal_handler`` keeps
working too: its Python-level handler is a no-op that the chain calls, and the loop still gets
the signal through its wake-up descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

__all__ = ["EXIT_SIGNALS", "on_exit_signal"]

EXIT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


def on_exit_signal(
    callback: Callable[[], object], *, signals: Sequence[signal.Signals] = EXIT_SIGNALS
) -> Callable[[], None]:
    """Call ``callback`` on the running event loop when one of ``signals`` arrives, after the
    handler that was there (a server's) has run. Returns what undoes it.

    Only signals that already have a Python handler are chained. Outside the main thread
    (where Python runs signal handlers) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, tuple[Any, Callable[[int, FrameType | None], Any]]] = {}
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def chained(
            signum: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], Any] = previous,
        ) -> None:
            # Scheduled first: the server's handler may raise (KeyboardInterrupt).
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        signal.signal(sig, chained)
        installed[sig] = (chained, previous)

    def undo() -> None:
        for sig, (chained, previous) in installed.items():
            # Only if nobody replaced it meanwhile (uvicorn restores its own originals itself).
            if signal.getsignal(sig) is chained:
                signal.signal(sig, previous)
        installed.clear()

    return undo


def _nothing() -> None:
    return None
