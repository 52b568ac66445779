"""Errors are values with a code and an HTTP status; they are mapped to responses in one place.

Raise these anywhere in the library; :func:`serverless_sse.http.error_response` turns one into
the JSON body ``{"error": code, "detail": text}`` with its status (and ``Retry-After`` for 429).
"""

from __future__ import annotations


class SSEError(Exception):
    """Base of every error the service answers with.

    ``code`` is stable and machine-readable; ``detail`` is for people.
    """

    status = 500
    code = "internal_error"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.headers = headers or {}


class BadRequest(SSEError):
    status = 400
    code = "bad_request"


class CursorError(BadRequest):
    """A ``Last-Event-ID`` or ``after`` cursor that does not parse or cannot be this stream's."""

    code = "invalid_cursor"


class Unauthorized(SSEError):
    status = 401
    code = "unauthorized"


class Forbidden(SSEError):
    status = 403
    code = "forbidden"


class NotFound(SSEError):
    status = 404
    code = "not_found"


class MethodNotAllowed(SSEError):
    status = 405
    code = "method_not_allowed"


class ChannelClosed(SSEError):
    """The channel was finished with a final event; nothing more can be appended."""

    status = 409
    code = "channel_closed"


class Conflict(SSEError):
    """The request conflicts with the current state (a finished task, a server that is
    already stopped, a resource another request is changing right now)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(SSEError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(SSEError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(SSEError):
    status = 422
    code = "validation_failed"


class InvalidChannel(ValidationFailed):
    code = "invalid_channel"


class TooManyRequests(SSEError):
    status = 429
    code = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(detail, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class StoreUnavailable(SSEError):
    """The event store did not answer; nothing was stored by the failed call."""

    status = 503
    code = "store_unavailable"
