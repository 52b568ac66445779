"""Where a reconnecting stream is in its life, as its state callbacks are told."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ConnectionState", "StateChange"]


class ConnectionState(enum.StrEnum):
    """``connecting`` → ``open`` → (``error`` → ``connecting`` …) → ``closed``.

    A window that ends cleanly goes straight back to ``connecting``; ``error`` means an attempt
    failed and another one is scheduled; ``closed`` is final.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    ERROR = "error"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StateChange:
    """A transition, with why it happened.

    ``error`` is set for ``error`` (what failed) and for a ``closed`` that was not a clean end
    (what stopped the stream). ``retry_in`` is set for ``error``: seconds until the next attempt.
    """

    state: ConnectionState
    error: Exception | None = None
    retry_in: float | None = None
