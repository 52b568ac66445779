"""Chat rooms and their AI personas, kept in the store's values (so every instance and every
worker sees the same room).

A room is made with ``POST /api/chat/rooms``, or on first use of its id, with
:data:`~serverless_sse.personas.DEFAULT_PERSONAS`. Creation is atomic across instances
(``put_value(only_if_absent)``): two first uses at once make one room.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Conflict, ValidationFailed
from .events import iso_time
from .personas import DEFAULT_PERSONAS, Persona
from .stores.base import EventStore

__all__ = ["Room", "Rooms", "new_room_id", "room_channel"]


def room_channel(room_id: str) -> str:
    """The channel that holds a room's events (its history, and its live stream)."""
    return f"rooms/{room_id}"


def new_room_id() -> str:
    """A fresh room id, for a room created without one."""
    return f"room-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    name: str
    personas: tuple[Persona, ...]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "personas": [p.to_json() for p in self.personas],
            "created_at": iso_time(self.created_at),
            "channel": room_channel(self.id),
        }

    def dumps(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "personas": [p.to_json() for p in self.personas],
                "created_at": self.created_at,
            },
            ensure_ascii=False,
        )

    @classmethod
    def loads(cls, text: str) -> Room:
        value = json.loads(text)
        personas = tuple(Persona.from_json(p) for p in value["personas"])
        return cls(value["id"], value["name"], personas, float(value["created_at"]))


class Rooms:
    """Rooms by id."""

    def __init__(self, store: EventStore, *, max_personas: int) -> None:
        self.store = store
        self.max_personas = max_personas

    @staticmethod
    def _key(room_id: str) -> str:
        return f"room/{room_id}"

    async def create(
        self, name: str, personas: Sequence[Persona], *, room_id: str | None = None
    ) -> Room:
        """A new room (409 when ``room_id`` is taken). Personas are numbered 1, 2, … when
        they come without ids; ids must be unique within the room."""
        if len(personas) > self.max_personas:
            raise ValidationFailed(f"a room has at most {self.max_personas} personas")
        ids = [p.id for p in personas]
        if len(set(ids)) != len(ids):
            raise ValidationFailed("persona ids repeat within the room")
        room = Room(room_id or new_room_id(), name, tuple(personas), time.time())
        if not await self.store.put_value(self._key(room.id), room.dumps(), only_if_absent=True):
            raise Conflict(f"room {room.id!r} exists already")
        return room

    async def get(self, room_id: str) -> Room | None:
        stored = await self.store.get_value(self._key(room_id))
        return Room.loads(stored) if stored is not None else None

    async def get_or_default(self, room_id: str) -> Room:
        """The room, or the one its id would get on first use (nothing is stored)."""
        room = await self.get(room_id)
        return room if room is not None else Room(room_id, room_id, DEFAULT_PERSONAS, time.time())

    async def get_or_create(self, room_id: str) -> Room:
        """The room, made with the default personas if its id is used for the first time."""
        room = await self.get(room_id)
        if room is not None:
            return room
        fresh = Room(room_id, room_id, DEFAULT_PERSONAS, time.time())
        if await self.store.put_value(self._key(room_id), fresh.dumps(), only_if_absent=True):
            return fresh
        made = await self.get(room_id)  # another instance made it first: use theirs
        return made if made is not None else fresh
