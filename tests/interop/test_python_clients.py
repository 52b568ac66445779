"""Python readers: ``httpx-sse`` and ``sseclient-py`` (plain parsers that do not reconnect:
the test reconnects them with the last id they report, as their users do), and this project's
own client, which reconnects by itself."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import sseclient
from httpx_sse import connect_sse

from serverless_sse.client import connect
from tests.servers import UvicornServer

from .harness import Progress, follow_steadily, new_channel, stream_url

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

Reader = Callable[[str, Progress, threading.Event], None]


def with_httpx_sse(url: str, progress: Progress, stop: threading.Event) -> None:
    last_id = ""
    with httpx.Client(timeout=httpx.Timeout(10, read=30)) as client:
        while not stop.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with connect_sse(client, "GET", url, headers=headers) as source:
                for sse in source.iter_sse():
                    last_id = sse.id or last_id
                    if sse.event == "tick":
                        progress.ticks.append(json.loads(sse.data)["n"])
                    elif sse.event == "timeout":
                        progress.window_ends += 1


def with_sseclient_py(url: str, progress: Progress, stop: threading.Event) -> None:
    # Over the standard library's HTTP client, as sseclient-py's README does with urllib3.
    last_id = ""
    while not stop.is_set():
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            for event in sseclient.SSEClient(response).events():
                last_id = event.id or last_id
                if event.event == "tick":
                    progress.ticks.append(json.loads(event.data)["n"])
                elif event.event == "timeout":
                    progress.window_ends += 1


def with_own_client(url: str, progress: Progress, stop: threading.Event) -> None:
    with connect(url) as source:
        for event in source:
            if event.type == "tick":
                progress.ticks.append(event.json()["n"])
            elif event.type == "timeout":
                progress.window_ends += 1
            if stop.is_set():
                return


@contextmanager
def reading(reader: Reader, url: str) -> Iterator[Progress]:
    progress = Progress()
    stop = threading.Event()

    def run() -> None:
        try:
            reader(url, progress, stop)
        except BaseException as exc:
            if not stop.is_set():
                progress.error = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join(10)  # a reader notices at its next event, at worst the next window end


READERS: dict[str, Reader] = {
    "httpx-sse": with_httpx_sse,
    "sseclient-py": with_sseclient_py,
    "serverless_sse.client": with_own_client,
}


def test_every_event_arrives_once_in_order_across_window_ends(server: UvicornServer) -> None:
    # The three readers follow one channel side by side (one run, a third of the time).
    channel = new_channel()
    url = stream_url(server.url, channel)
    with ExitStack() as stack:
        seen = {name: stack.enter_context(reading(reader, url)) for name, reader in READERS.items()}
        total = follow_steadily(server.url, channel, *[lambda p=p: p for p in seen.values()])
    for name, progress in seen.items():
        assert progress.window_ends >= 3, name
        assert progress.ticks == list(range(1, total + 1)), name
