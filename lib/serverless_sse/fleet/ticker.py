"""``server_update`` events for one stream: a full snapshot first, then what changed.

A :class:`FleetTicker` is the stream window's ticker (see
:class:`~serverless_sse.window.Ticker`): the window calls it just after each tick begins and
writes what it returns. It remembers what its own client was last sent, which is per-connection
state on purpose: a reconnect is a new ticker whose first event is a full snapshot, because
metrics are state, not history.

Payload (the source system's shape, so its ``onmessage`` handler reads ``parsed.data``)::

    {"data": [server, ...], "timestamp": <ms>, "tick": <n>, "full": true}

With ``full`` false, ``data`` holds only the servers that changed, each as its ``id`` and the
fields that changed; merge them by ``id``. A tick in which nothing changed sends nothing.

Ticks continue across reconnects. The stream's ids carry the last tick the client got (under
the key :data:`TICKS`, beside the control logs' positions), so a reconnect that arrives while
that tick is still current does not send it again: its full snapshot waits for the next tick.
A client that was away longer starts at the current tick (what it missed is gone: metrics are
not kept), which is a gap it can see in the tick numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cursor import Cursor, Position
from ..window import Synthetic
from .fleet import Fleet
from .model import Snapshot, changes

__all__ = ["TICKS", "FleetTicker", "ticks_epoch"]

TICKS = "#fleet/ticks"
"""The cursor key of a fleet stream's last tick (``#`` keeps it apart from every channel)."""


def ticks_epoch(interval: float) -> str:
    """What tick numbers mean: the interval (in ms) they count. A tick from a deployment with
    another interval names another moment, so it is not resumed from."""
    return f"t{round(interval * 1000)}"


class FleetTicker:
    """The ``server_update`` events of one stream over the servers ``server_ids``.

    ``now`` is the current snapshot; ``cursor`` the reader's ``Last-Event-ID`` (or
    ``?last_event_id=``), if any, already validated by the stream's plan. ``deltas=False``
    sends every server whole at every tick (for clients that replace their list with
    ``parsed.data``).
    """

    def __init__(
        self,
        fleet: Fleet,
        server_ids: Sequence[str],
        now: Snapshot,
        *,
        deltas: bool = True,
        cursor: str | None = None,
    ) -> None:
        self._fleet = fleet
        self._ids = list(server_ids)
        self._deltas = deltas
        self._epoch = ticks_epoch(fleet.interval)
        self._sent: dict[str, dict[str, Any]] | None = None
        self._tick = now.tick
        self.prelude: list[Synthetic] = []
        """What the stream opens with: the full snapshot, unless the reader has this tick."""
        had = _last_tick(cursor, self._epoch)
        # The reader's tick may also be one ahead: it came from an instance whose clock runs a
        # little ahead of this one's. Anything else is from long ago (or made up): start afresh.
        if had is not None and now.tick <= had <= now.tick + 1:
            self._tick = had
        else:
            self._sent = {i: now.servers[i] for i in self._ids}
            self.prelude.append(_update(now.tick, now.timestamp, now.of(self._ids), True))
        self.interval = fleet.until_next_tick()

    @property
    def mark(self) -> tuple[str, Position]:
        """The last tick this reader has, for the stream's cursor."""
        return TICKS, Position(self._epoch, self._tick)

    async def __call__(self) -> Sequence[Synthetic]:
        snapshot = await self._fleet.snapshot()
        self.interval = self._fleet.until_next_tick()
        if snapshot.tick <= self._tick:
            return []  # woken early: this tick was sent already (or the reader has it)
        current = {i: snapshot.servers[i] for i in self._ids}
        if self._sent is None or not self._deltas:
            data, full = list(current.values()), True
        else:
            data, full = changes(self._sent, current), False
        self._sent, self._tick = current, snapshot.tick
        if not data:
            return []
        return [_update(snapshot.tick, snapshot.timestamp, data, full)]


def _last_tick(cursor: str | None, epoch: str) -> int | None:
    if not cursor:
        return None
    position = Cursor.decode(cursor).position(TICKS)
    if position is None or position.epoch != epoch:
        return None
    return position.seq


def _update(tick: int, timestamp: float, data: list[dict[str, Any]], full: bool) -> Synthetic:
    payload = {"data": data, "timestamp": round(timestamp * 1000), "tick": tick, "full": full}
    return ("server_update", payload)
