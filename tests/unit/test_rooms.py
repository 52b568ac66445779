"""Rooms and their personas."""

from __future__ import annotations

import asyncio

import pytest

from serverless_sse.errors import Conflict, ValidationFailed
from serverless_sse.personas import DEFAULT_PERSONAS, Persona
from serverless_sse.rooms import Rooms, room_channel
from serverless_sse.stores.memory import MemoryStore
from tests.yielding import YieldingStore


async def test_a_created_room_keeps_its_name_and_personas() -> None:
    rooms = Rooms(MemoryStore(), max_personas=4)
    personas = [Persona(1, "Ari", "calm", "Be brief."), Persona(2, "Bo", "witty")]
    room = await rooms.create("Garden", personas)
    assert room.id.startswith("room-")
    assert await rooms.get(room.id) == room
    assert room.to_json()["channel"] == room_channel(room.id) == f"rooms/{room.id}"


async def test_a_room_id_used_for_the_first_time_gets_the_default_personas() -> None:
    rooms = Rooms(MemoryStore(), max_personas=4)
    room = await rooms.get_or_create("lobby")
    assert room.personas == DEFAULT_PERSONAS
    assert await rooms.get_or_create("lobby") == room


async def test_two_first_uses_at_once_make_one_room() -> None:
    store = YieldingStore()
    made = await asyncio.gather(
        *(Rooms(store, max_personas=4).get_or_create("x") for _ in range(5))
    )
    assert len({r.created_at for r in made}) == 1


async def test_a_taken_room_id_is_refused() -> None:
    rooms = Rooms(MemoryStore(), max_personas=4)
    await rooms.create("One", DEFAULT_PERSONAS, room_id="r1")
    with pytest.raises(Conflict):
        await rooms.create("Two", DEFAULT_PERSONAS, room_id="r1")


async def test_too_many_or_repeated_personas_are_refused() -> None:
    rooms = Rooms(MemoryStore(), max_personas=2)
    with pytest.raises(ValidationFailed):
        await rooms.create("Big", DEFAULT_PERSONAS)
    with pytest.raises(ValidationFailed):
        await rooms.create("Twins", [Persona(1, "A"), Persona(1, "B")])


async def test_an_unknown_room_is_none() -> None:
    assert await Rooms(MemoryStore(), max_personas=2).get("nope") is None


async def test_looking_at_an_unused_room_id_shows_the_defaults_and_stores_nothing() -> None:
    rooms = Rooms(MemoryStore(), max_personas=4)
    assert (await rooms.get_or_default("fresh")).personas == DEFAULT_PERSONAS
    assert await rooms.get("fresh") is None
