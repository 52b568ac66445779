"""What the load tool reads off a socket: an HTTP/1.1 response head, a chunked body, and the
benchmark's events inside SSE frames.

Built for holding thousands of streams in one process: each read of a socket costs a few
C-level scans (``bytes.find``, one regular expression over the whole chunk), never a Python
loop per byte or per line. The events the bench publishes carry ``{"n": <number>, "t": <send
time, µs of CLOCK_MONOTONIC>}`` as their data, which is all the tool needs to find.
"""

from __future__ import annotations

import re

__all__ = ["EVENT", "ID_LINE", "BodyReader", "ResponseHead", "complete_frames", "payload"]

# `"n":<int>,"t":<int>` wherever it is in a frame's data line(s): the project re-serialises the
# JSON compactly, the peers pass the published bytes through; both keep the key order.
EVENT = re.compile(rb'"n":(\d+),"t":(\d+)')
ID_LINE = re.compile(rb"(?m)^id: ?([^\r\n]*)")


def payload(n: int, t_us: int, pad: int = 0) -> bytes:
    """The data of the bench's event number ``n``, sent at ``t_us``, padded with ``pad``
    bytes of filler."""
    body = b'{"n":%d,"t":%d' % (n, t_us)
    if pad:
        body += b',"p":"' + b"x" * pad + b'"'
    return body + b"}"


class ResponseHead:
    """The status and headers of a response, once ``feed`` has seen their end."""

    def __init__(self) -> None:
        self._buffer = b""
        self.status = 0
        self.headers: dict[bytes, bytes] = {}

    def feed(self, data: bytes) -> bytes | None:
        """Take bytes; once the head is complete, return what follows it (else ``None``)."""
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self._buffer[:end].split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()
        rest = self._buffer[end + 4 :]
        self._buffer = b""
        return rest

    @property
    def chunked(self) -> bool:
        return self.headers.get(b"transfer-encoding", b"").lower() == b"chunked"


class BodyReader:
    """The bytes of a body, undoing chunked transfer coding if the response used it."""

    def __init__(self, chunked: bool) -> None:
        self._chunked = chunked
        self._raw = b""
        self._left = 0  # bytes still due in the current chunk; -1: its CRLF is due
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if not self._chunked:
            return data
        if self.ended:  # the last chunk's trailing CRLF, or nothing the body holds
            return b""
        buf = self._raw + data if self._raw else data
        out: list[bytes] = []
        pos, size = 0, len(buf)
        while pos < size:
            if self._left > 0:
                take = min(self._left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._left = -1
            if self._left == -1:
                if size - pos < 2:
                    break
                pos += 2
                self._left = 0
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            length = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if length == 0:
                self.ended = True
                pos = size
                break
            self._left = length
        self._raw = buf[pos:]
        return b"".join(out)


def complete_frames(buffer: bytes) -> int:
    """Where the last complete SSE frame in ``buffer`` ends (0: none is complete yet).

    A frame ends with a blank line: ``\\n\\n`` or, from servers that end lines with CRLF
    (sse-starlette), ``\\r\\n\\r\\n`` (whose last three bytes are ``\\n\\r\\n``)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
