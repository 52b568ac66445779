"""The simulated fleet and the fleet's pure values: determinism, bounds, realistic motion,
status changes, control sequences and deltas."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from typing import Any

import pytest

from serverless_sse.fleet.model import Control, changes, refusal
from serverless_sse.fleet.simulation import SimulatedFleet

T0 = 600_000_000  # a tick in 2026 at 3 s a tick
METRICS = ("cpu", "memory", "disk", "network_in", "network_out")


def fleet(seed: int = 7, size: int = 8, interval: float = 3.0) -> SimulatedFleet:
    return SimulatedFleet(seed=seed, size=size, interval=interval)


# -- determinism ---------------------------------------------------------------------------


def test_the_same_seed_and_tick_give_the_same_fleet_in_any_instance() -> None:
    one, other = fleet(seed=11), fleet(seed=11)
    for tick in (T0, T0 + 1, T0 + 12_345):
        assert [one.state(i, tick) for i in one.server_ids()] == [
            other.state(i, tick) for i in other.server_ids()
        ]


def test_a_state_does_not_depend_on_what_was_computed_before() -> None:
    warm, cold = fleet(), fleet()
    for tick in range(T0 - 50, T0):
        warm.state("web-01", tick)
    assert warm.state("web-01", T0) == cold.state("web-01", T0)


def test_another_seed_gives_another_fleet() -> None:
    one, other = fleet(seed=1), fleet(seed=2)
    assert [one.state(i, T0) for i in one.server_ids()] != [
        other.state(i, T0) for i in other.server_ids()
    ]


def test_servers_are_named_by_role_and_numbered() -> None:
    assert fleet(size=7).server_ids() == [
        "web-01",
        "api-01",
        "db-01",
        "cache-01",
        "worker-01",
        "web-02",
        "api-02",
    ]


# -- realistic values ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> dict[str, list[dict[str, Any]]]:
    """Three thousand ticks (2.5 hours) of an eight-server fleet."""
    sim = fleet(seed=3)
    return {i: [sim.state(i, t) for t in range(T0, T0 + 3000)] for i in sim.server_ids()}


def test_metrics_stay_within_their_bounds(
    history: dict[str, list[dict[str, Any]]],
) -> None:
    for states in history.values():
        for state in states:
            if state["cpu"] is None:
                continue
            for metric in ("cpu", "memory", "disk"):
                assert 0 <= state[metric] <= 100
            assert state["network_in"] >= 0 and state["network_out"] >= 0


def test_metrics_walk_rather_than_jump(history: dict[str, list[dict[str, Any]]]) -> None:
    # A random walk: consecutive values are strongly correlated, unlike independent noise.
    cpu = [s["cpu"] for s in history["api-01"] if s["cpu"] is not None]
    assert statistics.correlation(cpu[:-1], cpu[1:]) > 0.7
    steps = [abs(b - a) for a, b in itertools.pairwise(cpu)]
    assert statistics.median(steps) < statistics.pstdev(cpu) / 2


def test_servers_change_status_over_time(history: dict[str, list[dict[str, Any]]]) -> None:
    seen = Counter(s["status"] for states in history.values() for s in states)
    assert {"online", "warning", "critical", "offline"} <= seen.keys()
    assert seen["online"] > sum(seen.values()) * 0.7, "mostly healthy, as fleets are"


def test_status_follows_the_thresholds(history: dict[str, list[dict[str, Any]]]) -> None:
    for states in history.values():
        for s in states:
            if s["status"] == "offline":
                assert all(s[m] is None for m in METRICS)
                continue
            critical = s["cpu"] >= 90 or s["memory"] >= 92 or s["disk"] >= 95
            warning = s["cpu"] >= 75 or s["memory"] >= 85 or s["disk"] >= 85
            expected = "critical" if critical else "warning" if warning else "online"
            assert s["status"] == expected


def test_load_follows_the_time_of_day() -> None:
    sim = fleet(seed=5, interval=60.0)
    ticks_per_day = 1440
    day = T0 // 20 // ticks_per_day * ticks_per_day  # a UTC midnight, in minutes

    def mean_cpu(hour_utc: int) -> float:
        start = day + hour_utc * 60
        return statistics.fmean(
            sim.state("web-01", t)["cpu"] or 0.0 for t in range(start, start + 120)
        )

    region = sim.specs[0].region
    noon = {"us-east-1": 17, "eu-west-1": 12, "ap-northeast-2": 3}[region]
    assert mean_cpu(noon) > mean_cpu((noon + 12) % 24) + 5


# -- control actions -----------------------------------------------------------------------


def statuses(sim: SimulatedFleet, control: Control, ticks: range) -> list[str]:
    return [sim.state("db-01", t, control)["status"] for t in ticks]


def test_stop_goes_through_stopping_to_stopped_without_metrics() -> None:
    sim = fleet()
    stop = Control("stop", T0, T0 * 3.0)
    assert statuses(sim, stop, range(T0, T0 + 4)) == ["stopping", "stopped", "stopped", "stopped"]
    assert all(sim.state("db-01", T0 + 2, stop)[m] is None for m in METRICS)


def test_restart_stops_boots_and_comes_back_with_a_fresh_start_time() -> None:
    sim = fleet()
    restart = Control("restart", T0, T0 * 3.0)
    assert statuses(sim, restart, range(T0, T0 + 3)) == ["stopping", "starting", "starting"]
    back = sim.state("db-01", T0 + 3, restart)
    assert back["status"] in ("online", "warning", "critical")
    assert back["started_at"] == _iso((T0 + 3) * 3.0)


def test_start_boots_a_stopped_server() -> None:
    sim = fleet()
    stopped = Control("stop", T0 - 10, 0.0)
    started = stopped.then("start", T0, 1.0)
    assert statuses(sim, started, range(T0 - 1, T0 + 3))[:3] == ["stopped", "starting", "starting"]
    assert sim.state("db-01", T0 + 2, started)["cpu"] is not None


def test_before_its_tick_an_action_leaves_the_one_it_replaced_in_force() -> None:
    stopped = Control("stop", T0 - 10, 0.0)
    started = stopped.then("start", T0, 1.0)
    assert started.in_force(T0 - 1) == Control("stop", T0 - 10, 0.0, True)
    assert started.in_force(T0) is started
    assert Control("start", T0, 0.0).in_force(T0 - 1) is None


def test_an_action_replaced_before_its_tick_never_applies() -> None:
    first = Control("stop", T0 - 10, 0.0).then("start", T0, 1.0)
    second = first.then("stop", T0, 2.0)
    assert second.previous == Control("stop", T0 - 10, 0.0, True)


def test_a_restart_clears_an_incident_in_progress() -> None:
    sim = fleet(seed=3)
    offline = next(
        (server, t)
        for t in range(T0, T0 + 5000)
        for server in sim.server_ids()
        if sim.state(server, t)["status"] == "offline"
        and sim.state(server, t + 8)["status"] == "offline"
    )
    server, tick = offline
    restart = Control("restart", tick, 0.0)
    assert sim.state(server, tick + 4, restart)["status"] != "offline"


def test_control_records_survive_the_store_as_text() -> None:
    record = Control("stop", T0 - 10, 1.5).then("restart", T0, 2.5)
    assert Control.loads(record.dumps()) == record


@pytest.mark.parametrize(
    ("action", "status", "allowed"),
    [
        ("start", "stopped", True),
        ("start", "online", False),
        ("start", "stopping", False),
        ("stop", "online", True),
        ("stop", "starting", True),
        ("stop", "stopped", False),
        ("restart", "critical", True),
        ("restart", "offline", True),
        ("restart", "stopped", False),
        ("restart", "starting", False),
    ],
)
def test_which_actions_each_status_allows(action: Any, status: str, allowed: bool) -> None:
    assert (refusal(action, status, "db-01") is None) is allowed


def test_a_sequence_names_each_status_and_when_it_begins() -> None:
    assert Control("restart", 100, 0.0).sequence() == [
        ("stopping", 100),
        ("starting", 101),
        ("online", 103),
    ]


# -- deltas --------------------------------------------------------------------------------


def test_changes_hold_only_what_changed() -> None:
    before = {"a": {"id": "a", "cpu": 1.0, "memory": 2.0}, "b": {"id": "b", "cpu": 5.0}}
    after = {"a": {"id": "a", "cpu": 1.5, "memory": 2.0}, "b": {"id": "b", "cpu": 5.0}}
    assert changes(before, after) == [{"id": "a", "cpu": 1.5}]


def test_changes_carry_new_servers_whole_and_name_the_removed() -> None:
    before = {"a": {"id": "a", "cpu": 1.0}}
    after = {"c": {"id": "c", "cpu": 3.0}}
    assert changes(before, after) == [{"id": "c", "cpu": 3.0}, {"id": "a", "removed": True}]


def test_applying_changes_rebuilds_the_new_snapshot() -> None:
    sim = fleet()
    old = {i: sim.state(i, T0) for i in sim.server_ids()}
    new = {i: sim.state(i, T0 + 1, Control("stop", T0 + 1, 0.0)) for i in sim.server_ids()}
    merged = {i: dict(s) for i, s in old.items()}
    for change in changes(old, new):
        merged[change["id"]].update(change)
    assert merged == new


def _iso(timestamp: float) -> str:
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
