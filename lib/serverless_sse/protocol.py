"""The Server-Sent Events wire format, sans-IO.

An encoder (pure functions from values to bytes) and an incremental decoder (a small state
machine fed with bytes) that follow the WHATWG HTML "Server-sent events" section, 9.2.5–9.2.6:

- lines end with CRLF, LF or CR, and a CRLF may be split across two chunks;
- one leading U+FEFF BYTE ORDER MARK is ignored; bytes are decoded as UTF-8 with replacement;
- a line starting with ``:`` is a comment; ``field:value`` drops one leading space of the value;
  a line without ``:`` is a field with an empty value;
- ``data`` values are joined with LF, ``id`` is ignored when it contains NUL, ``retry`` counts
  only when it is all ASCII digits, unknown fields are ignored;
- a blank line dispatches the event; an event still open when the stream ends is discarded.

The server, the Python client and the tests all use these two halves, so the server can never
write what its own client would read differently.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = [
    "Comment",
    "EventStreamDecoder",
    "ProtocolError",
    "ServerSentEvent",
    "encode_comment",
    "encode_event",
    "encode_retry",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ASCII_DIGITS = re.compile(r"[0-9]+")
# CPython's int() refuses strings of more than 4300 digits (a DoS guard) by raising: a longer
# ``retry`` value must be ignored, not crash the parser. No client keeps a reconnection time
# beyond 64-bit milliseconds, so anything larger is ignored, like a value that overflows.
_MAX_RETRY = (1 << 63) - 1


class ProtocolError(ValueError):
    """A value cannot be written as an SSE field without changing the stream's meaning."""


# ---------------------------------------------------------------------------------------------
# Encoder


def encode_event(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event, ready for the wire, ending with the blank line that dispatches it.

    Every line of ``data`` (split on CRLF, CR or LF, exactly as a reader splits) goes on its own
    ``data:`` line, so a payload can never start a new field or a new event. ``event`` and
    ``id`` are single-line fields: a line break in either is refused, and so is NUL in ``id``
    (a reader would silently ignore such an id).
    """
    parts: list[str] = []
    if id is not None:
        if "\r" in id or "\n" in id or "\0" in id:
            raise ProtocolError("an event id must not contain CR, LF or NUL")
        parts.append(f"id: {id}\n")
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ProtocolError("an event type must not contain CR or LF")
        parts.append(f"event: {event}\n")
    if retry is not None:
        parts.append(_retry_line(retry))
    if "\n" in data or "\r" in data:
        parts.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    else:
        # The common case (any JSON text): one line, no regex.
        parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    """Comment lines (ignored by readers; used to open the stream and as heartbeats)."""
    if not text:
        return b":\n\n"
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"


def encode_retry(milliseconds: int) -> bytes:
    """A ``retry:`` field alone: sets the reader's reconnection time, dispatches nothing."""
    return _retry_line(milliseconds).encode() + b"\n"


def _retry_line(milliseconds: int) -> str:
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise ProtocolError("retry must be a non-negative integer of milliseconds")
    return f"retry: {milliseconds}\n"


# ---------------------------------------------------------------------------------------------
# Decoder


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """A dispatched event, as an EventSource would deliver it to a listener."""

    type: str
    data: str
    last_event_id: str


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment line (heartbeats, the opening comment). Readers ignore these; tests do not."""

    text: str


class EventStreamDecoder:
    """Incremental ``text/event-stream`` parser: feed bytes in, get events and comments out.

    Work is linear in the bytes fed: each chunk is decoded once, split once, and only an
    unterminated last line is carried to the next chunk (a line can only be re-scanned when it
    spans chunks, and then only its own bytes). Memory is bounded by the longest line plus the
    event being assembled; callers that accept untrusted streams should cap both:
    ``max_line_bytes`` holds every line (excluding its line end) and ``max_event_bytes`` the
    data of one event (its ``data:`` values joined with LF, as it would be dispatched), both
    counted in decoded characters (at most the bytes they came from). Each is checked when a
    line is complete, or as soon as an unterminated line is already too long, so the outcome
    never depends on how the stream was cut; going over raises :class:`ProtocolError`.

    After :meth:`close`, the same decoder reads the next response of a reconnecting reader:
    ``last_event_id`` and ``retry`` carry over, as they do for an EventSource. A reader that
    resumes from an id it kept elsewhere passes it as ``last_event_id``.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int | None = None,
        max_event_bytes: int | None = None,
        last_event_id: str = "",
    ) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # pieces of an unterminated line from earlier chunks
        self._partial_len = 0
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._seen_first_char = False
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._data: list[str] = []
        self._data_len = 0  # len("\n".join(self._data)), kept as lines arrive
        self._event_type = ""
        self._id_buffer = last_event_id
        self.last_event_id = last_event_id
        """The reader's last event ID string: what an EventSource sends as Last-Event-ID."""
        self.retry: int | None = None
        """The reconnection time the stream asked for, in milliseconds, if any."""

    def feed(self, chunk: bytes) -> list[ServerSentEvent | Comment]:
        """Parse a chunk of bytes; returns what it completed, in order."""
        return self._feed_text(self._text.decode(chunk))

    def close(self) -> None:
        """The stream ended: an unterminated line and an undispatched event are discarded.

        WHATWG: "If the file ends in the middle of an event, before the final empty line, the
        incomplete event is not dispatched." ``last_event_id`` keeps the last dispatched id,
        which is what a reconnect must send.
        """
        self._text.decode(b"", final=True)
        self._partial = []
        self._partial_len = 0
        self._skip_lf = False
        self._data = []
        self._data_len = 0
        self._event_type = ""
        self._id_buffer = self.last_event_id
        self._seen_first_char = False  # the next response may start with its own BOM

    def _feed_text(self, text: str) -> list[ServerSentEvent | Comment]:
        out: list[ServerSentEvent | Comment] = []
        if not text:
            return out
        if not self._seen_first_char:
            self._seen_first_char = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        start = 0
        for match in _LINE_BREAK.finditer(text):
            line = text[start : match.start()]
            if self._partial:
                # Only a line that spans chunks is joined, once, when it ends: linear overall.
                self._check_line_length(self._partial_len + len(line))
                self._partial.append(line)
                line = "".join(self._partial)
                self._partial = []
                self._partial_len = 0
            else:
                self._check_line_length(len(line))
            self._process_line(line, out)
            start = match.end()
        if start < len(text):
            rest = text[start:]
            self._partial_len += len(rest)
            self._check_line_length(self._partial_len)
            self._partial.append(rest)
        elif text.endswith("\r"):
            # A CR at the end of a chunk may be the first half of a CRLF split across chunks.
            self._skip_lf = True
        return out

    def _check_line_length(self, length: int) -> None:
        if self._max_line is not None and length > self._max_line:
            raise ProtocolError(f"line longer than {self._max_line} characters")

    def _process_line(self, line: str, out: list[ServerSentEvent | Comment]) -> None:
        if not line:
            self._dispatch(out)
            return
        colon = line.find(":")
        if colon == 0:
            out.append(Comment(line[2:] if line.startswith(": ") else line[1:]))
            return
        if colon < 0:
            name, value = line, ""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value.startswith(" "):
                value = value[1:]
        if name == "data":
            self._data_len += len(value) + (1 if self._data else 0)
            if self._max_event is not None and self._data_len > self._max_event:
                raise ProtocolError(f"event data longer than {self._max_event} characters")
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and _ASCII_DIGITS.fullmatch(value):
            digits = value.lstrip("0") or "0"
            if len(digits) <= 19 and (milliseconds := int(digits)) <= _MAX_RETRY:
                self.retry = milliseconds
        # Any other field name is ignored, as the spec requires.

    def _dispatch(self, out: list[ServerSentEvent | Comment]) -> None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._event_type = ""
            return
        data = "\n".join(self._data)
        out.append(ServerSentEvent(self._event_type or "message", data, self.last_event_id))
        self._data = []
        self._data_len = 0
        self._event_type = ""
