"""A simulated fleet whose every state is a pure function of (seed, server, tick, control).

No process owns a simulator loop: any instance, at any moment, computes the same state for
the same tick, so two instances serving the same dashboard never disagree, and a cold start
needs no warm-up.

How a metric moves: each is a mean-reverting random walk, an AR(1) process
``x(t) = φ·x(t−1) + ε(t)`` written as its truncated sum ``Σ φᵏ·ε(t−k)`` over the last
``_TERMS`` ticks (φ^44 < 1 %, so the truncation is invisible), with each innovation ``ε`` drawn
from a keyed hash of (seed, server, metric, tick). On top of it:

- a daily load curve by region (busy around local noon, quiet at night) for CPU and network;
- disk usage that grows slowly and drops when logs are rotated (a sawtooth, its own period
  per server);
- incidents: in each block of 100 ticks a server may get a CPU spike, a memory leak (memory
  climbs until the process is recycled) or a spell of being unreachable (``offline``);
- a weekly maintenance reboot per server (what ``started_at`` shows), and control actions
  (:class:`~serverless_sse.fleet.model.Control`) that stop, start or restart it; a restart
  also clears an incident in progress.

Status follows the metrics: ``critical`` at CPU ≥ 90 %, memory ≥ 92 % or disk ≥ 95 %;
``warning`` at CPU ≥ 75 %, memory ≥ 85 % or disk ≥ 85 %; ``online`` otherwise.

Determinism across machines: only IEEE-754 ``+ - * /`` and ``sqrt`` (both exactly rounded
everywhere) touch the numbers; no ``sin``, ``exp`` or ``**``, whose last bit may differ
between C libraries. Cost: about 1,800 keyed hashes per tick for 8 servers (a few ms); the
:class:`~serverless_sse.fleet.fleet.Fleet` computes each tick once per process.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .model import Control, ServerSpec, ServerStatus

__all__ = ["SimulatedFleet"]

_ROLES = ("web", "api", "db", "cache", "worker")
_REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")
# Hours from UTC of each region's local time, as a fraction of a day.
_REGION_OFFSET = {"us-east-1": -5 / 24, "eu-west-1": 0.0, "ap-northeast-2": 9 / 24}

_PHI = 0.9
_TERMS = 44
_WEIGHTS: tuple[float, ...]


def _weights() -> tuple[float, ...]:
    # Repeated products, not PHI ** k: pow() is not exactly rounded on every platform.
    out, weight = [], 1.0
    for _ in range(_TERMS):
        out.append(weight)
        weight *= _PHI
    return tuple(out)


_WEIGHTS = _weights()
# Unit variance: uniform innovations on [-1, 1) have variance 1/3.
_SCALE = math.sqrt(3.0 / sum(w * w for w in _WEIGHTS))

_BLOCK = 100  # ticks per incident block
_INCIDENT_CHANCE = 0.15

_CPU, _MEMORY, _DISK, _NET_IN, _NET_OUT, _INCIDENT, _LAYOUT = range(7)


@dataclass(frozen=True, slots=True)
class _Profile:
    cpu: tuple[float, float]  # mean %, spread
    memory: tuple[float, float]
    disk: tuple[float, float]  # lowest %, growth before rotation
    network: tuple[float, float]  # mean Mbit/s in, out


_PROFILES = {
    "web": _Profile((35.0, 9.0), (55.0, 6.0), (30.0, 20.0), (120.0, 340.0)),
    "api": _Profile((45.0, 11.0), (62.0, 7.0), (28.0, 15.0), (80.0, 95.0)),
    "db": _Profile((40.0, 8.0), (72.0, 5.0), (50.0, 30.0), (45.0, 60.0)),
    "cache": _Profile((20.0, 6.0), (78.0, 4.0), (15.0, 5.0), (150.0, 150.0)),
    "worker": _Profile((55.0, 14.0), (50.0, 9.0), (40.0, 25.0), (20.0, 15.0)),
}


@dataclass(frozen=True, slots=True)
class _Incident:
    kind: str  # "cpu_spike" | "memory_leak" | "unreachable"
    start: int
    length: int

    def covers(self, tick: int) -> bool:
        return self.start <= tick < self.start + self.length


class SimulatedFleet:
    """``size`` servers named by role (``web-01``, ``api-01``, ``db-01``, …), seeded."""

    controllable = True

    def __init__(self, *, seed: int, size: int, interval: float) -> None:
        if size < 1:
            raise ValueError("a fleet has at least one server")
        self.seed = seed
        self.interval = interval
        self._key = hashlib.blake2b(
            struct.pack("<Q", seed % 2**64), digest_size=32, person=b"sse-fleet"
        ).digest()
        # A reboot a week, whatever the interval (at least one tick).
        self._week = max(1, round(7 * 86_400 / interval))
        self.specs: list[ServerSpec] = []
        counts: dict[str, int] = {}
        for index in range(size):
            role = _ROLES[index % len(_ROLES)]
            counts[role] = counts.get(role, 0) + 1
            region = _REGIONS[self._pick(index, _LAYOUT, 0, len(_REGIONS))]
            server_id = f"{role}-{counts[role]:02d}"
            ip = f"10.{self._pick(index, _LAYOUT, 1, 256)}.{index // 250}.{10 + index % 250}"
            self.specs.append(
                ServerSpec(server_id, f"{server_id}.{region}.internal", role, region, ip)
            )
        self._index = {spec.id: n for n, spec in enumerate(self.specs)}
        # Consecutive ticks share all but one innovation of each walk: remembering recent
        # ones makes a tick cost ~40 hashes instead of ~1,800. A pure function's cache: it
        # changes no result, and it dies with the fleet.
        self._unit = functools.lru_cache(maxsize=16_384)(self._draw)

    # -- randomness: a keyed hash, so a value depends only on its coordinates -------------

    def _bits(self, server: int, channel: int, a: int, b: int = 0) -> int:
        digest = hashlib.blake2b(
            struct.pack("<IIqq", server, channel, a, b), digest_size=8, key=self._key
        ).digest()
        return int.from_bytes(digest, "little")

    def _draw(self, server: int, channel: int, a: int, b: int = 0) -> float:
        """Uniform on [0, 1)."""
        return (self._bits(server, channel, a, b) >> 11) * (1.0 / 9007199254740992.0)

    def _pick(self, server: int, channel: int, a: int, n: int) -> int:
        return self._bits(server, channel, a) % n

    def _walk(self, server: int, metric: int, tick: int) -> float:
        """The metric's AR(1) deviation at ``tick``: mean 0, variance 1."""
        total = 0.0
        for k, weight in enumerate(_WEIGHTS):
            total += weight * (2.0 * self._unit(server, metric, tick - k) - 1.0)
        return total * _SCALE

    # -- incidents and the calendar --------------------------------------------------------

    def _incident(self, server: int, block: int) -> _Incident | None:
        if self._unit(server, _INCIDENT, block, 0) >= _INCIDENT_CHANCE:
            return None
        roll = self._unit(server, _INCIDENT, block, 1)
        kind, low, high = (
            ("cpu_spike", 4, 15)
            if roll < 0.6
            else ("memory_leak", 10, 40)
            if roll < 0.85
            else ("unreachable", 3, 10)
        )
        length = low + self._pick(server, _INCIDENT, block * 4 + 2, high - low + 1)
        start = block * _BLOCK + self._pick(server, _INCIDENT, block * 4 + 3, _BLOCK)
        return _Incident(kind, start, length)

    def _incident_at(self, server: int, tick: int) -> _Incident | None:
        block = tick // _BLOCK
        # Incidents last less than a block: only this block's and the one before can cover.
        for candidate in (self._incident(server, block), self._incident(server, block - 1)):
            if candidate is not None and candidate.covers(tick):
                return candidate
        return None

    def _daily(self, region: str, tick: int) -> float:
        """Load factor 0.7 (night) … 1.3 (local noon), smooth, from arithmetic alone."""
        day = tick * self.interval / 86_400 + _REGION_OFFSET[region]
        phase = day - math.floor(day)  # the local time of day: 0 midnight, 0.5 noon
        tri = 1.0 - abs(2.0 * phase - 1.0)  # 0 at local midnight, 1 at noon
        return 0.7 + 0.6 * (tri * tri * (3.0 - 2.0 * tri))

    def _booted(self, server: int, tick: int) -> int:
        """The tick of the last weekly maintenance reboot at or before ``tick``."""
        phase = self._pick(server, _LAYOUT, 2, self._week)
        return tick - (tick + phase) % self._week

    # -- state -----------------------------------------------------------------------------

    def server_ids(self) -> list[str]:
        return [spec.id for spec in self.specs]

    def state(self, server_id: str, tick: int, control: Control | None = None) -> dict[str, Any]:
        """The server's state at ``tick``, under the control record ``control``."""
        index = self._index[server_id]
        spec = self.specs[index]
        profile = _PROFILES[spec.role]
        action = control.in_force(tick) if control is not None else None
        imposed: ServerStatus | None = action.status(tick) if action is not None else None
        booted = self._booted(index, tick)
        ready = action.ready_tick() if action is not None else None
        if ready is not None and ready <= tick:
            booted = max(booted, ready)
        state: dict[str, Any] = {**spec.fields(), "status": imposed or "online"}
        state["started_at"] = _iso(booted * self.interval)
        if imposed in ("stopped", "starting"):
            return {**state, **_NO_METRICS}

        incident = self._incident_at(index, tick)
        if incident is not None and incident.start < booted <= tick:
            incident = None  # the server was rebooted since it began
        if incident is not None and incident.kind == "unreachable" and imposed is None:
            return {**state, **_NO_METRICS, "status": "offline"}

        load = self._daily(spec.region, tick)
        cpu = profile.cpu[0] * load + profile.cpu[1] * self._walk(index, _CPU, tick)
        memory = profile.memory[0] + profile.memory[1] * self._walk(index, _MEMORY, tick)
        if incident is not None and incident.kind == "cpu_spike":
            cpu += 45.0
        if incident is not None and incident.kind == "memory_leak":
            memory += 35.0 * (tick - incident.start + 1) / incident.length
        period = 1500 + self._pick(index, _DISK, -1, 3000)
        saw = ((tick + self._pick(index, _DISK, -2, period)) % period) / period
        disk = profile.disk[0] + profile.disk[1] * saw + 0.3 * self._walk(index, _DISK, tick)
        net_in = profile.network[0] * load * (1.0 + 0.3 * self._walk(index, _NET_IN, tick))
        net_out = profile.network[1] * load * (1.0 + 0.3 * self._walk(index, _NET_OUT, tick))

        metrics = {
            "cpu": _percent(cpu, 1.0),
            "memory": _percent(memory, 5.0),
            "disk": _percent(disk, 1.0),
            "network_in": round(max(0.0, net_in), 1),
            "network_out": round(max(0.0, net_out), 1),
        }
        status = imposed or _status(metrics["cpu"], metrics["memory"], metrics["disk"])
        return {**state, "status": status, **metrics}

    async def states(
        self, tick: int, controls: dict[str, Control | None]
    ) -> dict[str, dict[str, Any]]:
        """Every server's state at ``tick`` (``controls``: each server's control record)."""
        return {i: self.state(i, tick, controls.get(i)) for i in self._index}


_NO_METRICS: dict[str, Any] = {
    "cpu": None,
    "memory": None,
    "disk": None,
    "network_in": None,
    "network_out": None,
}


def _percent(value: float, low: float) -> float:
    return round(min(100.0, max(low, value)), 1)


def _status(cpu: float, memory: float, disk: float) -> ServerStatus:
    if cpu >= 90 or memory >= 92 or disk >= 95:
        return "critical"
    if cpu >= 75 or memory >= 85 or disk >= 85:
        return "warning"
    return "online"


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
