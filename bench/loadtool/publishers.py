"""Publishers: the bench's events, sent over keep-alive HTTP/1.1 connections.

Two ways to publish, each run in a process of its own (so that the subscribers' work never
delays a publish):

- ``steady``: events 1..count at ``rate`` a second over one connection, each stamped with the
  time it was *due* — not the time it went out — so when the server is slow to take
  publishes, the delay shows in the measured latency instead of hiding in a late start
  (coordinated omission);
- ``flood``: ``connections`` publishers sending back to back until ``count`` events are
  accepted: publish throughput. Where the answers carry sequence numbers, they are returned
  so that the bench can check they are exactly 1..count.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from .subscribers import cpu_seconds, now_us, run
from .wire import payload

__all__ = ["Http1", "publisher_main"]

SEQ = re.compile(rb'"seq":(\d+)')


class Http1:
    """One keep-alive HTTP/1.1 client connection (reconnects when the server closes it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._writer.write(head + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"content-length" in headers:
            answer = await self._reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while size := int((await self._reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
                parts.append((await self._reader.readexactly(size + 2))[:-2])
            await self._reader.readuntil(b"\r\n")
            answer = b"".join(parts)
        else:
            answer = await self._reader.read()
            headers[b"connection"] = b"close"
        if headers.get(b"connection") == b"close":
            await self.close()
        return status, answer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def steady(spec: dict[str, Any]) -> dict[str, Any]:
    """Publish events 1..count at ``rate`` per second, one after the other."""
    http = Http1(spec["host"], spec["port"])
    rate, count, pad = spec["rate"], spec["count"], spec.get("pad", 0)
    wrap: bytes = spec["wrap"]
    statuses: Counter[int] = Counter()
    behind_us = 0
    cpu = cpu_seconds()
    start = now_us() + 50_000
    for n in range(1, count + 1):
        due = start + int((n - 1) * 1_000_000 / rate)
        wait = due - now_us()
        if wait > 0:
            await asyncio.sleep(wait / 1_000_000)
        else:
            behind_us = max(behind_us, -wait)
        status, _ = await http.post(spec["path"], wrap % payload(n, due, pad), spec["type"])
        statuses[status] += 1
    elapsed = (now_us() - start) / 1e6
    await http.close()
    return {
        "sent": count,
        "statuses": dict(statuses),
        "seconds": elapsed,
        "rate": count / elapsed if elapsed > 0 else 0.0,
        "max_behind_ms": behind_us / 1000,
        "cpu_seconds": cpu_seconds() - cpu,
    }


async def flood(spec: dict[str, Any]) -> dict[str, Any]:
    """``connections`` publishers, back to back, until ``count`` events were sent."""
    count, wrap = spec["count"], spec["wrap"]
    statuses: Counter[int] = Counter()
    seqs: list[int] = []
    next_n = 0

    async def publisher() -> None:
        nonlocal next_n
        http = Http1(spec["host"], spec["port"])
        while next_n < count:
            next_n += 1
            status, answer = await http.post(
                spec["path"], wrap % payload(next_n, now_us()), spec["type"]
            )
            statuses[status] += 1
            seqs.extend(int(s) for s in SEQ.findall(answer))
        await http.close()

    cpu = cpu_seconds()
    started = time.monotonic()
    await asyncio.gather(*(publisher() for _ in range(spec["connections"])))
    elapsed = time.monotonic() - started
    return {
        "sent": count,
        "statuses": dict(statuses),
        "seconds": elapsed,
        "rate": count / elapsed,
        "seqs": seqs,
        "cpu_seconds": cpu_seconds() - cpu,
    }


def publisher_main(pipe: Connection, spec: dict[str, Any]) -> None:
    """The entry point of a publisher process: publish as ``spec`` says, send the result."""
    mode = {"steady": steady, "flood": flood}[spec["mode"]]
    pipe.send(run(mode(spec)))
