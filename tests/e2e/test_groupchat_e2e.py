"""Group chat with AI personas (SEEDS 004) end to end: a real uvicorn process, on every store.

The POST response is read the way the seeds' client reads it: every ``data: `` line is one
JSON object, and ``data: [DONE]`` ends the exchange.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.servers import UvicornServer
from tests.sse import StreamResult, read_stream
from tests.store_urls import REDIS_STORE, flush, store_params

pytestmark = pytest.mark.e2e

SEED_ORDER = ["user_message", "ai_response", "exp_updated", "complete"]


@pytest.fixture(scope="module", params=store_params())
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    store = request.param
    if store == REDIS_STORE:
        flush(store)
    env = {
        "SSE_STORE": store,
        "SSE_QUEUE": "memory://",
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "SSE_RESPONDER_PIECE_SECONDS": "0.005",
        "SSE_AI_WORKER_CONCURRENCY": "3",
    }
    with UvicornServer(env) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


def seed_messages(result: StreamResult) -> list[Any]:
    """What the seeds' client gets from the body: the JSON of every ``data: `` line, and the
    ``[DONE]`` that ends it (their reader splits on newlines and looks for ``data: ``)."""
    out: list[Any] = []
    text = result.body.decode() if result.body else ""
    for line in text.split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def exchange(
    http: httpx.AsyncClient,
    room_id: str,
    message: str = "hello!",
    *,
    sender: str = "user_123",
    headers: dict[str, str] | None = None,
) -> StreamResult:
    body = {"message": message, "sender": sender, "userName": "Kim"}
    result = await read_stream(
        http,
        f"/api/chat/rooms/{room_id}/group-sse",
        method="POST",
        json_body=body,
        headers={"Authorization": "Bearer any-token", **(headers or {})},
        max_seconds=20,
    )
    assert result.status == 200, result.body
    return result


async def raw_exchange(http: httpx.AsyncClient, room_id: str, message: str) -> StreamResult:
    """The POST with its body kept as bytes, for the seeds' own line-splitting reader."""
    async with http.stream(
        "POST",
        f"/api/chat/rooms/{room_id}/group-sse",
        json={"message": message, "sender": "user_123", "userName": "Kim"},
        headers={"Authorization": "Bearer x"},
    ) as response:
        result = StreamResult(response.status_code, response.headers)
        result.body = await response.aread()
    return result


def kinds(result: StreamResult) -> list[str]:
    return [json.loads(e.data)["type"] if e.data != "[DONE]" else "[DONE]" for e in result.events]


def payloads(result: StreamResult, kind: str) -> list[dict[str, Any]]:
    return [
        d
        for e in result.events
        if e.data != "[DONE]"
        for d in [json.loads(e.data)]
        if d["type"] == kind
    ]


async def test_an_exchange_answers_in_the_seeds_format_and_ends_with_done(
    http: httpx.AsyncClient,
) -> None:
    result = await raw_exchange(http, room(), "안녕하세요!")
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    messages = seed_messages(result)
    assert messages[-1] == "[DONE]"
    types = [m["type"] for m in messages[:-1]]
    assert types[0] == "user_message" and types[-1] == "complete"
    assert types.count("ai_response") == types.count("exp_updated") == 3
    said = messages[0]
    assert (said["content"], said["sender"], said["senderId"]) == ("안녕하세요!", "Kim", "user_123")
    for answer in [m for m in messages[:-1] if m["type"] == "ai_response"]:
        assert set(answer) >= {"content", "aiName", "aiId", "personaId", "timestamp"}
        assert answer["aiName"] in {"Haru", "Mina", "Juno"}
    for exp in [m for m in messages[:-1] if m["type"] == "exp_updated"]:
        assert set(exp) >= {"personaId", "personaName", "newExp", "newLevel", "expIncrease"}
        assert exp["userId"] == "user_123"
    assert "message" in messages[-2] and "timestamp" in messages[-2]


async def test_every_exchange_raises_the_friendship(http: httpx.AsyncClient) -> None:
    room_id = room()
    first = await exchange(http, room_id, "one")
    second = await exchange(http, room_id, "two")
    assert {e["newExp"] for e in payloads(first, "exp_updated")} == {5}
    assert {e["newExp"] for e in payloads(second, "exp_updated")} == {10}
    info = (await http.get(f"/api/chat/rooms/{room_id}?userId=user_123")).json()
    assert [(f["personaName"], f["exp"], f["level"]) for f in info["friendships"]] == [
        ("Haru", 10, 1),
        ("Mina", 10, 1),
        ("Juno", 10, 1),
    ]


async def test_a_second_member_sees_the_exchange_live(http: httpx.AsyncClient) -> None:
    room_id = room()
    watcher = asyncio.create_task(
        read_stream(http, f"/api/chat/rooms/{room_id}/stream?window=20", stop_after_events=8)
    )
    await asyncio.sleep(0.4)
    posted = await exchange(http, room_id, "hi everyone")
    watched = await watcher
    assert [e.data for e in watched.events] == [e.data for e in posted.events[:-1]]
    assert sorted(set(kinds(watched)), key=SEED_ORDER.index) == SEED_ORDER


async def test_the_room_stream_resumes_after_the_last_event_seen(http: httpx.AsyncClient) -> None:
    room_id = room()
    posted = await exchange(http, room_id)
    url = f"/api/chat/rooms/{room_id}/stream?from=start"
    part = await read_stream(http, f"{url}&window=5", stop_after_events=3)
    seen = part.events[:3]  # a reader that stopped after three events
    rest = await read_stream(http, f"{url}&window=0.5", last_event_id=seen[-1].last_event_id)
    assert rest.status == 200
    resumed = [e.data for e in seen] + [e.data for e in rest.events[:-1]]
    assert len(posted.events) == 9  # 8 events and [DONE]
    assert resumed == [e.data for e in posted.events[:-1]]
    assert kinds(rest)[-1] == "timeout"


async def test_the_response_carries_room_cursors_a_reader_can_resume_from(
    http: httpx.AsyncClient,
) -> None:
    room_id = room()
    first = await exchange(http, room_id, "first")
    second = await exchange(http, room_id, "second")
    cursor = first.events[-2].last_event_id  # the complete of the first exchange
    after = await read_stream(
        http, f"/api/chat/rooms/{room_id}/stream?window=0.5", last_event_id=cursor
    )
    assert [e.data for e in after.events[:-1]] == [e.data for e in second.events[:-1]]


async def test_a_room_made_with_its_own_personas_is_answered_by_them(
    http: httpx.AsyncClient,
) -> None:
    made = await http.post(
        "/api/chat/rooms",
        json={"name": "Garden", "personas": ["Ari", {"name": "Bo", "style": "witty"}]},
    )
    assert made.status_code == 201
    body = made.json()
    assert [(p["personaId"], p["name"]) for p in body["personas"]] == [(1, "Ari"), (2, "Bo")]
    result = await exchange(http, body["id"], "hello garden")
    assert sorted(a["aiName"] for a in payloads(result, "ai_response")) == ["Ari", "Bo"]
    again = await http.post(
        "/api/chat/rooms", json={"name": "Again", "personas": ["X"], "id": body["id"]}
    )
    assert again.status_code == 409


async def test_a_room_used_for_the_first_time_has_the_default_personas(
    http: httpx.AsyncClient,
) -> None:
    info = (await http.get(f"/api/chat/rooms/{room()}")).json()
    assert [p["name"] for p in info["personas"]] == ["Haru", "Mina", "Juno"]


async def test_a_repeated_request_replays_its_exchange_without_repeating_it(
    http: httpx.AsyncClient,
) -> None:
    room_id = room()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await exchange(http, room_id, "once", headers=key)
    again = await exchange(http, room_id, "once", headers=key)
    assert [e.data for e in again.events] == [e.data for e in first.events]
    history = (await http.get(f"/channels/rooms/{room_id}/events?limit=100")).json()["events"]
    assert len(history) == len(first.events) - 1  # [DONE] is the response's, not the room's


async def test_two_exchanges_at_once_in_one_room_keep_their_own_events(
    http: httpx.AsyncClient,
) -> None:
    room_id = room()
    one, two = await asyncio.gather(
        exchange(http, room_id, "from ann", sender="ann"),
        exchange(http, room_id, "from bob", sender="bob"),
    )
    for result, sender in [(one, "ann"), (two, "bob")]:
        assert kinds(result)[-1] == "[DONE]"
        ids = {json.loads(e.data)["exchangeId"] for e in result.events[:-1]}
        assert len(ids) == 1
        assert payloads(result, "user_message")[0]["senderId"] == sender
        assert len(payloads(result, "ai_response")) == 3


async def test_bad_input_is_refused_and_stores_nothing(http: httpx.AsyncClient) -> None:
    room_id = room()
    url = f"/api/chat/rooms/{room_id}/group-sse"
    for body in [
        {"sender": "u"},
        {"message": "hi"},
        {"message": " ", "sender": "u"},
        {"message": "hi", "sender": "u", "extra": True},
    ]:
        answer = await http.post(url, json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"] == "validation_failed"
    assert (await http.post(url, content=b"nope")).status_code == 400
    bad_room = await http.post(
        "/api/chat/rooms/a%20b/group-sse", json={"message": "x", "sender": "u"}
    )
    assert bad_room.status_code == 422
    assert (
        await http.post("/api/chat/rooms", json={"name": "x", "personas": []})
    ).status_code == 422
    history = (await http.get(f"/channels/rooms/{room_id}/events")).json()
    assert history["events"] == []


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[UvicornServer]:
    """Credentials configured: from now on a Bearer token is required."""
    with UvicornServer({"SSE_API_KEYS": "room-key"}) as running:
        yield running


async def test_once_credentials_are_configured_the_bearer_token_is_required(
    keyed_server: UvicornServer,
) -> None:
    room_id = room()
    body = {"message": "hi", "sender": "u1", "userName": "U"}
    url = f"/api/chat/rooms/{room_id}/group-sse"
    async with httpx.AsyncClient(base_url=keyed_server.url, timeout=30) as http:
        anonymous = await http.post(url, json=body)
        wrong = await http.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert (anonymous.status_code, wrong.status_code) == (401, 401)
        assert anonymous.json()["error"] == "unauthorized"
        result = await read_stream(
            http,
            url,
            method="POST",
            json_body=body,
            headers={"Authorization": "Bearer room-key"},
        )
        assert result.status == 200
        assert kinds(result)[-2:] == ["complete", "[DONE]"]
        history = await http.get(
            f"/channels/rooms/{room_id}/events", headers={"X-API-Key": "room-key"}
        )
        assert len(history.json()["events"]) == len(result.events) - 1
