"""The interoperability run every client goes through, whoever wrote it.

A real uvicorn server; a publisher that appends ``tick`` events ``{"n": 1}, {"n": 2}, …`` to a
fresh channel at a steady rate; a client that follows ``…/stream?window=2&from=start`` (so every
response lasts about two seconds and ends with ``timeout``). Publishing goes on until the client
has seen three window ends, then stops; the client must then hold every tick exactly once, in
order. ``from=start`` only applies to the first request: on every reconnect the
``Last-Event-ID`` header wins, so a replay would show up as a repeated tick.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

WINDOW_ENDS = 3
TICK_SECONDS = 0.05


@dataclass
class Progress:
    """What a client saw so far (filled in by whichever thread or process reads it)."""

    ticks: list[int] = field(default_factory=list)
    window_ends: int = 0
    error: BaseException | None = None


class Publisher:
    """Publishes ticks to ``channel`` every ``TICK_SECONDS`` from a thread until stopped."""

    def __init__(self, base_url: str, channel: str) -> None:
        self.url = f"{base_url}/channels/{channel}/events"
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                while not self._stop.is_set():
                    body = {"type": "tick", "data": {"n": self.published + 1}}
                    response = client.post(self.url, json=body)
                    response.raise_for_status()
                    self.published += 1
                    self._stop.wait(TICK_SECONDS)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)
        if self.error is not None:
            raise self.error


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def new_channel() -> str:
    return f"interop/{uuid.uuid4().hex[:12]}"


def stream_url(base_url: str, channel: str, fmt: str = "named") -> str:
    return f"{base_url}/channels/{channel}/stream?window=2&from=start&format={fmt}"


def follow_steadily(base_url: str, channel: str, *progress: Callable[[], Progress]) -> int:
    """Publish until every client saw ``WINDOW_ENDS`` window ends, then until each has every
    tick; returns how many were published. Raises when a client reported an error."""

    def reached(check: Callable[[Progress], bool]) -> bool:
        for read in progress:
            seen = read()
            if seen.error is not None:
                raise AssertionError(f"the client failed: {seen.error!r}") from seen.error
            if not check(seen):
                return False
        return True

    with Publisher(base_url, channel) as publisher:
        wait_until(
            lambda: reached(lambda p: p.window_ends >= WINDOW_ENDS),
            timeout=45,
            what=f"{WINDOW_ENDS} window ends",
        )
    total = publisher.published
    wait_until(
        lambda: reached(lambda p: len(p.ticks) >= total), timeout=15, what=f"all {total} ticks"
    )
    return total
