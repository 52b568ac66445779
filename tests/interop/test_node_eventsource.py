"""The npm package ``eventsource`` (a WHATWG EventSource for Node), run as a Node script: it
reconnects by itself after each window's ``timeout``, with ``Last-Event-ID``. Both event
formats: ``named`` (``addEventListener("tick")``) and ``envelope`` (``onmessage``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import UvicornServer

from .harness import Progress, follow_steadily, new_channel, stream_url

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

NODE_DIR = Path(__file__).parent / "node"


@contextmanager
def node_follower(url: str, fmt: str) -> Iterator[Progress]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "eventsource").is_dir():
        raise RuntimeError(
            "Node.js and `scripts/ensure-node-deps.sh` are needed (make test runs it)"
        )
    progress = Progress()
    proc = subprocess.Popen(
        [node, "follow.mjs", url, fmt],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            report = json.loads(line)
            if report["kind"] == "tick":
                progress.ticks.append(report["n"])
            elif report["kind"] == "timeout":
                progress.window_ends += 1
        if proc.wait() not in (0, -15):
            stderr = proc.stderr.read() if proc.stderr else ""
            progress.error = RuntimeError(f"node exited with {proc.returncode}: {stderr}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield progress
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)


def test_every_event_arrives_once_in_order_across_window_ends(server: UvicornServer) -> None:
    channel = new_channel()
    with (
        node_follower(stream_url(server.url, channel, "named"), "named") as named,
        node_follower(stream_url(server.url, channel, "envelope"), "envelope") as envelope,
    ):
        total = follow_steadily(server.url, channel, lambda: named, lambda: envelope)
    for progress in (named, envelope):
        assert progress.window_ends >= 3
        assert progress.ticks == list(range(1, total + 1))
