"""Friendship experience and levels."""

from __future__ import annotations

import pytest

from serverless_sse.friendship import Friendships, level_for
from serverless_sse.stores.memory import MemoryStore


@pytest.mark.parametrize(
    ("exp", "level"), [(0, 1), (5, 1), (99, 1), (100, 2), (150, 2), (199, 2), (200, 3)]
)
def test_a_level_is_every_hundred_experience(exp: int, level: int) -> None:
    assert level_for(exp) == level


async def test_every_exchange_adds_experience() -> None:
    friendships = Friendships(MemoryStore(), exp_per_answer=5)
    first = await friendships.grant("lobby", 1, "user_123", exchange_id="x1")
    second = await friendships.grant("lobby", 1, "user_123", exchange_id="x2")
    assert (first.exp, first.level, first.increase) == (5, 1, 5)
    assert (second.exp, second.level, second.increase) == (10, 1, 5)
    assert await friendships.experience("lobby", 1, "user_123") == 10


async def test_an_exchange_granted_twice_counts_once() -> None:
    friendships = Friendships(MemoryStore(), exp_per_answer=5)
    await friendships.grant("lobby", 1, "user_123", exchange_id="x1")
    again = await friendships.grant("lobby", 1, "user_123", exchange_id="x1")
    assert again.exp == 5
    assert await friendships.experience("lobby", 1, "user_123") == 5


async def test_experience_is_kept_per_room_persona_and_user() -> None:
    friendships = Friendships(MemoryStore(), exp_per_answer=50)
    await friendships.grant("lobby", 1, "ann", exchange_id="x1")
    await friendships.grant("lobby", 1, "ann", exchange_id="x2")
    await friendships.grant("lobby", 2, "ann", exchange_id="x1")
    await friendships.grant("garden", 1, "ann", exchange_id="x3")
    await friendships.grant("lobby", 1, "bob", exchange_id="x4")
    assert await friendships.experience("lobby", 1, "ann") == 100
    assert await friendships.experience("lobby", 2, "ann") == 50
    assert await friendships.experience("garden", 1, "ann") == 50
    assert await friendships.experience("lobby", 1, "bob") == 50
    assert await friendships.experience("lobby", 3, "ann") == 0


async def test_experience_persists_in_the_store_for_every_instance() -> None:
    store = MemoryStore()
    await Friendships(store, exp_per_answer=5).grant("lobby", 1, "ann", exchange_id="x1")
    assert await Friendships(store, exp_per_answer=5).experience("lobby", 1, "ann") == 5
