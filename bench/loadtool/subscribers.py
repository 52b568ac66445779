"""Subscribers: many SSE streams held by one process, each checking what it receives.

A :class:`Subscriber` is one stream's state, sans-IO: it is fed the bytes that arrived and when
they arrived. Every event it finds is checked against the stream's expectations (each number
``1..expect`` exactly once, in order) and its latency (arrival minus the send time the event
carries) goes into its :class:`Tally`, shared by every subscriber of the process.

*When* bytes arrived is the kernel's receive timestamp of the socket (``SO_TIMESTAMPNS``),
read with each ``recvmsg``: the moment the server's write reached the subscriber, whatever the
load tool did meanwhile. A process holding a thousand streams reads them one after the other;
timing the read instead would add the tool's own queue to every figure. When one read takes
several packets, Linux reports the last one's time, so an error can only make a figure worse.

:func:`worker_main` runs a process of subscribers on an epoll loop of its own (raw
non-blocking sockets: the load tool must cost far less than the server it loads), driven over a
pipe by the bench; :class:`SubscriberProtocol` runs one subscriber under asyncio.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import select
import socket
import struct
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

from .wire import EVENT, ID_LINE, BodyReader, ResponseHead, complete_frames

__all__ = [
    "Subscriber",
    "SubscriberProtocol",
    "Tally",
    "now_us",
    "run",
    "stream_request",
    "worker_main",
]

SO_TIMESTAMPNS = 35  # Linux (socket does not export it); its control messages carry it too
_TIMESPEC = struct.Struct("qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def now_us() -> int:
    """The time in µs, on the clock of the kernel's receive timestamps (CLOCK_REALTIME)."""
    return time.time_ns() // 1000


def stream_request(path: str, *, host: str = "127.0.0.1", last_event_id: str = "") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Accept: text/event-stream"]
    if last_event_id:
        lines.append(f"Last-Event-ID: {last_event_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Tally:
    """What the subscribers of one process received, all together."""

    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    first_arrival_us: int = 0
    last_arrival_us: int = 0


class Subscriber:
    """One SSE stream's state. ``expect``: how many bench events it should get (1..expect)."""

    def __init__(
        self, request: bytes, tally: Tally, *, expect: int, track_ids: bool = False
    ) -> None:
        self.request = request
        self.tally = tally
        self.expect = expect
        self.track_ids = track_ids
        self.seen = bytearray(expect + 1) if expect else bytearray()
        self.unique = 0
        self.last_n = 0
        self.last_id = ""
        self.started_us = 0
        self.opened_us = 0
        self.status = 0
        self.closed = False
        self._head: ResponseHead | None = ResponseHead()
        self._body: BodyReader | None = None
        self._buffer = b""

    @property
    def opened(self) -> bool:
        return self.opened_us > 0

    @property
    def complete(self) -> bool:
        return self.unique >= self.expect

    def feed(self, data: bytes, arrived_us: int) -> bool:
        """Take bytes that arrived at ``arrived_us``; false once the stream is refused."""
        if self._head is not None:
            rest = self._head.feed(data)
            if rest is None:
                return True
            self.status = self._head.status
            self._body = BodyReader(self._head.chunked)
            self._head = None
            # Open once the head arrived: some servers send no body before the first event.
            self.opened_us = arrived_us
            if self.status != 200:
                return False
            data = rest
            if not data:
                return True
        assert self._body is not None
        body = self._body.feed(data)
        buffer = self._buffer + body if self._buffer else body
        end = complete_frames(buffer)
        if not end:
            self._buffer = buffer
            return True
        frames, self._buffer = buffer[:end], buffer[end:]
        if self.track_ids:
            ids = ID_LINE.findall(frames)
            if ids:
                self.last_id = ids[-1].decode()
        found = EVENT.findall(frames)
        if found:
            self._count(found, arrived_us)
        return True

    def _count(self, found: list[tuple[bytes, bytes]], arrived_us: int) -> None:
        tally = self.tally
        if not tally.first_arrival_us:
            tally.first_arrival_us = arrived_us
        tally.last_arrival_us = max(tally.last_arrival_us, arrived_us)
        latencies = tally.latencies_us
        seen, last, expect = self.seen, self.last_n, self.expect
        for n_text, t_text in found:
            n = int(n_text)
            latencies.append(arrived_us - int(t_text))
            if n < last:
                tally.out_of_order += 1
            last = n
            if 0 < n <= expect:
                if seen[n]:
                    tally.duplicates += 1
                else:
                    seen[n] = 1
                    self.unique += 1
        self.last_n = last
        tally.received += len(found)


class SubscriberProtocol(asyncio.Protocol):
    """One subscriber over an asyncio connection (arrival: when ``data_received`` runs)."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.subscriber.started_us = now_us()
        self.transport.write(self.subscriber.request)

    def data_received(self, data: bytes) -> None:
        subscriber = self.subscriber
        ok = subscriber.feed(data, now_us())
        if subscriber.opened and not self.opened.done():
            self.opened.set_result(None)
        if not ok:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.subscriber.closed = True
        if not self.opened.done():
            self.opened.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Streams:
    """A process's subscribers on raw non-blocking sockets and one epoll loop."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.by_fd: dict[int, tuple[socket.socket, Subscriber]] = {}
        self.tally = Tally()

    def open(
        self, host: str, port: int, request: bytes, count: int, *, expect: int, parallel: int = 64,
        within: float = 60.0,
    ) -> list[Subscriber]:  # fmt: skip
        """Open ``count`` streams, at most ``parallel`` connecting at once, each until its
        response head arrived (or it failed)."""
        self.tally = Tally()
        done: list[Subscriber] = []
        opening: dict[int, Subscriber] = {}  # connecting, or waiting for the response head
        unsent: set[int] = set()  # connecting: the request goes once the socket is writable
        deadline = time.monotonic() + within
        while (len(done) + len(opening) < count or opening) and time.monotonic() < deadline:
            while len(done) + len(opening) < count and len(opening) < parallel:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setblocking(False)
                subscriber = Subscriber(request, self.tally, expect=expect)
                subscriber.started_us = now_us()
                if sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
                    sock.close()
                    subscriber.closed = True
                    done.append(subscriber)
                    continue
                self.by_fd[sock.fileno()] = (sock, subscriber)
                opening[sock.fileno()] = subscriber
                unsent.add(sock.fileno())
                self.epoll.register(sock.fileno(), select.EPOLLOUT)
            for fd, _ in self.epoll.poll(0.05):
                if fd in unsent:
                    unsent.discard(fd)
                    self._send_request(fd)
                else:
                    self._read(fd)
                subscriber = opening.get(fd)
                if subscriber is not None and (subscriber.opened or subscriber.closed):
                    done.append(opening.pop(fd))
        return done

    def _send_request(self, fd: int) -> None:
        sock, subscriber = self.by_fd[fd]
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            subscriber.closed = True
            self._drop(fd)
            return
        sock.sendall(subscriber.request)
        self.epoll.modify(fd, select.EPOLLIN)

    def _read(self, fd: int) -> None:
        sock, subscriber = self.by_fd[fd]
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 18, _ANCILLARY)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            subscriber.closed = True
            self._drop(fd)
            return
        arrived = now_us()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(value)
                arrived = seconds * 1_000_000 + nanoseconds // 1000
        if not subscriber.feed(data, arrived):
            subscriber.closed = True
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        sock, _ = self.by_fd.pop(fd)
        self.epoll.unregister(fd)
        sock.close()

    def subscribers(self) -> list[Subscriber]:
        return [s for _, s in self.by_fd.values()]

    def read_ready(self, wait: float) -> None:
        """Read every stream that has bytes, waiting up to ``wait`` seconds for one."""
        for fd, _ in self.epoll.poll(wait):
            self._read(fd)

    def drain(self, subscribers: list[Subscriber], *, quiet: float, limit: float) -> None:
        """Read until every stream has all it expects, or nothing arrived for ``quiet``
        seconds, or ``limit`` seconds passed."""
        started = time.monotonic()
        last_count, last_change = -1, started
        while time.monotonic() - started < limit:
            self.read_ready(0.02)
            if all(s.complete or s.closed for s in subscribers):
                return
            if self.tally.received != last_count:
                last_count, last_change = self.tally.received, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return

    def close_all(self) -> None:
        for fd in list(self.by_fd):
            self._drop(fd)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_main(pipe: Connection) -> None:
    """A subscriber process (``multiprocessing.Process`` target): runs the bench's commands,
    one at a time (connect, drain, disconnect, close), and reads its streams all along, so
    that they never push back on the server."""
    streams = Streams()
    subscribers: list[Subscriber] = []
    while True:
        while not pipe.poll():
            streams.read_ready(0.01)
        command, args = pipe.recv()
        if command == "connect":
            subscribers = streams.open(
                args["host"], args["port"], args["request"], args["count"], expect=args["expect"]
            )
            opened = [s for s in subscribers if s.status == 200 and not s.closed]
            pipe.send(
                {
                    "opened": len(opened),
                    "failed": len(subscribers) - len(opened),
                    "statuses": sorted({s.status for s in subscribers}),
                    "connect_us": [s.opened_us - s.started_us for s in opened],
                }
            )
        elif command == "cpu":
            pipe.send(cpu_seconds())
        elif command == "drain":
            streams.drain(subscribers, quiet=args["quiet"], limit=args["limit"])
            tally = streams.tally
            pipe.send(
                {
                    "latencies_us": tally.latencies_us.tobytes(),
                    "received": tally.received,
                    "unique": sum(s.unique for s in subscribers),
                    "duplicates": tally.duplicates,
                    "out_of_order": tally.out_of_order,
                    "complete": sum(1 for s in subscribers if s.complete),
                    "closed_early": sum(1 for s in subscribers if s.closed and not s.complete),
                    "first_arrival_us": tally.first_arrival_us,
                    "last_arrival_us": tally.last_arrival_us,
                    "cpu_seconds": cpu_seconds(),
                }
            )
        elif command in ("disconnect", "close"):
            streams.close_all()
            subscribers = []
            if command == "close":
                pipe.send("closed")
                return
            pipe.send("disconnected")


def run(main: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
