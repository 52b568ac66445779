"""Friendship between a user and a room's AI persona: experience that grows with every
exchange, and the level it makes.

Experience lives in the store's values, so every instance and every worker sees one count.
Granting is idempotent per exchange: a job delivered twice (or retried after a failure) never
counts an exchange twice. The cost of that guarantee: a worker that dies between marking an
exchange and counting it loses that one grant, which is the safe way to be wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .stores.base import EventStore

__all__ = ["EXP_PER_LEVEL", "Friendships", "Grant", "level_for"]

EXP_PER_LEVEL = 100
"""Experience per level: 0-99 is level 1, 100-199 level 2, … (the seeds' clients draw
``exp % 100`` as the progress to the next level)."""

_GRANT_MEMORY = 7 * 86_400  # how long an exchange is remembered as granted (redeliveries)


def level_for(exp: int) -> int:
    """The friendship level that ``exp`` experience makes (1 at 0)."""
    return max(0, exp) // EXP_PER_LEVEL + 1


@dataclass(frozen=True, slots=True)
class Grant:
    """Experience after an exchange: the new total, its level, and the increase."""

    exp: int
    level: int
    increase: int


def _user_key(user_id: str) -> str:
    # User ids are free text: hashed, so a key never depends on what characters they hold.
    return hashlib.blake2b(user_id.encode(), digest_size=12).hexdigest()


class Friendships:
    """Experience per (room, persona, user), kept in the store's values."""

    def __init__(self, store: EventStore, *, exp_per_answer: int) -> None:
        self.store = store
        self.exp_per_answer = exp_per_answer

    @staticmethod
    def key(room_id: str, persona_id: int, user_id: str) -> str:
        return f"friendship/{room_id}/{persona_id}/{_user_key(user_id)}"

    async def grant(
        self, room_id: str, persona_id: int, user_id: str, *, exchange_id: str
    ) -> Grant:
        """Count one exchange (once, however often it is granted) and return the result."""
        key = self.key(room_id, persona_id, user_id)
        first = await self.store.put_value(
            f"friendship-grant/{exchange_id}/{persona_id}",
            "1",
            ttl=_GRANT_MEMORY,
            only_if_absent=True,
        )
        if first:
            exp = await self.store.increment(key, self.exp_per_answer)
        else:
            exp = await self.experience(room_id, persona_id, user_id)
        return Grant(exp, level_for(exp), self.exp_per_answer)

    async def experience(self, room_id: str, persona_id: int, user_id: str) -> int:
        """The experience a user has with a persona (0 before any exchange)."""
        value = await self.store.get_value(self.key(room_id, persona_id, user_id))
        return int(value) if value is not None else 0
