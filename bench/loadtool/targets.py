"""The systems the bench measures, each started fresh on free loopback ports:

- ``project``: serverless-sse, ``uvicorn functions.app:app`` (one process, uvloop and
  httptools), on a Redis server of its own;
- ``peer``: ``bench/peers/naive_redis.py`` (Starlette + sse-starlette, a Redis pub/sub
  subscription per stream) under the same uvicorn, on a Redis server of its own;
- ``nchan``: nginx with the Nchan module (one worker), where Debian's ``nginx`` and
  ``libnginx-mod-nchan`` are installed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from .processes import Process, free_port

__all__ = ["TARGETS", "Target", "nchan_available"]

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
LOGS = Path(tempfile.gettempdir()) / "serverless-sse-bench"


def nchan_available() -> bool:
    return Path(NGINX).exists() and NCHAN_MODULE.exists()


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--backlog", "4096",
    ]  # fmt: skip


def _redis(port: int) -> Process:
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
    args += ["--save", "", "--appendonly", "no", "--maxclients", "20000"]
    return Process(args, port)


class Target(ABC):
    """A system under test: how to start it, where to subscribe and publish, what it is."""

    name: str = ""
    label: str = ""
    resumable = False
    """Whether a reconnect with ``Last-Event-ID`` gets the events it missed."""
    wrap = b"%s"
    """The body of a publish, around the event's data."""
    batch_wrap: tuple[bytes, bytes] | None = None
    """(item template, list template) when one request can publish several events."""
    content_type = "application/json"

    def __init__(self) -> None:
        self.port = free_port()
        self.processes: list[Process] = []
        LOGS.mkdir(exist_ok=True)

    @abstractmethod
    def stream_path(self, channel: str) -> str: ...

    @abstractmethod
    def publish_path(self, channel: str) -> str: ...

    @abstractmethod
    def _processes(self) -> list[Process]:
        """The store (if any) first, then the server."""

    def start(self) -> Target:
        self.processes = self._processes()
        try:
            for process in self.processes:
                process.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    @property
    def server_pids(self) -> list[int]:
        return [self.processes[-1].pid]

    @property
    def store_pids(self) -> list[int]:
        return [p.pid for p in self.processes[:-1]]

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Project(Target):
    name, label = "project", "serverless-sse"
    resumable = True
    wrap = b'{"data":%s}'
    batch_wrap = (b'{"data":%s}', b"[%s]")

    def stream_path(self, channel: str) -> str:
        return f"/channels/bench/{channel}/stream"

    def publish_path(self, channel: str) -> str:
        return f"/channels/bench/{channel}/events"

    def _processes(self) -> list[Process]:
        redis_port = free_port()
        env = {
            "SSE_STORE": f"redis://127.0.0.1:{redis_port}/0",
            # longer than any run: the bench measures delivery, not reconnects
            "SSE_WINDOW_SECONDS": "600",
        }
        server = Process(
            _uvicorn("functions.app:app", self.port),
            self.port,
            env=env,
            cwd=ROOT,
            log=LOGS / "project.log",
        )
        return [_redis(redis_port), server]


class Peer(Target):
    name, label = "peer", "naive peer"

    def stream_path(self, channel: str) -> str:
        return f"/stream/{channel}"

    def publish_path(self, channel: str) -> str:
        return f"/publish/{channel}"

    def _processes(self) -> list[Process]:
        redis_port = free_port()
        server = Process(
            _uvicorn("bench.peers.naive_redis:app", self.port),
            self.port,
            env={"PEER_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
            cwd=ROOT,
            log=LOGS / "peer.log",
        )
        return [_redis(redis_port), server]


class Nchan(Target):
    name, label = "nchan", "nginx + Nchan"
    resumable = True

    def __init__(self) -> None:
        super().__init__()
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nchan-"))

    def stream_path(self, channel: str) -> str:
        return f"/sub/{channel}"

    def publish_path(self, channel: str) -> str:
        return f"/pub/{channel}"

    def _processes(self) -> list[Process]:
        template = (ROOT / "bench" / "peers" / "nchan.conf").read_text()
        conf = self.prefix / "nginx.conf"
        conf.write_text(template.format(prefix=self.prefix, port=self.port))
        args = [NGINX, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "e.log")]
        return [Process(args, self.port, log=LOGS / "nchan.log")]

    @property
    def store_pids(self) -> list[int]:
        return []  # messages live in the server's own shared memory

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.prefix, ignore_errors=True)


TARGETS: dict[str, type[Target]] = {"project": Project, "peer": Peer, "nchan": Nchan}
