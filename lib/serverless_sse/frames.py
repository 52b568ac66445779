"""What events look like on the wire, in each of the two formats (pure functions, no I/O).

``named``: ``event: <type>`` and ``data: <payload JSON>`` — for ``addEventListener(type)``.
``envelope``: no ``event:`` field; ``data: {"type": <type>, ...payload}`` — for clients that
read everything in ``onmessage`` and switch on ``type`` (every source system's client).

A payload that is not a JSON object travels in an envelope as ``{"type": t, "data": payload}``.
When an object payload has its own ``type`` key, the event's type wins.
"""

from __future__ import annotations

import json
from typing import Any

from .events import EventFormat, dumps
from .protocol import encode_comment, encode_event, encode_retry

__all__ = [
    "HEARTBEAT",
    "control_frame",
    "envelope_json",
    "event_body",
    "opening",
    "with_id",
]

HEARTBEAT = encode_comment("hb")


def opening(retry_ms: int) -> bytes:
    """The first bytes of every stream: the reconnection hint, and a comment so that proxies
    and clients see the stream open before any event exists."""
    return encode_retry(retry_ms)[:-1] + encode_comment("ok")


def envelope_json(event_type: str, data: str) -> str:
    """``data`` (compact JSON text) wrapped as ``{"type": event_type, ...}``, cheaply.

    Event types are ``[A-Za-z0-9_.:-]``, so ``"<type>"`` is already a JSON string. Only an
    object that carries its own ``"type"`` key is parsed; every other payload is spliced.
    """
    head = f'{{"type":"{event_type}"'
    if data.startswith("{"):
        if data == "{}":
            return head + "}"
        if '"type"' not in data:
            return head + "," + data[1:]
        payload = json.loads(data)
        if isinstance(payload, dict):
            payload.pop("type", None)
            return dumps({"type": event_type, **payload})
    return f'{head},"data":{data}}}'


def event_body(event_type: str, data: str, fmt: EventFormat) -> bytes:
    """An event without its ``id:`` line (see :func:`with_id`)."""
    if fmt == "envelope":
        return encode_event(envelope_json(event_type, data))
    return encode_event(data, event=event_type)


def with_id(cursor: str, body: bytes) -> bytes:
    """Prefix a body with its ``id:`` line. Cursors are base64url: no character needs care."""
    return b"id: " + cursor.encode() + b"\n" + body


def control_frame(event_type: str, payload: Any, cursor: str, fmt: EventFormat) -> bytes:
    """An event the server makes (``timeout``, ``reset``, ``error``, synthetic ones), formatted
    like every other event and carrying the stream's cursor."""
    return with_id(cursor, event_body(event_type, dumps(payload), fmt))
