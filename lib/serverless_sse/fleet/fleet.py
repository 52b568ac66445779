"""The fleet as the service sees it: a source of server states, control records in the store,
and one control log per server (``fleet/servers/<id>``).

Metrics are state, not history: they are computed for the current tick when asked (once per
tick per process, shared by every stream), never stored. What a control action changes *is*
stored, durably: the server's control record (which the simulation reads at every tick, on
every instance) and a ``control_result`` event in the server's log, so a client resumes it
with ``Last-Event-ID`` like any other event.

Per-user filtering: a server is visible to a principal that may subscribe to its channel
``fleet/servers/<id>`` (:meth:`Fleet.visible`), and controllable by one that may publish to it.
The open default sees and controls everything; credentials with channel patterns narrow it
(``fleet/servers/web-*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ..auth import Principal
from ..cursor import Cursor, Position
from ..errors import Conflict, NotFound
from ..events import NewEvent, dumps
from ..locks import StoreLock
from ..settings import Settings
from ..stores.base import EventStore
from .model import Control, ControlAction, ServerSpec, Snapshot, refusal

__all__ = ["ControlResult", "Fleet", "FleetSource", "server_channel"]


class FleetSource(Protocol):
    """Where server states come from: the simulation, or the host machine."""

    specs: list[ServerSpec]
    controllable: bool

    async def states(
        self, tick: int, controls: dict[str, Control | None]
    ) -> dict[str, dict[str, Any]]: ...


def server_channel(server_id: str) -> str:
    """The channel of a server's control log, and the name its permissions use."""
    return f"fleet/servers/{server_id}"


@dataclass(frozen=True, slots=True)
class ControlResult:
    """An accepted control action: the ``control_result`` event's data and where it went."""

    data: dict[str, Any]
    cursor: str
    seq: int


class Fleet:
    """Snapshots, per-user visibility and control of one fleet. One per process."""

    def __init__(
        self,
        store: EventStore,
        source: FleetSource,
        *,
        interval: float,
        name: str,
        lock_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.source = source
        self.interval = interval
        self.name = name
        self._lock_wait = lock_wait
        self._clock = clock
        self._specs = {spec.id: spec for spec in source.specs}
        self._snapshots: dict[int, asyncio.Task[Snapshot]] = {}

    @classmethod
    def from_settings(cls, store: EventStore, settings: Settings) -> Fleet:
        interval = settings.fleet_interval_seconds
        source: FleetSource
        if settings.fleet_source == "host":
            from .host import HostFleet

            source, name = HostFleet(interval=interval), "host"
        else:
            from .simulation import SimulatedFleet

            source = SimulatedFleet(
                seed=settings.fleet_seed, size=settings.fleet_size, interval=interval
            )
            name = f"sim{settings.fleet_seed}"
        return cls(
            store,
            source,
            interval=interval,
            name=name,
            lock_wait=settings.task_lock_wait_seconds,
        )

    # -- servers and who sees them ---------------------------------------------------------

    @property
    def specs(self) -> list[ServerSpec]:
        return list(self._specs.values())

    def spec(self, server_id: str) -> ServerSpec:
        """The server, or :class:`NotFound` (404)."""
        spec = self._specs.get(server_id)
        if spec is None:
            raise NotFound(f"no server {server_id!r}")
        return spec

    def visible(self, principal: Principal) -> list[ServerSpec]:
        """The servers ``principal`` may see: those whose channel it may subscribe to."""
        return [s for s in self._specs.values() if principal.may_subscribe(server_channel(s.id))]

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> int:
        return math.floor(self._clock() / self.interval)

    def until_next_tick(self) -> float:
        """Seconds to just after the next tick begins (a stream samples right after the
        fleet's state changed, not somewhere in between)."""
        now = self._clock()
        boundary = (math.floor(now / self.interval) + 1) * self.interval
        return boundary - now + min(0.05, self.interval * 0.05)

    # -- state -----------------------------------------------------------------------------

    async def snapshot(self, tick: int | None = None) -> Snapshot:
        """Every server's state at ``tick`` (now by default), computed once per process."""
        tick = self.tick() if tick is None else tick
        task = self._snapshots.get(tick)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._compute(tick))
            self._snapshots[tick] = task
            for old in sorted(self._snapshots)[:-4]:
                del self._snapshots[old]
        return await asyncio.shield(task)

    async def _compute(self, tick: int) -> Snapshot:
        ids = list(self._specs)
        controls = await self._controls(ids)
        servers = await self.source.states(tick, controls)
        return Snapshot(tick, tick * self.interval, {i: servers[i] for i in ids})

    async def _controls(self, ids: Sequence[str]) -> dict[str, Control | None]:
        if not self.source.controllable:
            return {}
        raw = await asyncio.gather(*(self.store.get_value(self._key(i)) for i in ids))
        return {i: None if r is None else Control.loads(r) for i, r in zip(ids, raw, strict=True)}

    async def cursor(self, server_ids: Sequence[str]) -> str:
        """The position after every event now in these servers' control logs."""
        channels = [server_channel(i) for i in server_ids]
        states = await self.store.states(channels)
        return Cursor.encode_positions(
            {c: Position(s.epoch, s.last_seq) for c, s in zip(channels, states, strict=True)}
        )

    # -- control ---------------------------------------------------------------------------

    async def control(self, server_id: str, action: ControlAction) -> ControlResult:
        """Accept ``action`` from the next tick on, store it, and log its ``control_result``.

        404 for an unknown server; 409 when the server's state does not allow it (starting a
        running server, restarting a stopped one) or when it is a host fleet.
        """
        spec = self.spec(server_id)
        if not self.source.controllable:
            raise Conflict("the host fleet reports the machine it runs on and cannot be controlled")
        async with StoreLock(self.store, f"fleet:{self.name}:{server_id}", wait=self._lock_wait):
            current = (await self._controls([server_id]))[server_id]
            if current is not None and not current.logged:
                # A request died between storing the action and logging it: log it now (the
                # idempotency key makes this a no-op if it got logged after all).
                await self._log(spec, current)
            now = self._clock()
            effective = math.floor(now / self.interval) + 1
            will_be = await self.source.states(effective, {server_id: current})
            refused = refusal(action, will_be[server_id]["status"], server_id)
            if refused is not None:
                raise Conflict(refused)
            record = (
                current.then(action, effective, now)
                if current is not None
                else Control(action, effective, now)
            )
            await self.store.put_value(self._key(server_id), record.dumps())
            result = await self._log(spec, record)
            await self.store.put_value(self._key(server_id), replace(record, logged=True).dumps())
        for tick in [t for t in self._snapshots if t >= effective]:
            with contextlib.suppress(KeyError):
                del self._snapshots[tick]
        return result

    async def _log(self, spec: ServerSpec, record: Control) -> ControlResult:
        steps = record.sequence()
        data = {
            "server_id": spec.id,
            "action": record.action,
            "success": True,
            "status": steps[0][0],
            "sequence": [{"status": s, "at": _iso(t * self.interval)} for s, t in steps],
            "requested_at": _iso(record.at),
            "message": f"{record.action} of {spec.id} accepted",
        }
        payload = {"data": data, "timestamp": int(record.at * 1000)}
        key = f"control:{record.action}:{record.tick}:{record.at!r}"
        channel = server_channel(spec.id)
        [appended] = await self.store.append(
            channel, [NewEvent("control_result", dumps(payload), key)]
        )
        cursor = Cursor.encode_positions({channel: Position(appended.epoch, appended.seq)})
        return ControlResult(data, cursor, appended.seq)

    def _key(self, server_id: str) -> str:
        return f"fleet:{self.name}:control:{server_id}"


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
