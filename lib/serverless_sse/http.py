"""HTTP edges shared by every endpoint: errors as JSON, bounded bodies, strict query values.

This is the one place where error values become responses.
"""

from __future__ import annotations

import logging
import math
from typing import TypeVar

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    SSEError,
    ValidationFailed,
)
from .events import EventFormat

__all__ = [
    "error_response",
    "event_format",
    "idempotency_key",
    "last_event_id",
    "query_float",
    "query_int",
    "read_body",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


def error_response(exc: SSEError) -> JSONResponse:
    """``{"error": code, "detail": text}`` with the error's status and headers."""
    return JSONResponse(
        {"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=exc.headers
    )


async def handle_sse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SSEError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    known: dict[int, type[SSEError]] = {404: NotFound, 405: MethodNotAllowed}
    error_type = known.get(exc.status_code)
    if error_type is not None:
        return error_response(error_type(str(exc.detail)))
    response = JSONResponse(
        {"error": "http_error", "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal_error", "detail": "internal error"}, status_code=500)


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client went away before sending the whole body") from None
    return b"".join(chunks)


def query_float(
    request: Request, name: str, *, gt: float = 0.0, default: float | None = None
) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationFailed(f"?{name}= must be a number") from None
    if not math.isfinite(value) or value <= gt:
        raise ValidationFailed(f"?{name}= must be a finite number above {gt:g}")
    return value


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(f"?{name}= must be a whole number from {low} to {high}")
    return int(raw)


def event_format(request: Request, default: EventFormat) -> EventFormat:
    raw = request.query_params.get("format")
    if raw is None:
        return default
    if raw == "named":
        return "named"
    if raw == "envelope":
        return "envelope"
    raise ValidationFailed("?format= is 'named' or 'envelope'")


def last_event_id(request: Request) -> str | None:
    """The cursor to resume from: the ``Last-Event-ID`` header, else ``?last_event_id=``.

    The header always wins: a browser reconnects to the same URL and adds it, so the URL's own
    starting point must not apply again. An empty header is no header (EventSource sends none
    until it has an id).
    """
    header = request.headers.get("last-event-id")
    if header:
        return header
    query = request.query_params.get("last_event_id")
    return query or None


def from_start(request: Request) -> bool:
    raw = request.query_params.get("from")
    if raw is None:
        return False
    if raw != "start":
        raise ValidationFailed("?from= only takes 'start'")
    return True


class CORS(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered like every other error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        detail = bytes(response.body).decode()
        headers = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        return JSONResponse(
            {"error": "cors_refused", "detail": detail}, status_code=400, headers=headers
        )


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (1-200 printable ASCII characters), if sent: a request
    repeated with it does its work once."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 0 < len(key) <= 200 or not all("\x21" <= c <= "\x7e" for c in key):
        raise ValidationFailed("Idempotency-Key is 1-200 printable ASCII characters, no spaces")
    return key
