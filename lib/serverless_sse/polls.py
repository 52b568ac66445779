"""Polls: one vote per client per poll, and tallies every instance agrees on (SEEDS 003).

A poll exists once someone votes in it; its options are whatever voters choose (up to a
limit). **A vote is final**: voting again for the same option is a harmless repeat (answered
with the current tallies, nothing counted), voting for another option is refused with 409
``already_voted``. Finality is what makes tallies exact without a read-modify-write of a
client's previous choice, and it is enforced atomically by the store
(``put_value(only_if_absent)`` on the voter's key), on every instance.

Every vote appends a ``vote_update`` with the poll's full tallies to the ``votes`` channel.
Votes on one poll take a short lock (:class:`serverless_sse.locks.StoreLock`) around count,
read and append, so updates appear in the log in the order of the counts they carry: a client that
shows the latest ``vote_update`` never shows a tally going backwards. Cost: about 8 + options
store round trips per vote, one vote at a time per poll.

State in the store's values: ``poll/<id>/voter/<client>`` (the option voted for),
``poll/<id>/options`` (how many options), ``poll/<id>/option/<n>`` (the n-th option's name),
``poll/<id>/index/<hash of name>`` (an option's n) and ``poll/<id>/count/<n>`` (its votes).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from .errors import AlreadyVoted, ValidationFailed
from .events import NewEvent, dumps, iso_time
from .locks import StoreLock
from .stores.base import EventStore

__all__ = ["VOTES_CHANNEL", "Polls", "Vote"]

VOTES_CHANNEL = "votes"


@dataclass(frozen=True, slots=True)
class Vote:
    """The outcome of a vote: the poll's tallies after it, and whether it was a repeat."""

    poll_id: str
    client_id: str
    option: str
    tallies: dict[str, int]
    repeated: bool = False

    @property
    def total(self) -> int:
        return sum(self.tallies.values())

    def update(self) -> dict[str, object]:
        """The ``vote_update`` event's payload."""
        return {
            "poll_id": self.poll_id,
            "option": self.option,
            "client_id": self.client_id,
            "tallies": self.tallies,
            "total": self.total,
            "timestamp": iso_time(time.time()),
        }


def _option_key(option: str) -> str:
    return hashlib.blake2b(option.encode(), digest_size=12).hexdigest()


class Polls:
    """Votes and tallies, kept in the store's values; updates go to :data:`VOTES_CHANNEL`."""

    def __init__(self, store: EventStore, *, max_options: int) -> None:
        self.store = store
        self.max_options = max_options

    async def vote(self, poll_id: str, client_id: str, option: str) -> Vote:
        """Count ``client_id``'s vote and announce the tallies (see the module's rules)."""
        store = self.store
        base = f"poll/{poll_id}"
        voter = f"{base}/voter/{client_id}"
        async with StoreLock(store, base, ttl=10.0, wait=5.0):
            earlier = await store.get_value(voter)
            if earlier is not None and earlier != option:
                raise AlreadyVoted(
                    f"client {client_id!r} already voted {earlier!r} in poll {poll_id!r}"
                )
            if earlier is None:
                index = await self._option_index(base, option)
                if await store.put_value(voter, option, only_if_absent=True):
                    await store.increment(f"{base}/count/{index}")
            vote = Vote(
                poll_id, client_id, option, await self.tallies(poll_id), earlier is not None
            )
            # Keyed by voter: a repeat after a failed append stores the update once.
            event = NewEvent("vote_update", dumps(vote.update()), f"vote/{poll_id}/{client_id}")
            await store.append(VOTES_CHANNEL, [event])
        return vote

    async def _option_index(self, base: str, option: str) -> int:
        """The option's number, registering it if new (the caller holds the poll's lock)."""
        store = self.store
        known = await store.get_value(f"{base}/index/{_option_key(option)}")
        if known is not None:
            return int(known)
        count = int(await store.get_value(f"{base}/options") or 0)
        if count >= self.max_options:
            raise ValidationFailed(f"a poll has at most {self.max_options} options")
        index = count + 1
        # Name first, count last: a reader that sees the count finds every name.
        await store.put_value(f"{base}/option/{index}", option)
        await store.put_value(f"{base}/index/{_option_key(option)}", str(index))
        await store.put_value(f"{base}/options", str(index))
        return index

    async def tallies(self, poll_id: str) -> dict[str, int]:
        """Votes per option, in the order the options first got a vote ({} for no poll)."""
        store = self.store
        base = f"poll/{poll_id}"
        count = int(await store.get_value(f"{base}/options") or 0)
        numbers = range(1, count + 1)
        names, votes = await asyncio.gather(
            asyncio.gather(*(store.get_value(f"{base}/option/{n}") for n in numbers)),
            asyncio.gather(*(store.get_value(f"{base}/count/{n}") for n in numbers)),
        )
        return {name: int(tally or 0) for name, tally in zip(names, votes, strict=True) if name}

    async def choice(self, poll_id: str, client_id: str) -> str | None:
        """The option ``client_id`` voted for, if any."""
        return await self.store.get_value(f"poll/{poll_id}/voter/{client_id}")
