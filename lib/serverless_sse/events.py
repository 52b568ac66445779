"""The event model: channel names, event types, payloads, and what a store keeps.

A payload is kept as compact JSON text from the moment it is validated, so it is serialised
once, stored as is, and written to every subscriber without being parsed again.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from .errors import BadRequest, InvalidChannel, PayloadTooLarge, ValidationFailed

__all__ = [
    "CHANNEL_MAX_LENGTH",
    "EVENT_TYPE_PATTERN",
    "EventFormat",
    "NewEvent",
    "PublishItem",
    "StoredEvent",
    "dumps",
    "parse_close_body",
    "parse_model",
    "parse_publish_body",
    "validate_channel",
]

CHANNEL_MAX_LENGTH = 200
_CHANNEL_CHARS = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# Printable ASCII without space: safe in logs, headers and every store's key syntax.
_IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"

EventFormat = Literal["named", "envelope"]


def validate_channel(name: str) -> str:
    """Return ``name`` if it is a valid channel name, else raise :class:`InvalidChannel` (422).

    1–200 characters of ``[A-Za-z0-9_.:/-]``, split by ``/`` into segments none of which is
    empty, ``.`` or ``..`` (so a name can never act as a relative path anywhere).
    """
    if not _CHANNEL_CHARS.fullmatch(name):
        raise InvalidChannel("a channel name is 1-200 characters of letters, digits and _ . : / -")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidChannel("channel name segments must not be empty, '.' or '..'")
    return name


def dumps(value: Any) -> str:
    """Compact JSON text, UTF-8 kept as is (a CJK chat message costs 3 bytes a character, not 6)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event on its way into a store. ``data`` is compact JSON text."""

    type: str
    data: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as a store keeps it: its channel's sequence number and the time it was stored."""

    channel: str
    seq: int
    type: str
    data: str
    created_at: float

    def payload(self) -> Any:
        return json.loads(self.data)


class PublishItem(BaseModel):
    """One event of a publish request body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] = "message"
    data: Any
    idempotency_key: Annotated[str, StringConstraints(pattern=_IDEMPOTENCY_KEY_PATTERN)] | None = (
        None
    )


class CloseBody(BaseModel):
    """The optional body of a close request: the final event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] = "complete"
    data: Any = None


_PUBLISH_BATCH: TypeAdapter[list[PublishItem]] = TypeAdapter(list[PublishItem])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # json.loads reads 1e400 as inf, which dumps() then refuses: catch it here, as a 400.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON from bytes: UTF-8 only, no NaN/Infinity, depth bounded by the interpreter."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None


def _encode_data(value: Any, max_event_bytes: int) -> str:
    try:
        text = dumps(value)
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationFailed("data contains a lone surrogate (invalid Unicode)") from None
    except RecursionError:
        raise BadRequest("data is nested too deeply") from None
    if size > max_event_bytes:
        raise PayloadTooLarge(f"event data is {size} bytes; the limit is {max_event_bytes}")
    return text


def _validation_detail(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_model(raw: bytes, model: type[ModelT]) -> ModelT:
    """A JSON request body validated into ``model``: 400 for malformed JSON, 422 for the wrong
    shape (with what was wrong). An empty body is ``{}``, so a model whose fields all have
    defaults makes the body optional."""
    body = parse_json(raw) if raw.strip() else {}
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        raise ValidationFailed(_validation_detail(exc)) from None


def parse_publish_body(raw: bytes, *, max_event_bytes: int, max_batch: int) -> list[NewEvent]:
    """Validate a publish body (one event object or a list of them) into :class:`NewEvent` s.

    Raises 400 for malformed JSON, 422 for the wrong shape, 413 for an oversized event or
    batch. Validation is complete before anything is returned, so a batch is all-or-nothing.
    """
    body = parse_json(raw)
    if isinstance(body, list):
        if not body:
            raise ValidationFailed("the list of events is empty")
        if len(body) > max_batch:
            raise PayloadTooLarge(f"{len(body)} events in one request; the limit is {max_batch}")
    try:
        if isinstance(body, list):
            items = _PUBLISH_BATCH.validate_python(body)
        else:
            items = [PublishItem.model_validate(body)]
    except PydanticValidationError as exc:
        raise ValidationFailed(_validation_detail(exc)) from None
    return [
        NewEvent(item.type, _encode_data(item.data, max_event_bytes), item.idempotency_key)
        for item in items
    ]


def parse_close_body(raw: bytes, *, max_event_bytes: int) -> NewEvent:
    """The final event of a close request; an empty body means ``complete`` with null data."""
    if not raw.strip():
        return NewEvent("complete", "null")
    try:
        body = CloseBody.model_validate(parse_json(raw))
    except PydanticValidationError as exc:
        raise ValidationFailed(_validation_detail(exc)) from None
    return NewEvent(body.type, _encode_data(body.data, max_event_bytes))
