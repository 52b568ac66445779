"""A server that answers with exactly the bytes a test gives it: one scripted HTTP response per
connection, written as is (crafted line ends, a BOM, a cut in the middle of a chunk), then the
socket is closed. Requests are recorded. Runs in a thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def chunked(*pieces: bytes, complete: bool = True) -> bytes:
    """A 200 ``text/event-stream`` response with ``pieces`` as HTTP/1.1 chunks; without
    ``complete`` the terminating chunk is missing (the server died mid-response)."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return head + body + (b"0\r\n\r\n" if complete else b"")


NO_CONTENT = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"


class RawServer:
    def __init__(self, *responses: bytes) -> None:
        self.responses = list(responses)
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/stream"
        self._listener.settimeout(0.05)  # so that the thread sees ``_stopped`` soon
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        break
                    request += data
                self.requests.append(request)
                conn.sendall(self.responses.pop(0) if self.responses else NO_CONTENT)

    def header(self, name: str) -> list[str | None]:
        found: list[str | None] = []
        for request in self.requests:
            value = None
            for line in request.split(b"\r\n")[1:]:
                key, _, rest = line.partition(b":")
                if key.strip().lower() == name.lower().encode():
                    value = rest.strip().decode()
            found.append(value)
        return found


@contextmanager
def raw_server(*responses: bytes) -> Iterator[RawServer]:
    server = RawServer(*responses)
    server._thread.start()
    try:
        yield server
    finally:
        server._stopped.set()
        server._thread.join(5)
        server._listener.close()
