"""Security, limits and observability through real servers, on every store at hand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from serverless_sse.auth import hash_key, mint_token
from tests.servers import UvicornServer
from tests.sse import read_stream
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-" + "x" * 32
KEY = "e2e-api-key-0123456789abcdef"
REDIS_DB = 8


def token(
    *,
    publish: list[str] | None = None,
    subscribe: list[str] | None = None,
    ttl: float = 300,
    sub: str = "ana",
) -> str:
    return mint_token(SECRET, sub, publish=publish or [], subscribe=subscribe or [], ttl=ttl)


def auth(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def secured_env(store: str, **extra: str) -> dict[str, str]:
    return {
        "SSE_STORE": store,
        "SSE_API_KEYS": hash_key(KEY),
        "SSE_JWT_SECRET": SECRET,
        "SSE_PUBLIC_SUBSCRIBE": "public/**",
        "SSE_CLOSED_SUBSCRIBE": "internal/**",
        "SSE_ALLOW_ANONYMOUS": "false",
        "SSE_CORS_ORIGINS": "https://app.example",
        "SSE_HEARTBEAT_SECONDS": "1",
        **extra,
    }


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    store = STORE_URLS[request.param](REDIS_DB)
    flush_redis(store)
    with UvicornServer(secured_env(store)) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def name(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


# -- credentials and grants ----------------------------------------------------------------


async def test_publishing_needs_a_credential(http: httpx.AsyncClient) -> None:
    channel = name("rooms")
    refused = await http.post(f"/channels/{channel}/events", json={"data": 1})
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    for headers in (auth(KEY), {"X-API-Key": KEY}):
        ok = await http.post(f"/channels/{channel}/events", json={"data": 1}, headers=headers)
        assert ok.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [auth("wrong-key"), {"Authorization": "Basic dXNlcjpwYXNz"}, auth("a.b.c")],
)
async def test_a_bad_credential_gets_401(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.post(
        f"/channels/{name('rooms')}/events", json={"data": 1}, headers=headers
    )
    assert response.status_code == 401
    assert set(response.json()) == {"error", "detail"}


async def test_a_token_publishes_only_where_it_was_granted(http: httpx.AsyncClient) -> None:
    headers = auth(token(publish=["tasks/*"]))
    post = lambda c: http.post(f"/channels/{c}/events", json={"data": 1}, headers=headers)  # noqa: E731
    assert (await post("tasks/1")).status_code == 201
    assert (await post("tasks/1/deep")).status_code == 403
    assert (await post("rooms/a")).status_code == 403
    assert (await http.post("/channels/tasks/2/close", headers=headers)).status_code == 200


async def test_public_channels_are_open_to_anyone(http: httpx.AsyncClient) -> None:
    channel = name("public")
    await http.post(f"/channels/{channel}/events", json={"data": "hi"}, headers=auth(KEY))
    result = await read_stream(http, f"/channels/{channel}/stream?from=start&window=0.5")
    assert result.status == 200 and result.data() == ["hi"]
    history = await http.get(f"/channels/{channel}/events")
    assert history.status_code == 200


async def test_private_channels_need_a_token_with_the_grant(http: httpx.AsyncClient) -> None:
    channel = name("rooms")
    stream = f"/channels/{channel}/stream?window=0.5"
    assert (await http.get(stream)).status_code == 401
    assert (await http.get(f"/channels/{channel}/events")).status_code == 401
    other = auth(token(subscribe=["tasks/*"]))
    assert (await http.get(stream, headers=other)).status_code == 403
    assert (await http.get(f"/channels/{channel}/events", headers=other)).status_code == 403
    granted = token(subscribe=["rooms/*"])
    for how in ({"headers": auth(granted)}, {"cookies": {"sse_token": granted}}):
        async with httpx.AsyncClient(base_url=str(http.base_url), **how) as client:  # type: ignore[arg-type]
            assert (await read_stream(client, stream)).status == 200
    assert (await read_stream(http, f"{stream}&access_token={granted}")).status == 200


async def test_every_channel_of_a_multiplexed_stream_is_checked(http: httpx.AsyncClient) -> None:
    headers = auth(token(subscribe=["rooms/*"]))
    ok = await read_stream(http, "/stream?channels=rooms/a,public/b&window=0.3", headers=headers)
    assert ok.status == 200
    refused = await http.get("/stream?channels=rooms/a,tasks/b&window=0.3", headers=headers)
    assert refused.status_code == 403
    assert "tasks/b" in refused.json()["detail"]


async def test_closed_channels_refuse_tokens_but_not_api_keys(http: httpx.AsyncClient) -> None:
    url = "/channels/internal/audit/stream?window=0.3"
    everything = auth(token(subscribe=["**"]))
    assert (await http.get(url, headers=everything)).status_code == 403
    assert (await read_stream(http, url, headers=auth(KEY))).status == 200


async def test_an_expired_token_gets_401(http: httpx.AsyncClient) -> None:
    expired = mint_token(SECRET, "ana", subscribe=["**"], ttl=-60)
    response = await http.get("/channels/rooms/a/stream", headers=auth(expired))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_a_token_expiring_mid_stream_ends_the_window(http: httpx.AsyncClient) -> None:
    soon = token(subscribe=["rooms/**"], ttl=2)
    started = time.monotonic()
    result = await read_stream(
        http, "/channels/rooms/a/stream?window=30", headers=auth(soon), max_seconds=15
    )
    elapsed = time.monotonic() - started
    assert result.ended_with == "timeout"
    assert elapsed < 8, f"the stream outlived its token by {elapsed - 2:.1f}s"


# -- CORS --------------------------------------------------------------------------------------


async def test_a_preflight_from_an_allowed_origin_is_answered(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/channels/rooms/a/events",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_a_preflight_from_another_origin_is_refused_as_json(
    http: httpx.AsyncClient,
) -> None:
    response = await http.options(
        "/channels/rooms/a/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "cors_refused"
    assert "access-control-allow-origin" not in response.headers


async def test_a_stream_names_its_allowed_origin_never_a_wildcard(
    http: httpx.AsyncClient,
) -> None:
    result = await read_stream(
        http, "/channels/public/x/stream?window=0.3", headers={"Origin": "https://app.example"}
    )
    assert result.headers["access-control-allow-origin"] == "https://app.example"
    other = await read_stream(
        http, "/channels/public/x/stream?window=0.3", headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


# -- limits on requests ----------------------------------------------------------------------


async def test_oversized_headers_get_431(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz", headers={"X-Padding": "x" * 20_000})
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"


async def test_an_oversized_url_gets_414(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz?pad=" + "x" * 9000)
    assert response.status_code == 414
    assert response.json()["error"] == "uri_too_long"


# -- observability ---------------------------------------------------------------------------


async def test_every_response_carries_a_request_id(http: httpx.AsyncClient) -> None:
    generated = await http.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await http.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    unsafe = await http.get("/healthz", headers={"X-Request-ID": "bad id\twith tab"})
    assert unsafe.headers["x-request-id"] != "bad id\twith tab"


async def test_logs_are_json_lines_with_the_request_id(
    http: httpx.AsyncClient, server: UvicornServer
) -> None:
    await http.get("/nowhere", headers={"X-Request-ID": "find-me-42"})
    await asyncio.sleep(0.3)
    lines = [json.loads(line) for line in server.log().splitlines() if "find-me-42" in line]
    assert lines, server.log()
    access = lines[-1]
    assert access["request_id"] == "find-me-42"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/nowhere", 404)
    assert access["logger"] == "serverless_sse.access" and "duration_ms" in access


def metric(text: str, name: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} not in /metrics"
    return total


async def test_metrics_count_publishing_streams_resets_and_rejections(
    http: httpx.AsyncClient,
) -> None:
    before = (await http.get("/metrics")).text
    channel = name("public")
    await http.post(
        f"/channels/{channel}/events", json=[{"data": 1}, {"data": 2}], headers=auth(KEY)
    )
    first = await read_stream(http, f"/channels/{channel}/stream?from=start&window=0.3")
    await read_stream(
        http, f"/channels/{channel}/stream?window=0.3", last_event_id=first.last_event_id
    )
    await http.get("/channels/rooms/x/stream")  # 401
    await asyncio.sleep(0.2)
    response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert (
        metric(after, "sse_events_published_total") - metric(before, "sse_events_published_total")
        == 2
    )
    assert (
        metric(after, "sse_events_delivered_total") - metric(before, "sse_events_delivered_total")
        >= 2
    )
    assert metric(after, "sse_reconnects_total") - metric(before, "sse_reconnects_total") >= 1
    assert 'sse_rejections_total{status="401"}' in after
    assert 'sse_streams_total{ended_by="timeout"}' in after
    assert 'sse_store_seconds_bucket{le="0.001",operation="append"}' in after
    assert metric(after, "sse_open_streams") >= 0
