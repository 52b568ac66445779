"""Security, limits and observability through real servers, on every store at hand."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.routing import Route

from functions.app import routes
from serverless_sse.auth import hash_key, mint_token
from serverless_sse.cursor import Cursor, Position
from tests.hostile import HOSTILE_CHANNEL_PATHS, REFUSED_BODIES
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


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def no_query_tokens(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """The same service with ``SSE_QUERY_TOKENS=false``."""
    store = STORE_URLS[request.param](REDIS_DB)
    with UvicornServer(secured_env(store, SSE_QUERY_TOKENS="false")) as running:
        yield running


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


# Where a credential may come from: a header always; the cookie and the query on reads.
@dataclass(frozen=True)
class Place:
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    query: str = ""  # appended to the URL

    def client(self, http: httpx.AsyncClient) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=str(http.base_url), headers=self.headers, cookies=self.cookies, timeout=30
        )


PLACES: dict[str, Callable[[str], Place]] = {
    "bearer": lambda c: Place(headers=auth(c)),
    "x-api-key": lambda c: Place(headers={"X-API-Key": c}),
    "cookie": lambda c: Place(cookies={"sse_token": c}),
    "query": lambda c: Place(query=f"&access_token={c}"),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("kind", ["key", "token"])
async def test_a_credential_is_read_from_every_place_a_reader_may_put_it(
    http: httpx.AsyncClient, place: str, kind: str
) -> None:
    channel = name("rooms")
    credential = KEY if kind == "key" else token(subscribe=["rooms/*"])
    where = PLACES[place](credential)
    async with where.client(http) as client:
        history = await client.get(f"/channels/{channel}/events?limit=5{where.query}")
        assert history.status_code == 200, history.text
        stream = await read_stream(client, f"/channels/{channel}/stream?window=0.2{where.query}")
        assert stream.status == 200 and stream.ended_with == "timeout"


@pytest.mark.parametrize("place", ["cookie", "query"])
async def test_a_write_never_takes_its_credential_from_a_cookie_or_the_query(
    http: httpx.AsyncClient, place: str
) -> None:
    """A cross-site form post carries the site's cookie but can set no header: a publish that
    only has the cookie (or the query token) is refused, and nothing is stored."""
    channel = name("rooms")
    where = PLACES[place](KEY)
    async with where.client(http) as client:
        refused = await client.post(
            f"/channels/{channel}/events?x=1{where.query}",
            content=b'{"data": "forged", "x": "="}',
            headers={"Content-Type": "text/plain"},
        )
    assert refused.status_code == 401
    assert "reads only" in refused.json()["detail"]
    history = await http.get(f"/channels/{channel}/events", headers=auth(KEY))
    assert history.json()["events"] == []


async def test_query_tokens_can_be_switched_off(no_query_tokens: UvicornServer) -> None:
    channel = name("rooms")
    granted = token(subscribe=["rooms/*"])
    url = f"/channels/{channel}/stream?window=0.2"
    async with httpx.AsyncClient(base_url=no_query_tokens.url, timeout=30) as http:
        by_query = await http.get(f"{url}&access_token={granted}")
        assert by_query.status_code == 401
        assert by_query.json()["error"] == "unauthorized"
        assert (await read_stream(http, url, headers=auth(granted))).status == 200
    async with httpx.AsyncClient(
        base_url=no_query_tokens.url, timeout=30, cookies={"sse_token": granted}
    ) as by_cookie:
        assert (await read_stream(by_cookie, url)).status == 200


async def test_every_channel_of_a_multiplexed_stream_is_checked(http: httpx.AsyncClient) -> None:
    headers = auth(token(subscribe=["rooms/*"]))
    ok = await read_stream(http, "/stream?channels=rooms/a,public/b&window=0.3", headers=headers)
    assert ok.status == 200
    refused = await http.get("/stream?channels=rooms/a,tasks/b&window=0.3", headers=headers)
    assert refused.status_code == 403
    assert "tasks/b" in refused.json()["detail"]
    public = await read_stream(http, "/stream?channels=public/a,public/b&window=0.3")
    assert public.status == 200
    anonymous = await http.get("/stream?channels=public/a,rooms/b&window=0.3")
    assert anonymous.status_code == 401
    assert "rooms/b" in anonymous.json()["detail"]


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
    url = "/channels/rooms/a/stream?window=30"
    result = await read_stream(http, url, headers=auth(soon), max_seconds=40)
    elapsed = time.monotonic() - started
    assert result.ended_with == "timeout"
    # The window (30 s, jittered to no less than 27) would have ended it much later.
    assert elapsed < 20, f"the stream outlived its token by {elapsed - 2:.1f}s"
    again = await http.get(url, headers={**auth(soon), "Last-Event-ID": result.last_event_id})
    assert again.status_code == 401 and "expired" in again.json()["detail"]


# -- the seed endpoints: each checks the channel behind it -------------------------------------


async def test_a_task_stream_needs_the_grant_of_its_channel(http: httpx.AsyncClient) -> None:
    task_id = uuid.uuid4().hex[:12]
    runner = auth(token(publish=[f"tasks/{task_id}"]))
    assert (await http.post("/api/tasks", json={"id": task_id})).status_code == 401
    assert (await http.post("/api/tasks", json={"id": task_id}, headers=runner)).status_code == 201
    await http.post(f"/api/tasks/{task_id}/complete", headers=runner)
    url = f"/api/tasks/{task_id}/stream"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers=auth(token(subscribe=["tasks/other"])))).status_code == 403
    viewer = auth(token(subscribe=["tasks/*"]))
    granted = await read_stream(http, url, headers=viewer)
    assert granted.status == 200
    assert json.loads(granted.events[-1].data)["type"] == "complete"
    # Whether a task exists is told only to those who may read it.
    unknown = "/api/tasks/nosuchtask/stream"
    assert (await http.get(unknown, headers=auth(token(subscribe=["tasks/x"])))).status_code == 403
    assert (await http.get(unknown, headers=viewer)).status_code == 404


async def test_a_room_needs_grants_to_create_follow_and_talk_in(
    http: httpx.AsyncClient,
) -> None:
    room_id = f"r-{uuid.uuid4().hex[:8]}"
    body = {"name": "Lobby", "personas": ["Ada"]}
    assert (await http.post("/api/chat/rooms", json=body)).status_code == 401
    anonymous_id = await http.post("/api/chat/rooms", json={**body, "id": room_id})
    assert anonymous_id.status_code == 401
    elsewhere = auth(token(publish=["rooms/other"]))
    assert (await http.post("/api/chat/rooms", json=body, headers=elsewhere)).status_code == 403
    owner = auth(token(publish=[f"rooms/{room_id}"], subscribe=[f"rooms/{room_id}"]))
    created = await http.post("/api/chat/rooms", json={**body, "id": room_id}, headers=owner)
    assert created.status_code == 201
    url = f"/api/chat/rooms/{room_id}/stream?window=0.2"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers=auth(token(subscribe=["rooms/x"])))).status_code == 403
    assert (await read_stream(http, url, headers=owner)).status == 200
    reader = auth(token(subscribe=[f"rooms/{room_id}"]))
    talk = await http.post(
        f"/api/chat/rooms/{room_id}/group-sse",
        json={"message": "hi", "sender": "u1"},
        headers=reader,
    )
    assert talk.status_code == 403
    history = await http.get(f"/channels/rooms/{room_id}/events", headers=auth(KEY))
    assert history.json()["events"] == [], "a refused message stores nothing"


async def test_each_channel_of_an_sse_events_stream_is_checked(http: httpx.AsyncClient) -> None:
    client_id = f"c{uuid.uuid4().hex[:8]}"
    url = f"/sse/events?client_id={client_id}&channels=votes,chat,ai&window=0.2"
    assert (await http.get(url)).status_code == 401
    votes_and_chat = auth(token(subscribe=["votes", "chat"]))
    refused = await http.get(url, headers=votes_and_chat)
    assert refused.status_code == 403
    assert f"ai/{client_id}" in refused.json()["detail"]
    votes_and_own_ai = auth(token(subscribe=["votes", f"ai/{client_id}"]))
    refused = await http.get(url, headers=votes_and_own_ai)
    assert refused.status_code == 403
    assert "'chat'" in refused.json()["detail"]
    everything = auth(token(subscribe=["votes", "chat", f"ai/{client_id}"]))
    opened = await read_stream(http, url, headers=everything)
    assert opened.status == 200
    assert json.loads(opened.events[0].data)["type"] == "connection_ack"
    narrower = f"/sse/events?client_id={client_id}&channels=votes,chat&window=0.2"
    assert (await read_stream(http, narrower, headers=votes_and_chat)).status == 200


async def test_the_fleet_shows_each_token_only_the_servers_it_may_see(
    http: httpx.AsyncClient,
) -> None:
    every = [s["id"] for s in (await http.get("/api/servers", headers=auth(KEY))).json()["servers"]]
    shown, hidden = every[:2], every[2]
    grant = auth(token(subscribe=[f"fleet/servers/{i}" for i in shown]))
    listed = (await http.get("/api/servers", headers=grant)).json()["servers"]
    assert [s["id"] for s in listed] == shown
    stream = await read_stream(http, "/api/stream?window=0.3", headers=grant)
    first = json.loads(stream.events[0].data)
    assert first["type"] == "server_update"
    assert sorted(s["id"] for s in first["data"]) == sorted(shown)
    assert (await http.get(f"/api/servers/{hidden}", headers=grant)).status_code == 403
    assert (await http.get(f"/api/servers/{hidden}/stream", headers=grant)).status_code == 403
    assert (await http.get("/api/servers", headers=auth(token(subscribe=["x"])))).status_code == 403
    assert (await http.get("/api/servers")).status_code == 401
    # An unknown server is 401/403 to whoever may not see it: ids are not probed from outside.
    assert (await http.get("/api/servers/no-such-server")).status_code == 401
    assert (await http.get("/api/servers/no-such-server", headers=grant)).status_code == 403
    assert (await http.get("/api/servers/no-such-server", headers=auth(KEY))).status_code == 404
    control = {"server_id": "no-such-server", "action": "restart"}
    assert (await http.post("/api/servers/control", json=control)).status_code == 401


# -- CORS --------------------------------------------------------------------------------------


def post_paths() -> list[str]:
    """Every POST endpoint of the whole app, its path parameters filled in."""
    return [
        re.sub(r"\{[^}]+\}", "x1", route.path_format)
        for route in routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    ]


@pytest.mark.parametrize("path", post_paths())
async def test_a_preflight_from_an_allowed_origin_is_answered(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": (
                "authorization, content-type, idempotency-key, x-api-key, x-request-id"
            ),
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "idempotency-key", "x-api-key"} <= set(allowed.split(", "))


async def test_a_page_may_read_retry_after_and_the_request_id(http: httpx.AsyncClient) -> None:
    response = await http.get("/channels/rooms/a/events", headers={"Origin": "https://app.example"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    exposed = response.headers["access-control-expose-headers"].lower().split(", ")
    assert {"retry-after", "x-request-id"} <= set(exposed)


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


async def test_an_oversized_body_gets_413_and_stores_nothing(http: httpx.AsyncClient) -> None:
    channel = name("rooms")
    body = [{"data": "x" * 60_000}] * 20  # over SSE_MAX_BODY_BYTES (1 MiB)
    response = await http.post(f"/channels/{channel}/events", json=body, headers=auth(KEY))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert (await http.get(f"/channels/{channel}/events", headers=auth(KEY))).json()["events"] == []


async def test_too_many_channels_on_one_stream_get_422(http: httpx.AsyncClient) -> None:
    channels = ",".join(f"public/c{n}" for n in range(17))  # SSE_MAX_CHANNELS_PER_STREAM: 16
    response = await http.get(f"/stream?channels={channels}")
    assert response.status_code == 422
    assert "at most 16" in response.json()["detail"]


# -- hostile input, through the real server ------------------------------------------------


async def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send exactly these bytes (no client normalises the target or the headers) and read the
    answer: status, head, body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        length = f"Content-Length: {len(body)}\r\n".encode() if body else b""
        writer.write(head + b"\r\nHost: x\r\nConnection: close\r\n" + length + b"\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
    return int(answer_head.split(b" ", 2)[1]), answer_head, answer_body


def assert_json_4xx(status: int, head: bytes, body: bytes) -> None:
    assert 400 <= status < 500, (status, body)
    assert b"content-type: application/json" in head.lower(), head
    assert set(json.loads(body)) == {"error", "detail"}


@pytest.mark.parametrize("channel_path", HOSTILE_CHANNEL_PATHS)
@pytest.mark.parametrize(
    "endpoint", ["POST /channels/{}/events", "GET /channels/{}/events", "GET /channels/{}/stream"]
)
async def test_a_hostile_channel_name_gets_a_json_4xx(
    server: UvicornServer, channel_path: str, endpoint: str
) -> None:
    method, target = endpoint.split(" ")
    head = f"{method} {target.format(channel_path)} HTTP/1.1\r\nX-API-Key: {KEY}".encode()
    assert_json_4xx(*await raw_request(server.url, head, b'{"data": 1}'))


HOSTILE_REQUESTS = {
    "invalid UTF-8 in Last-Event-ID": b"GET /channels/public/a/stream HTTP/1.1\r\n"
    b"Last-Event-ID: \xff\xfe\xc0\xaf",
    "NUL in a multiplexed channel": b"GET /stream?channels=public/a,public/a%00b HTTP/1.1",
    "CRLF in a multiplexed channel": b"GET /stream?channels=public/a%0d%0aX-Evil:%201 HTTP/1.1",
    "invalid UTF-8 in ?channels=": b"GET /stream?channels=public/%ff%fe HTTP/1.1",
    "traversal in ?channels=": b"GET /stream?channels=public/../internal/x HTTP/1.1",
    "a huge ?window=": b"GET /channels/public/a/stream?window=1e999 HTTP/1.1",
    "a negative ?limit=": b"GET /channels/public/a/events?limit=-1 HTTP/1.1",
    "a cursor over 1 KiB": b"GET /channels/public/a/events?after=" + b"A" * 2000 + b" HTTP/1.1",
    "a token of invalid UTF-8": b"GET /channels/rooms/a/stream HTTP/1.1\r\n"
    b"Authorization: Bearer \xff\xfe.\x80.\x81",
}


@pytest.mark.parametrize("request_head", HOSTILE_REQUESTS.values(), ids=list(HOSTILE_REQUESTS))
async def test_a_hostile_request_gets_a_json_4xx(
    server: UvicornServer, request_head: bytes
) -> None:
    assert_json_4xx(*await raw_request(server.url, request_head))


# These never reach the app: uvicorn's HTTP parser refuses them with its own plain 400 (the app,
# sent the same bytes directly, answers JSON: tests/fuzz/test_http_fuzz.py).
MALFORMED_HTTP = {
    "a control character in a header": b"GET /channels/public/a/stream HTTP/1.1\r\n"
    b"Last-Event-ID: AQ\x01\x7f",
    "a cookie of control characters": b"GET /channels/rooms/a/stream HTTP/1.1\r\n"
    b"Cookie: sse_token=\x01\x02\x03",
    "a Content-Length that is not a number": b"POST /channels/rooms/a/events HTTP/1.1\r\n"
    b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: +12",
    "a bare CR in a header": b"GET /healthz HTTP/1.1\r\nX-Request-ID: a\rX-Injected: 1",
}


@pytest.mark.parametrize("request_head", MALFORMED_HTTP.values(), ids=list(MALFORMED_HTTP))
async def test_malformed_http_is_refused_before_the_app(
    server: UvicornServer, request_head: bytes
) -> None:
    status, _, body = await raw_request(server.url, request_head)
    assert status == 400, body


@pytest.mark.parametrize("body", REFUSED_BODIES, ids=range(len(REFUSED_BODIES)))
async def test_a_hostile_body_gets_a_json_4xx_and_stores_nothing(
    server: UvicornServer, http: httpx.AsyncClient, body: bytes
) -> None:
    channel = name("rooms")
    head = f"POST /channels/{channel}/events HTTP/1.1\r\nX-API-Key: {KEY}".encode()
    assert_json_4xx(*await raw_request(server.url, head, body))
    history = await http.get(f"/channels/{channel}/events", headers=auth(KEY))
    assert history.json()["events"] == []


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "bad\ntype", "data": 2},
        {"data": "x" * 70_000},
        {"data": 2, "unknown": True},
        {"type": "message", "data": 2, "idempotency_key": "a" * 201},
        "not an object",
    ],
    ids=["type-with-newline", "event-too-large", "unknown-field", "key-too-long", "not-object"],
)
async def test_a_batch_with_one_bad_event_stores_none_of_it(
    http: httpx.AsyncClient, bad: object
) -> None:
    channel = name("rooms")
    body = [{"data": 1}, bad, {"data": 3}]
    response = await http.post(f"/channels/{channel}/events", json=body, headers=auth(KEY))
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "detail"}
    history = await http.get(f"/channels/{channel}/events", headers=auth(KEY))
    assert history.json()["events"] == []


async def test_an_injected_request_id_is_never_echoed(server: UvicornServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nX-Request-ID: \xff\xfe<script>a;b"
    status, answer_head, _ = await raw_request(server.url, head)
    assert status == 200
    echoed = [
        line for line in answer_head.split(b"\r\n") if line.lower().startswith(b"x-request-id")
    ]
    assert len(echoed) == 1 and re.fullmatch(rb"x-request-id: [0-9a-f]{32}", echoed[0].lower())


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
    """The sum of a metric's samples (of one labelled sample, when ``name`` has its labels)."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name + " ") or (not name.endswith("}") and line.startswith(name + "{")):
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


async def test_open_streams_are_counted_while_they_run(http: httpx.AsyncClient) -> None:
    before = metric((await http.get("/metrics")).text, "sse_open_streams")
    async with http.stream("GET", f"/channels/{name('public')}/stream?window=30") as held:
        assert held.status_code == 200
        # Kept until the stream is done with: an iterator dropped is closed, and closing it
        # hangs up the stream's connection.
        chunks = held.aiter_raw()
        await anext(chunks)  # the stream's first bytes: it was admitted
        during = metric((await http.get("/metrics")).text, "sse_open_streams")
    assert during == before + 1
    for _ in range(100):  # the server sees the hang-up when it next writes or is told
        after = metric((await http.get("/metrics")).text, "sse_open_streams")
        if after == before:
            break
        await asyncio.sleep(0.1)
    assert after == before


async def test_resets_are_counted_by_reason(http: httpx.AsyncClient) -> None:
    channel = name("public")
    await http.post(f"/channels/{channel}/events", json={"data": 1}, headers=auth(KEY))
    before = (await http.get("/metrics")).text
    stale = Cursor.encode_positions({channel: Position("gone1234", 1)})  # another epoch
    result = await read_stream(http, f"/channels/{channel}/stream?window=0.3", last_event_id=stale)
    assert result.events[0].type == "reset"
    after = (await http.get("/metrics")).text
    counted = 'sse_resets_total{reason="epoch_changed"}'
    assert metric(after, counted) - (metric(before, counted) if counted in before else 0) == 1
