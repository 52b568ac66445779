"""Polls: one final vote per client per poll, tallies announced in count order."""

from __future__ import annotations

import asyncio
import json

import pytest

from serverless_sse.errors import AlreadyVoted, Conflict, ValidationFailed
from serverless_sse.locks import StoreLock
from serverless_sse.polls import VOTES_CHANNEL, Polls
from serverless_sse.stores.memory import MemoryStore
from tests.yielding import YieldingStore


async def updates(store: MemoryStore) -> list[dict[str, object]]:
    found = await store.read(VOTES_CHANNEL, 0, limit=1000)
    return [json.loads(e.data) for e in found.events if e.type == "vote_update"]


async def test_a_vote_is_counted_and_announced_with_the_tallies() -> None:
    store = MemoryStore()
    vote = await Polls(store, max_options=5).vote("p1", "alice", "tea")
    assert vote.tallies == {"tea": 1} and vote.total == 1 and not vote.repeated
    [update] = await updates(store)
    assert update["poll_id"] == "p1" and update["option"] == "tea"
    assert update["client_id"] == "alice"
    assert update["tallies"] == {"tea": 1} and update["total"] == 1
    assert isinstance(update["timestamp"], str)


async def test_tallies_list_options_in_the_order_they_got_their_first_vote() -> None:
    polls = Polls(MemoryStore(), max_options=5)
    await polls.vote("p1", "a", "tea")
    await polls.vote("p1", "b", "coffee")
    await polls.vote("p1", "c", "tea")
    assert list((await polls.tallies("p1")).items()) == [("tea", 2), ("coffee", 1)]


async def test_voting_again_for_the_same_option_counts_nothing_and_announces_nothing() -> None:
    store = MemoryStore()
    polls = Polls(store, max_options=5)
    await polls.vote("p1", "alice", "tea")
    again = await polls.vote("p1", "alice", "tea")
    assert again.repeated and again.tallies == {"tea": 1}
    assert len(await updates(store)) == 1


async def test_voting_for_another_option_is_refused_and_changes_nothing() -> None:
    store = MemoryStore()
    polls = Polls(store, max_options=5)
    await polls.vote("p1", "alice", "tea")
    with pytest.raises(AlreadyVoted) as refused:
        await polls.vote("p1", "alice", "coffee")
    assert refused.value.status == 409
    assert await polls.tallies("p1") == {"tea": 1}
    assert await polls.choice("p1", "alice") == "tea"
    assert len(await updates(store)) == 1


async def test_one_client_votes_once_in_each_poll() -> None:
    polls = Polls(MemoryStore(), max_options=5)
    await polls.vote("p1", "alice", "tea")
    await polls.vote("p2", "alice", "coffee")
    assert await polls.tallies("p1") == {"tea": 1}
    assert await polls.tallies("p2") == {"coffee": 1}


async def test_a_poll_nobody_voted_in_has_no_tallies() -> None:
    assert await Polls(MemoryStore(), max_options=5).tallies("nobody") == {}


async def test_an_option_beyond_the_limit_is_refused_and_stores_nothing() -> None:
    store = MemoryStore()
    polls = Polls(store, max_options=2)
    await polls.vote("p1", "a", "one")
    await polls.vote("p1", "b", "two")
    with pytest.raises(ValidationFailed):
        await polls.vote("p1", "c", "three")
    assert await polls.choice("p1", "c") is None
    await polls.vote("p1", "c", "two")  # an existing option is still fine
    assert await polls.tallies("p1") == {"one": 1, "two": 2}


async def test_concurrent_votes_on_two_instances_are_all_counted_in_order() -> None:
    store = YieldingStore()
    one, two = Polls(store, max_options=5), Polls(store, max_options=5)
    await asyncio.gather(
        *(
            (one if n % 2 else two).vote("p1", f"client{n}", "yes" if n % 3 else "no")
            for n in range(30)
        )
    )
    assert await one.tallies("p1") == {"yes": 20, "no": 10}
    totals = [u["total"] for u in await updates(store)]
    assert totals == list(range(1, 31))  # never a tally going backwards


async def test_a_lock_admits_one_holder_at_a_time() -> None:
    store = YieldingStore()
    inside: list[int] = []
    most = 0

    async def hold(n: int) -> None:
        nonlocal most
        async with StoreLock(store, "x"):
            inside.append(n)
            most = max(most, len(inside))
            await asyncio.sleep(0.01)
            inside.remove(n)

    await asyncio.gather(*(hold(n) for n in range(5)))
    assert most == 1


async def test_a_lock_held_too_long_answers_conflict() -> None:
    store = MemoryStore()
    async with StoreLock(store, "x"):
        with pytest.raises(Conflict) as busy:
            async with StoreLock(store, "x", wait=0.05):
                pass
    assert busy.value.status == 409


async def test_a_lock_whose_holder_died_frees_itself_when_its_lease_ends() -> None:
    store = MemoryStore()
    await store.acquire_lease("lock:x", "dead-instance", limit=1, ttl=0.1)
    async with StoreLock(store, "x", wait=2):
        pass
