"""What a server process holds, seen from outside: its /metrics gauges, and its memory and
file descriptors read from /proc (psutil), sockets told apart by where they lead."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Holdings", "gauge", "gauges", "holdings"]


async def gauges(http: httpx.AsyncClient, base: str) -> dict[str, float]:
    text = (await http.get(f"{base}/metrics")).text
    return {
        sample.name: float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def gauge(http: httpx.AsyncClient, base: str, name: str) -> float:
    found = await gauges(http, base)
    assert name in found, f"{base}/metrics has no {name}"
    return found[name]


@dataclass(frozen=True, slots=True)
class Holdings:
    """A process's resources at one moment."""

    rss: int
    """Resident memory, bytes."""
    fds: int
    """Open file descriptors, all kinds."""
    client_sockets: int
    """TCP connections accepted on the service's port."""
    store_sockets: int
    """TCP connections to the store's port."""
    other_fds: int
    """Everything else: the listener, the event loop's, pipes, files."""

    def brief(self) -> str:
        return (
            f"RSS {self.rss / 2**20:.1f} MiB, {self.fds} fds ({self.client_sockets} clients,"
            f" {self.store_sockets} store, {self.other_fds} other)"
        )


def holdings(pid: int, *, port: int, store_port: int) -> Holdings:
    process = psutil.Process(pid)
    connections = process.net_connections(kind="tcp")
    clients = sum(1 for c in connections if c.raddr and c.laddr.port == port)
    store = sum(1 for c in connections if c.raddr and c.raddr.port == store_port)
    fds = process.num_fds()
    return Holdings(process.memory_info().rss, fds, clients, store, fds - clients - store)
