"""The one interface every event store implements, and the values it speaks in.

A store keeps, per channel, an append-only log with gap-free sequence numbers 1, 2, 3, …, the
log's epoch (a random token it got when created), its retention, and whether it was closed.
Beside the logs it keeps small expiring values (a key/value map and leases), which the service
uses for state that must hold across instances: task status, tallies, caps on streams.

The stream window and the fan-out read through this interface only; they never know which
backend is behind it. ``tests/contract`` is the executable form of this contract and runs
against every backend.
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..events import NewEvent, StoredEvent

__all__ = ["Appended", "ChannelState", "EventStore", "ReadResult", "new_epoch"]


def new_epoch() -> str:
    """A fresh log's epoch: 48 random bits, URL-safe (8 characters)."""
    return secrets.token_urlsafe(6)


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel's log at one moment.

    ``epoch`` is empty while the channel has no log. ``first_seq`` is the oldest retained
    sequence (``last_seq + 1`` when nothing is retained), ``last_seq`` the newest ever appended
    (0 for none), ``closed_seq`` the sequence of the final event once the channel is closed.
    """

    epoch: str
    first_seq: int
    last_seq: int
    closed_seq: int | None = None

    @classmethod
    def empty(cls) -> ChannelState:
        return cls("", 1, 0, None)

    @property
    def closed(self) -> bool:
        return self.closed_seq is not None


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an appended event went. ``duplicate`` is true when an idempotency key matched."""

    seq: int
    epoch: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Events read (oldest first) and the channel's state as of that read."""

    events: list[StoredEvent]
    state: ChannelState


class EventStore(ABC):
    """Durable per-channel event logs, plus small expiring values for cross-instance state.

    Implementations must be safe for concurrent use from one event loop, and for any number of
    processes sharing the backend. Every method raises
    :class:`~serverless_sse.errors.StoreUnavailable` when the backend cannot be reached, having
    stored nothing half-way.
    """

    #: The URL scheme this backend is chosen by (``memory``, ``redis``, ``dynamodb``).
    scheme: str = ""

    # -- logs ------------------------------------------------------------------------------

    @abstractmethod
    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        """Append events in order, all or nothing, and return where each one went.

        An event whose ``idempotency_key`` this channel has seen (within retention) is not
        stored again: its result is the original's, with ``duplicate=True``. Creates the log
        (and its epoch) on first use. Raises :class:`ChannelClosed` once the channel is closed.
        Readers never see sequence ``n + 1`` before ``n`` exists.
        """

    @abstractmethod
    async def read(
        self, channel: str, after: int, *, limit: int, wait: float = 0.0, epoch: str = ""
    ) -> ReadResult:
        """Retained events with ``seq > after``, oldest first, at most ``limit`` of them.

        When there are none and ``wait > 0``, waits up to ``wait`` seconds for one to be
        appended; a wait also ends early when the log's epoch is no longer ``epoch`` (if one is
        given), so a reader learns at once that the log it followed is gone. Events past the age
        retention are never returned, even if the backend has not deleted them yet.
        """

    @abstractmethod
    async def state(self, channel: str) -> ChannelState:
        """The channel's current state (one cheap read; no events)."""

    async def states(self, channels: Sequence[str]) -> list[ChannelState]:
        """The states of several channels (backends batch this into one round trip)."""
        return list(await asyncio.gather(*(self.state(c) for c in channels)))

    @abstractmethod
    async def close(self, channel: str, final: NewEvent) -> Appended:
        """Append ``final`` as the channel's last event and mark the channel closed.

        Raises :class:`ChannelClosed` if it already was.
        """

    # -- small expiring values -------------------------------------------------------------

    @abstractmethod
    async def get_value(self, key: str) -> str | None:
        """The value under ``key``, or ``None`` if absent or expired."""

    @abstractmethod
    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        """Store ``value`` (expiring after ``ttl`` seconds if given).

        With ``only_if_absent`` nothing is written when a live value exists; returns whether
        the value was written.
        """

    @abstractmethod
    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer under ``key`` (0 if absent) atomically; return the sum.

        ``ttl`` applies when the key is created, so a counter of a time window expires with it.
        """

    @abstractmethod
    async def delete_value(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abstractmethod
    async def acquire_lease(self, group: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Hold a lease in ``group`` for ``ttl`` seconds unless ``limit`` live leases exist.

        Re-acquiring a lease one already holds renews it and succeeds. Leases that expire (an
        instance died without releasing them) stop counting, so a count can never leak.
        """

    @abstractmethod
    async def release_lease(self, group: str, holder: str) -> None:
        """Give a lease back (no error if it had expired)."""

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the backend answers."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release connections and threads."""
