"""The fleet over a store: snapshots per tick, visibility, control records and their results,
the per-stream ticker, and the host machine as a fleet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from serverless_sse.auth import Principal
from serverless_sse.cursor import Cursor, Position
from serverless_sse.errors import Conflict, NotFound
from serverless_sse.fleet import TICKS, Control, Fleet, FleetTicker, server_channel, ticks_epoch
from serverless_sse.fleet.host import HostFleet
from serverless_sse.fleet.simulation import SimulatedFleet
from serverless_sse.locks import StoreLock
from serverless_sse.stores.memory import MemoryStore

INTERVAL = 3.0
T0 = 600_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 * INTERVAL + 1.0)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    yield store
    await store.aclose()


def make_fleet(store: MemoryStore, clock: Clock, *, seed: int = 9) -> Fleet:
    source = SimulatedFleet(seed=seed, size=5, interval=INTERVAL)
    return Fleet(store, source, interval=INTERVAL, name=f"sim{seed}", clock=clock, lock_wait=0.5)


@pytest.fixture
def fleet(store: MemoryStore, clock: Clock) -> Fleet:
    return make_fleet(store, clock)


# -- snapshots -----------------------------------------------------------------------------


async def test_a_snapshot_is_the_fleet_at_the_current_tick(fleet: Fleet, clock: Clock) -> None:
    snapshot = await fleet.snapshot()
    assert snapshot.tick == T0
    assert snapshot.timestamp == T0 * INTERVAL
    assert list(snapshot.servers) == ["web-01", "api-01", "db-01", "cache-01", "worker-01"]


async def test_instances_sharing_a_store_agree_on_every_tick(
    store: MemoryStore, clock: Clock
) -> None:
    one, other = make_fleet(store, clock), make_fleet(store, clock)
    await one.control("db-01", "stop")
    for step in range(4):
        clock.now += INTERVAL
        assert await one.snapshot() == await other.snapshot(), step


async def test_a_tick_is_computed_once_per_process(fleet: Fleet) -> None:
    calls = 0
    states = fleet.source.states

    async def counting(*args: object) -> object:
        nonlocal calls
        calls += 1
        return await states(*args)  # type: ignore[arg-type]

    fleet.source.states = counting  # type: ignore[method-assign]
    await asyncio.gather(*(fleet.snapshot() for _ in range(20)))
    assert calls == 1


def test_the_next_tick_is_just_ahead(fleet: Fleet, clock: Clock) -> None:
    wait = fleet.until_next_tick()
    assert INTERVAL - 1.0 < wait <= INTERVAL - 1.0 + 0.05 + 1e-9


# -- who sees what -------------------------------------------------------------------------


def test_the_open_principal_sees_every_server(fleet: Fleet) -> None:
    assert len(fleet.visible(Principal("ip:127.0.0.1"))) == 5


def test_a_principal_sees_the_servers_its_patterns_allow(fleet: Fleet) -> None:
    web_only = Principal("alice", subscribe=("fleet/servers/web-*", "fleet/servers/db-01"))
    assert [s.id for s in fleet.visible(web_only)] == ["web-01", "db-01"]


def test_an_unknown_server_is_not_found(fleet: Fleet) -> None:
    with pytest.raises(NotFound):
        fleet.spec("mainframe-01")


# -- control -------------------------------------------------------------------------------


async def test_a_control_action_is_stored_and_logged(fleet: Fleet, store: MemoryStore) -> None:
    result = await fleet.control("web-01", "restart")
    assert result.seq == 1
    assert result.data["status"] == "stopping"
    assert [s["status"] for s in result.data["sequence"]] == ["stopping", "starting", "online"]
    [event] = (await store.read(server_channel("web-01"), 0, limit=10)).events
    assert event.type == "control_result"
    assert json.loads(event.data)["data"] == result.data
    stored = await store.get_value("fleet:sim9:control:web-01")
    assert stored is not None
    assert Control.loads(stored) == Control("restart", T0 + 1, T0 * INTERVAL + 1.0, True)


async def test_an_action_takes_effect_from_the_next_tick(fleet: Fleet, clock: Clock) -> None:
    await fleet.control("web-01", "stop")
    assert (await fleet.snapshot()).servers["web-01"]["status"] != "stopping"
    clock.now += INTERVAL
    assert (await fleet.snapshot()).servers["web-01"]["status"] == "stopping"
    clock.now += INTERVAL
    assert (await fleet.snapshot()).servers["web-01"]["status"] == "stopped"


async def test_an_action_the_state_does_not_allow_is_refused_and_stores_nothing(
    fleet: Fleet, store: MemoryStore
) -> None:
    with pytest.raises(Conflict, match="already running"):
        await fleet.control("api-01", "start")
    assert await store.get_value("fleet:sim9:control:api-01") is None
    assert (await store.state(server_channel("api-01"))).last_seq == 0


async def test_a_stopped_server_can_be_started_again(fleet: Fleet, clock: Clock) -> None:
    await fleet.control("db-01", "stop")
    clock.now += 2 * INTERVAL
    with pytest.raises(Conflict, match="start it instead"):
        await fleet.control("db-01", "restart")
    result = await fleet.control("db-01", "start")
    assert [s["status"] for s in result.data["sequence"]] == ["starting", "online"]
    clock.now += 3 * INTERVAL
    assert (await fleet.snapshot()).servers["db-01"]["cpu"] is not None


async def test_concurrent_actions_on_one_server_apply_one_at_a_time(
    fleet: Fleet, store: MemoryStore
) -> None:
    outcomes = await asyncio.gather(
        *(fleet.control("cache-01", "stop") for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    assert (await store.state(server_channel("cache-01"))).last_seq == 1


async def test_a_result_a_crash_left_unlogged_is_logged_by_the_next_action(
    fleet: Fleet, store: MemoryStore, clock: Clock
) -> None:
    # A request stored its action, then died before logging the result.
    crashed = Control("stop", T0 + 1, clock.now)
    await store.put_value("fleet:sim9:control:worker-01", crashed.dumps())
    clock.now += 2 * INTERVAL
    await fleet.control("worker-01", "start")
    events = (await store.read(server_channel("worker-01"), 0, limit=10)).events
    actions = [json.loads(e.data)["data"]["action"] for e in events]
    assert actions == ["stop", "start"]


async def test_the_host_fleet_cannot_be_controlled(store: MemoryStore) -> None:
    host = Fleet(store, HostFleet(interval=1.0), interval=1.0, name="host")
    with pytest.raises(Conflict, match="cannot be controlled"):
        await host.control("host", "restart")


# -- the ticker ----------------------------------------------------------------------------


async def test_a_ticker_opens_with_the_full_snapshot(fleet: Fleet) -> None:
    ticker = FleetTicker(fleet, ["web-01", "db-01"], await fleet.snapshot())
    [(event_type, payload)] = ticker.prelude
    assert event_type == "server_update"
    assert payload["full"] is True and payload["tick"] == T0
    assert [s["id"] for s in payload["data"]] == ["web-01", "db-01"]
    assert {"cpu", "memory", "disk", "status", "hostname"} <= payload["data"][0].keys()


async def test_a_ticker_then_sends_only_what_changed(fleet: Fleet, clock: Clock) -> None:
    ticker = FleetTicker(fleet, ["web-01", "db-01"], await fleet.snapshot())
    clock.now += INTERVAL
    [(event_type, payload)] = await ticker()
    assert event_type == "server_update" and payload["full"] is False
    for change in payload["data"]:
        assert "hostname" not in change and "region" not in change
        assert change.keys() - {"id"} <= {
            "status",
            "started_at",
            "cpu",
            "memory",
            "disk",
            "network_in",
            "network_out",
        }


async def test_a_ticker_woken_twice_in_a_tick_sends_nothing_new(fleet: Fleet) -> None:
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot())
    assert await ticker() == []


async def test_a_full_updates_ticker_sends_every_server_whole(fleet: Fleet, clock: Clock) -> None:
    ticker = FleetTicker(fleet, ["web-01", "db-01"], await fleet.snapshot(), deltas=False)
    clock.now += INTERVAL
    [(_, payload)] = await ticker()
    assert payload["full"] is True
    assert payload["data"] == (await fleet.snapshot()).of(["web-01", "db-01"])


def cursor_after(tick: int, interval: float = INTERVAL) -> str:
    """A fleet stream's id as a reader that last got ``tick`` holds it."""
    positions = {
        server_channel("web-01"): Position("", 0),
        TICKS: Position(ticks_epoch(interval), tick),
    }
    return Cursor.encode_positions(positions)


async def test_a_tickers_mark_is_the_last_tick_it_sent(fleet: Fleet, clock: Clock) -> None:
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot())
    assert ticker.mark == (TICKS, Position(ticks_epoch(INTERVAL), T0))
    clock.now += INTERVAL
    await ticker()
    assert ticker.mark == (TICKS, Position(ticks_epoch(INTERVAL), T0 + 1))


async def test_a_reconnect_within_the_tick_it_has_gets_the_next_tick_whole(
    fleet: Fleet, clock: Clock
) -> None:
    ticker = FleetTicker(
        fleet, ["web-01", "db-01"], await fleet.snapshot(), cursor=cursor_after(T0)
    )
    assert ticker.prelude == [], "the reader has this tick: it is not sent again"
    assert await ticker() == []
    clock.now += INTERVAL
    [(_, payload)] = await ticker()
    assert payload["tick"] == T0 + 1 and payload["full"] is True
    assert payload["data"] == (await fleet.snapshot()).of(["web-01", "db-01"])
    clock.now += INTERVAL
    [(_, payload)] = await ticker()
    assert payload["tick"] == T0 + 2 and payload["full"] is False


async def test_a_reconnect_in_the_next_tick_opens_with_it_whole(fleet: Fleet) -> None:
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot(), cursor=cursor_after(T0 - 1))
    [(_, payload)] = ticker.prelude
    assert payload["tick"] == T0 and payload["full"] is True


async def test_a_reader_one_tick_ahead_waits_for_the_tick_after_it(
    fleet: Fleet, clock: Clock
) -> None:
    # Its last tick came from an instance whose clock runs a little ahead.
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot(), cursor=cursor_after(T0 + 1))
    assert ticker.prelude == []
    clock.now += INTERVAL
    assert await ticker() == []
    clock.now += INTERVAL
    [(_, payload)] = await ticker()
    assert payload["tick"] == T0 + 2 and payload["full"] is True


@pytest.mark.parametrize("tick", [T0 - 5, T0 + 2, 0])
async def test_a_reader_away_for_long_or_from_the_future_starts_afresh(
    fleet: Fleet, tick: int
) -> None:
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot(), cursor=cursor_after(tick))
    [(_, payload)] = ticker.prelude
    assert payload["tick"] == T0 and payload["full"] is True


async def test_a_tick_counted_with_another_interval_is_not_resumed(fleet: Fleet) -> None:
    cursor = cursor_after(T0, interval=INTERVAL / 2)
    ticker = FleetTicker(fleet, ["web-01"], await fleet.snapshot(), cursor=cursor)
    [(_, payload)] = ticker.prelude
    assert payload["tick"] == T0 and payload["full"] is True


# -- the host machine ----------------------------------------------------------------------


async def test_the_host_reports_this_machine() -> None:
    host = HostFleet(interval=1.0)
    state = (await host.states(0, {}))["host"]
    assert state["id"] == "host" and state["role"] == "host"
    assert 0 <= state["cpu"] <= 100 and 0 < state["memory"] <= 100 and 0 < state["disk"] <= 100
    assert state["network_in"] >= 0 and state["network_out"] >= 0
    assert state["status"] in ("online", "warning", "critical")
    assert state["started_at"].endswith("Z")


# -- the lock ------------------------------------------------------------------------------


async def test_a_store_lock_admits_one_holder_at_a_time(store: MemoryStore) -> None:
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        async with StoreLock(store, "thing", wait=5):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(worker() for _ in range(8)))
    assert most == 1


async def test_a_store_lock_held_too_long_is_a_conflict(store: MemoryStore) -> None:
    async with StoreLock(store, "thing"):
        with pytest.raises(Conflict, match="busy"):
            await StoreLock(store, "thing", wait=0.05).acquire()


async def test_a_lost_lock_cannot_be_renewed(store: MemoryStore) -> None:
    lock = StoreLock(store, "thing", ttl=0.05)
    await lock.acquire()
    await asyncio.sleep(0.1)
    async with StoreLock(store, "thing"):
        with pytest.raises(Conflict, match="expired"):
            await lock.renew()
