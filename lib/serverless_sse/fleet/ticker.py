"""``server_update`` events for one stream: the full snapshot first, then what changed.

A :class:`FleetTicker` is the stream window's ticker (see
:class:`~serverless_sse.window.Ticker`): the window calls it just after each tick begins and
writes what it returns. It remembers what its own client was last sent, which is per-connection
state on purpose: a reconnect is a new ticker whose first event is a full snapshot, because
metrics are state, not history.

Payload (the source system's shape, so its ``onmessage`` handler reads ``parsed.data``)::

    {"data": [server, ...], "timestamp": <ms>, "tick": <n>, "full": true}

With ``full`` false, ``data`` holds only the servers that changed, each as its ``id`` and the
fields that changed; merge them by ``id``. A tick in which nothing changed sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..window import Synthetic
from .fleet import Fleet
from .model import Snapshot, changes

__all__ = ["FleetTicker"]


class FleetTicker:
    """The ``server_update`` events of one stream over the servers ``server_ids``.

    ``deltas=False`` sends every server whole at every tick (for clients that replace their
    list with ``parsed.data``).
    """

    def __init__(
        self, fleet: Fleet, server_ids: Sequence[str], first: Snapshot, *, deltas: bool = True
    ) -> None:
        self._fleet = fleet
        self._ids = list(server_ids)
        self._deltas = deltas
        self._sent = {i: first.servers[i] for i in self._ids}
        self._tick = first.tick
        self.first: Synthetic = _update(first.tick, first.timestamp, first.of(self._ids), True)
        """The full snapshot the stream opens with (its prelude)."""
        self.interval = fleet.until_next_tick()

    async def __call__(self) -> Sequence[Synthetic]:
        snapshot = await self._fleet.snapshot()
        self.interval = self._fleet.until_next_tick()
        if snapshot.tick == self._tick:
            return []  # woken early: this tick was sent already
        current = {i: snapshot.servers[i] for i in self._ids}
        data = changes(self._sent, current) if self._deltas else list(current.values())
        self._sent, self._tick = current, snapshot.tick
        if not data:
            return []
        return [_update(snapshot.tick, snapshot.timestamp, data, not self._deltas)]


def _update(tick: int, timestamp: float, data: list[dict[str, Any]], full: bool) -> Synthetic:
    payload = {"data": data, "timestamp": round(timestamp * 1000), "tick": tick, "full": full}
    return ("server_update", payload)
