"""Why a client stopped for good (or, for ``error`` state changes, why an attempt failed).

These are the client's own errors, raised to the caller: the server-side errors in
:mod:`serverless_sse.errors` are answers the service gives, these are what a reader concludes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = [
    "ConnectionLost",
    "InvalidStream",
    "PublishRefused",
    "Refused",
    "RetriesExhausted",
    "StreamError",
    "StreamRefused",
]


class StreamError(Exception):
    """Base of every error the client raises (streams and publishing alike)."""


class Refused(StreamError):
    """The server answered with an error status.

    ``code`` and ``detail`` come from the service's JSON error body when there is one.
    ``retry_after`` is the ``Retry-After`` delay in seconds, when the answer had a valid one.
    """

    def __init__(
        self,
        status: int,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.retry_after = retry_after
        self.code, self.detail = _error_body(body)
        message = f"the server answered {status}"
        if self.code:
            message += f" {self.code}"
        if self.detail:
            message += f": {self.detail}"
        super().__init__(message)


class StreamRefused(Refused):
    """A stream request got a status other than 200 (and other than 204, a clean end)."""


class PublishRefused(Refused):
    """A publish request got an error status (after any retries)."""


class InvalidStream(StreamError):
    """The response is not an event stream this client will read: wrong content type, a line
    or event over the configured size, or an id that cannot be sent back as a header."""


class ConnectionLost(StreamError):
    """The connection failed, or ended before any event arrived (the cause is chained)."""


class RetriesExhausted(StreamError):
    """``max_retries`` attempts in a row failed; the last failure is chained as the cause."""

    def __init__(self, failures: int, last: Exception) -> None:
        self.failures = failures
        self.last = last
        super().__init__(f"gave up after {failures} failed attempts in a row: {last}")


def _error_body(body: bytes) -> tuple[str, str]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return "", body[:200].decode("utf-8", "replace").strip()
    if isinstance(parsed, dict):
        code, detail = parsed.get("error", ""), parsed.get("detail", "")
        return (code if isinstance(code, str) else ""), (detail if isinstance(detail, str) else "")
    return "", ""
