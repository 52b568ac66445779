"""Fleet metrics end to end: real uvicorn processes, real HTTP, the events a dashboard gets.

The fleet ticks every 0.3 s here (3 s by default) so that a few windows show many updates.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
import pytest

from serverless_sse.auth import mint_token
from serverless_sse.cursor import Cursor
from tests.servers import UvicornServer
from tests.sse import StreamResult, read_stream
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e

INTERVAL = 0.3
SERVERS = ["web-01", "api-01", "db-01", "cache-01", "worker-01"]


def fleet_env(store_url: str, seed: int) -> dict[str, str]:
    return {
        "SSE_STORE": store_url,
        "SSE_FLEET_SEED": str(seed),
        "SSE_FLEET_SIZE": "5",
        "SSE_FLEET_INTERVAL_SECONDS": str(INTERVAL),
        "SSE_HEARTBEAT_SECONDS": "5",
    }


REDIS_DB = 4  # this module's own database


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def store_url(request: pytest.FixtureRequest) -> str:
    url = STORE_URLS[request.param](REDIS_DB)
    flush_redis(url)
    return url


def shared(url: str) -> bool:
    """Whether two server processes on ``url`` share their events (not the memory store)."""
    return not url.startswith("memory:")


@pytest.fixture(scope="module")
def seed() -> int:
    # A fleet of its own per run: control records of earlier runs on a shared store stay apart.
    return random.randrange(1, 2**40)


@pytest.fixture(scope="module")
def server(store_url: str, seed: int) -> Iterator[UvicornServer]:
    with UvicornServer(fleet_env(store_url, seed)) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def envelopes(result: StreamResult) -> list[dict[str, Any]]:
    """Every event's ``data`` (the envelope format: no ``event:`` field, ``type`` inside)."""
    assert all(e.type == "message" for e in result.events)
    return [json.loads(e.data) for e in result.events]


def updates(result: StreamResult) -> list[dict[str, Any]]:
    return [e for e in envelopes(result) if e["type"] == "server_update"]


def merged(events: list[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """The client's view after each server_update: the snapshot, with deltas merged by id."""
    view: dict[str, dict[str, Any]] = {}
    views = []
    for event in events:
        if event["full"]:
            view = {s["id"]: dict(s) for s in event["data"]}
        else:
            for change in event["data"]:
                view[change["id"]].update(change)
        views.append({k: dict(v) for k, v in view.items()})
    return views


async def control(http: httpx.AsyncClient, server_id: str, action: str) -> httpx.Response:
    return await http.post("/api/servers/control", json={"server_id": server_id, "action": action})


# -- snapshots and updates -----------------------------------------------------------------


async def test_the_server_list_is_a_snapshot_with_a_cursor(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/servers")
    assert response.status_code == 200
    body = response.json()
    assert [s["id"] for s in body["servers"]] == SERVERS
    for server in body["servers"]:
        assert {"status", "cpu", "memory", "disk", "network_in", "network_out"} <= server.keys()
    assert body["interval"] == INTERVAL
    cursor = Cursor.decode(body["cursor"])
    assert all(cursor.position(f"fleet/servers/{s}") is not None for s in SERVERS)


async def test_the_stream_sends_the_full_snapshot_then_only_changes(
    http: httpx.AsyncClient,
) -> None:
    result = await read_stream(http, "/api/stream?window=1.8", max_seconds=10)
    assert result.status == 200
    events = updates(result)
    first, rest = events[0], events[1:]
    assert first["full"] is True
    assert [s["id"] for s in first["data"]] == SERVERS
    assert len(rest) >= 3
    for event in rest:
        assert event["full"] is False
        for change in event["data"]:
            assert "hostname" not in change and "region" not in change, "static fields stay"
            assert len(change) > 1
    ticks = [e["tick"] for e in events]
    assert ticks == sorted(set(ticks)), "one update per tick, in order"
    assert envelopes(result)[-1]["type"] == "timeout"


async def test_the_envelope_keeps_the_source_clients_fields(http: httpx.AsyncClient) -> None:
    # seeds/000: onmessage -> JSON.parse(event.data); switch (parsed.type) ...; parsed.data
    result = await read_stream(http, "/api/stream?window=0.5", max_seconds=10)
    first = envelopes(result)[0]
    assert first["type"] == "server_update"
    assert isinstance(first["data"], list) and isinstance(first["timestamp"], int)


async def test_a_reconnect_gets_a_fresh_full_snapshot(http: httpx.AsyncClient) -> None:
    one = await read_stream(http, "/api/stream?window=0.8", max_seconds=10)
    again = await read_stream(
        http, "/api/stream?window=0.8", last_event_id=one.last_event_id, max_seconds=10
    )
    first = updates(again)[0]
    assert first["full"] is True and len(first["data"]) == len(SERVERS)
    assert first["tick"] >= updates(one)[-1]["tick"]


async def test_ticks_continue_across_reconnects_without_repeating(
    store_url: str, seed: int
) -> None:
    # Ticks of 1 s: each window resumes from the last one's id at once, well within a tick, so
    # most reconnects arrive during the tick the reader already has.
    env = {**fleet_env(store_url, seed), "SSE_FLEET_INTERVAL_SECONDS": "1"}
    ticks: list[int] = []
    with UvicornServer(env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            cursor = None
            for _ in range(3):
                result = await read_stream(
                    http, "/api/stream?window=1.5", last_event_id=cursor, max_seconds=10
                )
                events = updates(result)
                assert events[0]["full"] is True, "every connection starts with a full snapshot"
                ticks += [e["tick"] for e in events]
                cursor = result.last_event_id
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "each tick once, none skipped"


async def test_full_updates_send_every_server_every_tick(http: httpx.AsyncClient) -> None:
    result = await read_stream(http, "/api/stream?window=1.2&updates=full", max_seconds=10)
    events = updates(result)
    assert len(events) >= 3
    for event in events:
        assert event["full"] is True and [s["id"] for s in event["data"]] == SERVERS


async def test_one_server_has_a_stream_of_its_own(http: httpx.AsyncClient) -> None:
    result = await read_stream(http, "/api/servers/cache-01/stream?window=1", max_seconds=10)
    events = updates(result)
    assert {c["id"] for e in events for c in e["data"]} == {"cache-01"}
    single = (await http.get("/api/servers/cache-01")).json()
    assert single["server"]["id"] == "cache-01"


# -- control -------------------------------------------------------------------------------


async def test_a_control_result_arrives_over_the_stream_once(http: httpx.AsyncClient) -> None:
    cursor = (await http.get("/api/servers")).json()["cursor"]
    accepted = await control(http, "web-01", "restart")
    assert accepted.status_code == 202
    body = accepted.json()
    assert (body["server_id"], body["action"], body["success"]) == ("web-01", "restart", True)
    result = await read_stream(
        http, f"/api/stream?window=0.6&last_event_id={cursor}", max_seconds=10
    )
    results = [e for e in envelopes(result) if e["type"] == "control_result"]
    assert [r["data"]["action"] for r in results] == ["restart"]
    assert results[0]["data"] == {k: v for k, v in body.items() if k not in ("id", "seq")}
    # The answer's id is the event's place in the server's log, as the stream's id holds it.
    [event] = [e for e in result.events if json.loads(e.data)["type"] == "control_result"]
    channel = "fleet/servers/web-01"
    position = Cursor.decode(event.last_event_id).position(channel)
    assert position == Cursor.decode(body["id"]).position(channel)
    assert position is not None and position.seq == body["seq"]
    resumed = await read_stream(
        http, "/api/stream?window=0.6", last_event_id=result.last_event_id, max_seconds=10
    )
    assert not [e for e in envelopes(resumed) if e["type"] == "control_result"]


async def test_a_restart_goes_through_stopping_and_starting(http: httpx.AsyncClient) -> None:
    stream = asyncio.create_task(
        read_stream(http, "/api/servers/db-01/stream?window=3", max_seconds=10)
    )
    await asyncio.sleep(0.2)
    assert (await control(http, "db-01", "restart")).status_code == 202
    result = await stream
    statuses = [view["db-01"]["status"] for view in merged(updates(result))]
    seen = [s for n, s in enumerate(statuses) if n == 0 or s != statuses[n - 1]]
    start = seen.index("stopping")
    assert seen[start : start + 2] == ["stopping", "starting"]
    assert seen[start + 2] in ("online", "warning", "critical")
    views = merged(updates(result))
    booting = next(v["db-01"] for v in views if v["db-01"]["status"] == "starting")
    assert booting["cpu"] is None and booting["memory"] is None


async def test_the_source_clients_control_body_is_accepted(http: httpx.AsyncClient) -> None:
    # seeds/000: body: JSON.stringify({ serverId, action })
    response = await http.post(
        "/api/servers/control", json={"serverId": "worker-01", "action": "stop"}
    )
    assert response.status_code == 202
    assert response.json()["server_id"] == "worker-01"


async def test_a_stopped_server_reports_no_metrics_until_started(
    http: httpx.AsyncClient,
) -> None:
    assert (await control(http, "api-01", "stop")).status_code == 202
    await asyncio.sleep(3 * INTERVAL)
    stopped = (await http.get("/api/servers/api-01")).json()["server"]
    assert stopped["status"] == "stopped" and stopped["cpu"] is None
    refused = await control(http, "api-01", "restart")
    assert refused.status_code == 409
    assert (await control(http, "api-01", "start")).status_code == 202
    await asyncio.sleep(4 * INTERVAL)
    assert (await http.get("/api/servers/api-01")).json()["server"]["cpu"] is not None


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"server_id": "mainframe", "action": "restart"}, 404, "not_found"),
        ({"server_id": "cache-01", "action": "explode"}, 422, "validation_failed"),
        ({"server_id": "cache-01"}, 422, "validation_failed"),
        ({"server_id": "cache-01", "action": "start"}, 409, "conflict"),
        ("not json", 400, "bad_request"),
    ],
)
async def test_bad_control_requests_are_refused_and_store_nothing(
    http: httpx.AsyncClient, body: Any, status: int, error: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await http.post("/api/servers/control", content=content)
    assert response.status_code == status
    assert response.json()["error"] == error
    log = (await http.get("/channels/fleet/servers/cache-01/events")).json()
    assert log["events"] == []


async def test_an_unknown_server_is_404_everywhere(http: httpx.AsyncClient) -> None:
    for path in ("/api/servers/mainframe", "/api/servers/mainframe/stream"):
        response = await http.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


async def test_a_stream_cursor_that_does_not_parse_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/stream", headers={"Last-Event-ID": "garbage!"})
    assert response.status_code == 400


# -- many instances ------------------------------------------------------------------------


async def test_two_instances_compute_the_same_fleet(store_url: str, seed: int) -> None:
    # Metrics are a function of (seed, tick, stored controls): no instance owns a loop.
    with (
        UvicornServer(fleet_env(store_url, seed)) as a,
        UvicornServer(fleet_env(store_url, seed)) as b,
    ):
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(20):
                one, other = await asyncio.gather(
                    http.get(f"{a.url}/api/servers"), http.get(f"{b.url}/api/servers")
                )
                if one.json()["tick"] == other.json()["tick"]:
                    break
            assert one.json()["tick"] == other.json()["tick"]
            if shared(store_url):
                assert one.json()["servers"] == other.json()["servers"]
            else:
                # Separate memory stores: the same up to the control records each one holds.
                untouched = [s for s in one.json()["servers"] if s["id"] == "cache-01"]
                assert untouched == [s for s in other.json()["servers"] if s["id"] == "cache-01"]


async def test_a_control_on_one_instance_reaches_a_stream_on_another(
    store_url: str, server: UvicornServer, seed: int
) -> None:
    if not shared(store_url):
        pytest.skip("each process has its own memory store")
    with UvicornServer(fleet_env(store_url, seed)) as other:
        async with httpx.AsyncClient(timeout=10) as http:
            cursor = (await http.get(f"{other.url}/api/servers/cache-01")).json()["cursor"]
            stream = asyncio.create_task(
                read_stream(
                    http,
                    f"{other.url}/api/servers/cache-01/stream?window=2.5&last_event_id={cursor}",
                    max_seconds=10,
                )
            )
            await asyncio.sleep(0.2)
            response = await http.post(
                f"{server.url}/api/servers/control",
                json={"server_id": "cache-01", "action": "restart"},
            )
            assert response.status_code == 202
            result = await stream
    assert [e["data"]["action"] for e in envelopes(result) if e["type"] == "control_result"] == [
        "restart"
    ]
    statuses = {v["cache-01"]["status"] for v in merged(updates(result))}
    assert {"stopping", "starting"} <= statuses


# -- who sees and controls what ------------------------------------------------------------

SECRET = "fleet-e2e-secret-" + "x" * 32


def bearer(publish: list[str], subscribe: list[str]) -> dict[str, str]:
    token = mint_token(SECRET, "ops", publish=publish, subscribe=subscribe, ttl=300)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secured(seed: int) -> Iterator[UvicornServer]:
    # The permission checks do not depend on the store: one backend is enough here.
    env = {**fleet_env("memory://", seed), "SSE_JWT_SECRET": SECRET}
    with UvicornServer(env) as running:
        yield running


async def test_a_token_sees_only_the_servers_it_may_subscribe_to(
    secured: UvicornServer,
) -> None:
    web_and_db = bearer([], ["fleet/servers/web-*", "fleet/servers/db-01"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, headers=web_and_db) as http:
        listed = (await http.get("/api/servers")).json()["servers"]
        assert [s["id"] for s in listed] == ["web-01", "db-01"]
        result = await read_stream(http, "/api/stream?window=0.5", max_seconds=10)
        assert [s["id"] for s in updates(result)[0]["data"]] == ["web-01", "db-01"]
        hidden = await http.get("/api/servers/cache-01/stream")
        assert hidden.status_code == 403


async def test_without_a_credential_the_fleet_answers_401(secured: UvicornServer) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        for path in ("/api/servers", "/api/stream", "/api/servers/web-01"):
            assert (await http.get(path)).status_code == 401, path


async def test_control_needs_a_publish_grant_for_that_server(secured: UvicornServer) -> None:
    operator = bearer(["fleet/servers/worker-*"], ["fleet/servers/**"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, headers=operator) as http:
        allowed = await control(http, "worker-01", "restart")
        refused = await control(http, "db-01", "restart")
    assert allowed.status_code == 202
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")


# -- the host machine as the fleet (SSE_FLEET_SOURCE=host) --------------------------------


@pytest.fixture(scope="module")
def host_fleet() -> Iterator[UvicornServer]:
    # Read from the environment by Settings, like every other option.
    env = {
        "SSE_STORE": "memory://",
        "SSE_FLEET_SOURCE": "host",
        "SSE_FLEET_INTERVAL_SECONDS": str(INTERVAL),
        "SSE_HEARTBEAT_SECONDS": "5",
    }
    with UvicornServer(env) as running:
        yield running


def this_machine() -> dict[str, Any]:
    booted = datetime.fromtimestamp(psutil.boot_time(), UTC)
    return {
        "id": "host",
        "hostname": socket.gethostname(),
        "role": "host",
        "started_at": booted.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


async def test_the_host_fleet_lists_the_machine_that_serves_it(host_fleet: UvicornServer) -> None:
    async with httpx.AsyncClient(base_url=host_fleet.url, timeout=30) as http:
        body = (await http.get("/api/servers")).json()
    [server] = body["servers"]
    assert {k: server[k] for k in this_machine()} == this_machine()
    assert server["disk"] == pytest.approx(psutil.disk_usage("/").percent, abs=2)
    assert 0 <= server["cpu"] <= 100 and 0 < server["memory"] <= 100
    assert server["network_in"] >= 0 and server["network_out"] >= 0
    assert body["interval"] == INTERVAL
    assert Cursor.decode(body["cursor"]).position("fleet/servers/host") is not None


async def test_the_host_fleet_streams_its_snapshot_then_its_changes(
    host_fleet: UvicornServer,
) -> None:
    async with httpx.AsyncClient(base_url=host_fleet.url, timeout=30) as http:
        result = await read_stream(http, "/api/stream?window=1.8", max_seconds=10)
        one = await read_stream(http, "/api/servers/host/stream?window=0.8", max_seconds=10)
    events = updates(result)
    first, rest = events[0], events[1:]
    assert first["full"] is True
    [server] = first["data"]
    assert {k: server[k] for k in this_machine()} == this_machine()
    assert rest, "the host is sampled every tick"
    for event in rest:
        assert event["full"] is False
        assert {change["id"] for change in event["data"]} <= {"host"}
        assert all("hostname" not in change for change in event["data"]), "static fields stay"
    assert [s["id"] for e in updates(one) for s in e["data"]][:1] == ["host"]


async def test_the_host_cannot_be_controlled(host_fleet: UvicornServer) -> None:
    async with httpx.AsyncClient(base_url=host_fleet.url, timeout=30) as http:
        refused = await control(http, "host", "restart")
    assert refused.status_code == 409
    assert "host fleet" in refused.json()["detail"]
