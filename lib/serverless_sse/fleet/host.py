"""The machine serving the request, as a one-server fleet (``SSE_FLEET_SOURCE=host``).

Read with psutil (``/proc`` on Linux): CPU busy share and network throughput since the
previous sample, memory and root-disk usage now, boot time. It reports the instance that
answers, so it means one thing only where one machine serves: a local run, a single VM. It
cannot be controlled (stopping the server that serves the dashboard is not a feature).

Each call costs a handful of ``/proc`` reads (tens of microseconds), done inline: a thread
hand-off would cost more than the reads. The first sample of a process waits 0.2 s between
two readings, since a busy share needs an interval.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .model import Control, ServerSpec, ServerStatus

__all__ = ["HostFleet"]


@dataclass(frozen=True, slots=True)
class _Counters:
    at: float
    busy: float
    total: float
    received: int
    sent: int


class HostFleet:
    """This machine, as server ``host``."""

    controllable = False

    def __init__(self, *, interval: float) -> None:
        import psutil  # only a host-mode deployment pays for the import

        self._psutil = psutil
        self.interval = interval
        self.specs = [ServerSpec("host", socket.gethostname(), "host", "local", _address())]
        self._last: _Counters | None = None
        self._lock = asyncio.Lock()

    def server_ids(self) -> list[str]:
        return ["host"]

    def _counters(self) -> _Counters:
        cpu = self._psutil.cpu_times()
        idle = cpu.idle + getattr(cpu, "iowait", 0.0)
        total = sum(cpu)
        net = self._psutil.net_io_counters()
        return _Counters(time.monotonic(), total - idle, total, net.bytes_recv, net.bytes_sent)

    async def sample(self) -> dict[str, Any]:
        """The host's state now."""
        async with self._lock:
            last = self._last
            if last is None:
                last = self._counters()
                await asyncio.sleep(0.2)
            now = self._counters()
            self._last = now
        psutil = self._psutil
        elapsed = max(1e-6, now.at - last.at)
        spent = now.total - last.total
        cpu = 100.0 * (now.busy - last.busy) / spent if spent > 0 else 0.0
        memory = psutil.virtual_memory().percent
        disk = psutil.disk_usage("/").percent
        metrics = {
            "cpu": round(min(100.0, max(0.0, cpu)), 1),
            "memory": round(float(memory), 1),
            "disk": round(float(disk), 1),
            "network_in": round(max(0, now.received - last.received) * 8 / 1e6 / elapsed, 1),
            "network_out": round(max(0, now.sent - last.sent) * 8 / 1e6 / elapsed, 1),
        }
        status: ServerStatus = "online"
        if cpu >= 90 or memory >= 92 or disk >= 95:
            status = "critical"
        elif cpu >= 75 or memory >= 85 or disk >= 85:
            status = "warning"
        booted = datetime.fromtimestamp(psutil.boot_time(), UTC)
        return {
            **self.specs[0].fields(),
            "status": status,
            "started_at": booted.isoformat(timespec="seconds").replace("+00:00", "Z"),
            **metrics,
        }

    async def states(self, tick: int, controls: dict[str, Control | None]) -> dict[str, Any]:
        return {"host": await self.sample()}


def _address() -> str:
    """This machine's outward IPv4 address, without sending anything (a UDP connect only
    picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    return address
