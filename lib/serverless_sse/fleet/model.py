"""The fleet's values: servers, their states, control records, and what changed between two
snapshots. Pure: no clock, no store.

Time is counted in *ticks* of the update interval (tick ``t`` covers ``[t * I, (t + 1) * I)``
seconds since the Unix epoch), so every instance names the same moment the same way.

A control action changes a server from the tick after it was accepted (its *effective* tick),
through a fixed status sequence:

- ``stop``: ``stopping`` for one tick, then ``stopped`` (no metrics) until a ``start``;
- ``start``: ``starting`` (booting, no metrics) for two ticks, then running again;
- ``restart``: ``stopping`` for one tick, ``starting`` for two, then running, with a fresh
  ``started_at`` (and whatever incident it had, cleared).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictStr

__all__ = [
    "ACTIONS",
    "BOOT_TICKS",
    "STOP_TICKS",
    "Control",
    "ControlAction",
    "ControlRequest",
    "ServerSpec",
    "ServerStatus",
    "Snapshot",
    "changes",
    "refusal",
]

ServerStatus = Literal[
    "online", "warning", "critical", "offline", "stopping", "stopped", "starting"
]
ControlAction = Literal["restart", "stop", "start"]
ACTIONS: tuple[ControlAction, ...] = ("restart", "stop", "start")

STOP_TICKS = 1
BOOT_TICKS = 2


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What does not change about a server."""

    id: str
    hostname: str
    role: str
    region: str
    ip: str

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "role": self.role,
            "region": self.region,
            "ip": self.ip,
        }


@dataclass(frozen=True, slots=True)
class Control:
    """The last control action on a server, as stored: it governs the server from ``tick``
    on. ``previous`` is the action it replaced, still in force before ``tick`` (one level is
    enough: nothing ever asks about a moment before the replaced action took effect)."""

    action: ControlAction
    tick: int
    at: float  # when it was accepted (seconds since the epoch)
    logged: bool = False  # its control_result event is known to be in the log
    previous: Control | None = None

    def in_force(self, tick: int) -> Control | None:
        """The action governing ``tick``, if any."""
        if tick >= self.tick:
            return self
        if self.previous is not None and tick >= self.previous.tick:
            return self.previous
        return None

    def then(self, action: ControlAction, tick: int, at: float) -> Control:
        """The record after ``action`` is accepted to take effect at ``tick``."""
        if self.tick >= tick:
            # This one never took effect: the new action replaces it outright.
            previous = self.previous
        else:
            previous = Control(self.action, self.tick, self.at, True)
        return Control(action, tick, at, False, previous)

    def ready_tick(self) -> int | None:
        """The first tick a ``start``/``restart`` has the server running again."""
        if self.action == "start":
            return self.tick + BOOT_TICKS
        if self.action == "restart":
            return self.tick + STOP_TICKS + BOOT_TICKS
        return None

    def status(self, tick: int) -> ServerStatus | None:
        """The status this action imposes at ``tick`` (``None``: the server runs normally)."""
        offset = tick - self.tick
        if self.action == "stop":
            return "stopping" if offset < STOP_TICKS else "stopped"
        if self.action == "restart" and offset < STOP_TICKS:
            return "stopping"
        ready = self.ready_tick()
        assert ready is not None
        return "starting" if tick < ready else None

    def sequence(self) -> list[tuple[ServerStatus, int]]:
        """The statuses this action goes through, with the tick each begins."""
        if self.action == "stop":
            return [("stopping", self.tick), ("stopped", self.tick + STOP_TICKS)]
        ready = self.ready_tick()
        assert ready is not None
        steps: list[tuple[ServerStatus, int]] = []
        if self.action == "restart":
            steps.append(("stopping", self.tick))
        steps.append(("starting", ready - BOOT_TICKS))
        steps.append(("online", ready))
        return steps

    def dumps(self) -> str:
        return json.dumps(self._as_dict(), separators=(",", ":"))

    def _as_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "action": self.action,
            "tick": self.tick,
            "at": self.at,
            "logged": self.logged,
        }
        if self.previous is not None:
            value["previous"] = self.previous._as_dict()
        return value

    @classmethod
    def loads(cls, text: str) -> Control:
        return cls._from(json.loads(text))

    @classmethod
    def _from(cls, value: Mapping[str, Any]) -> Control:
        action = value["action"]
        if action not in ACTIONS:
            raise ValueError(f"unknown control action {action!r} in the store")
        previous = value.get("previous")
        return cls(
            action,
            int(value["tick"]),
            float(value["at"]),
            bool(value.get("logged", False)),
            None if previous is None else cls._from(previous),
        )


class ControlRequest(BaseModel):
    """``POST /api/servers/control`` body. ``serverId`` is accepted too: the source system's
    client sends ``{serverId, action}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_id: StrictStr = Field(validation_alias=AliasChoices("server_id", "serverId"))
    action: ControlAction


def refusal(action: ControlAction, status: str, server_id: str) -> str | None:
    """Why ``action`` cannot be applied to a server that will be ``status``; ``None`` if it
    can. A stopped server can only be started; a running one cannot be started again."""
    if action == "start":
        if status == "stopped":
            return None
        if status in ("starting", "stopping"):
            return f"{server_id} is {status}; try again once that has finished"
        return f"{server_id} is already running ({status})"
    if status in ("stopped", "stopping"):
        return f"{server_id} is {status}" + ("; start it instead" if action == "restart" else "")
    if action == "restart" and status == "starting":
        return f"{server_id} is starting already"
    return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every server's state at one tick, in fleet order."""

    tick: int
    timestamp: float  # the tick's start, seconds since the epoch
    servers: dict[str, dict[str, Any]]

    def of(self, ids: list[str]) -> list[dict[str, Any]]:
        return [self.servers[i] for i in ids]


def changes(
    previous: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What a client holding ``previous`` needs to hold ``current``: for each server that
    changed, its ``id`` and the fields whose values differ (a new server whole; a server that
    is gone as ``{"id", "removed": true}``)."""
    out: list[dict[str, Any]] = []
    for server_id, state in current.items():
        before = previous.get(server_id)
        if before is None:
            out.append(dict(state))
            continue
        changed = {k: v for k, v in state.items() if k not in before or before[k] != v}
        changed.update({k: None for k in before.keys() - state.keys()})
        if changed:
            out.append({"id": server_id, **changed})
    out.extend({"id": gone, "removed": True} for gone in sorted(previous.keys() - current.keys()))
    return out
