"""The bench's scenarios, small, against each system it measures: the tool must tell what
really happened (nothing lost where nothing is, everything lost where it is), so that its
figures can be trusted. The speed figures themselves are never asserted (they are bench/'s)."""

from __future__ import annotations

import pytest

from bench.loadtool import scenarios
from bench.loadtool.targets import TARGETS, nchan_available

pytestmark = pytest.mark.e2e

SYSTEMS = ["project", "peer", "nchan"]


@pytest.fixture(autouse=True)
def _nchan_installed(request: pytest.FixtureRequest) -> None:
    if "nchan" in request.node.name and not nchan_available():
        raise RuntimeError("nginx with Nchan is missing: scripts/ensure-nchan.sh installs it")


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_small_fanout_is_delivered_whole_and_measured(system: str) -> None:
    with TARGETS[system]() as target:
        result = scenarios.fanout(target, subscribers=20, rate=20, seconds=1, workers=2)
    assert (result["connected"], result["refused"]) == (20, 0)
    assert result["expected_deliveries"] == 20 * 20
    assert (result["lost"], result["duplicates"], result["out_of_order"]) == (0, 0, 0)
    assert result["delivered"] == 400
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_catch_up_is_exact_where_history_exists_and_reported_lost_where_not(
    system: str,
) -> None:
    with TARGETS[system]() as target:
        result = scenarios.catch_up(target, missed=300)
    if target.resumable:
        assert (result["received"], result["lost"], result["duplicates"]) == (300, 0, 0)
        assert result["events_per_s"] > 0
    else:
        assert (result["received"], result["lost"]) == (0, 300)
        assert result["events_per_s"] is None


@pytest.mark.parametrize("system", SYSTEMS)
def test_concurrent_publishes_are_all_accepted(system: str) -> None:
    with TARGETS[system]() as target:
        result = scenarios.publish_throughput(target, connections=4, count=200)
    assert result["accepted"] == 200
    if system == "project":
        assert result["gap_free"] is True, "sequences 1..200, none twice"
