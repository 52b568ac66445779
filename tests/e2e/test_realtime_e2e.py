"""Votes, chat and AI answers (SEEDS 003) end to end: a real uvicorn process, on every store.

Every event is read in the seeds' ``envelope`` format, as their clients read it: one
``data: {"type": ..., ...}`` per event, switched on ``type``.
"""

from __future__ import annotations

import asyncio
import itertools
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


@pytest.fixture(scope="module", params=store_params())
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    store = request.param
    if store == REDIS_STORE:
        flush(store)
    env = {
        "SSE_STORE": store,
        "SSE_QUEUE": "memory://",
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "SSE_RESPONDER_PIECE_SECONDS": "0.02",
        "SSE_MAX_TEXT_CHARS": "200",
        "SSE_MAX_POLL_OPTIONS": "3",
    }
    with UvicornServer(env) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def envelopes(result: StreamResult) -> list[dict[str, Any]]:
    """Every event's data, as the seeds' ``onmessage`` handlers parse it."""
    assert all(e.type == "message" for e in result.events), "envelope events have no event:"
    return [json.loads(e.data) for e in result.events]


def of_type(result: StreamResult, kind: str) -> list[dict[str, Any]]:
    return [d for d in envelopes(result) if d["type"] == kind]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def soon(task: asyncio.Task[StreamResult]) -> None:
    """Let a stream that was just started open before the test publishes."""
    await asyncio.sleep(0.4)
    assert not task.done(), task


async def test_a_stream_opens_with_connection_ack(http: httpx.AsyncClient) -> None:
    client = uid("c")
    result = await read_stream(http, f"/sse/events?client_id={client}&window=0.5")
    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    first = envelopes(result)[0]
    assert first["type"] == "connection_ack"
    assert first["client_id"] == client
    assert first["channels"] == ["votes", "chat", "ai"]
    assert envelopes(result)[-1]["type"] == "timeout"


async def test_every_single_channel_stream_opens_with_connection_ack(
    http: httpx.AsyncClient,
) -> None:
    for path, channels in [("votes", ["votes"]), ("chat", ["chat"]), ("ai", ["ai"])]:
        result = await read_stream(http, f"/sse/{path}?client_id=x1&window=0.3")
        assert envelopes(result)[0]["type"] == "connection_ack"
        assert envelopes(result)[0]["channels"] == channels


async def test_a_vote_reaches_every_stream_with_the_tallies(http: httpx.AsyncClient) -> None:
    poll = uid("poll")
    events = asyncio.create_task(read_stream(http, "/sse/events?client_id=a&window=2"))
    votes = asyncio.create_task(read_stream(http, "/sse/votes?client_id=b&window=2"))
    await soon(events)
    first = await http.post("/api/votes", json={"client_id": "a", "poll_id": poll, "option": "yes"})
    second = await http.post("/api/votes", json={"client_id": "b", "poll_id": poll, "option": "no"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["tallies"] == {"yes": 1, "no": 1}
    for result in await asyncio.gather(events, votes):
        updates = [u for u in of_type(result, "vote_update") if u["poll_id"] == poll]
        assert [u["tallies"] for u in updates] == [{"yes": 1}, {"yes": 1, "no": 1}]
        assert [u["total"] for u in updates] == [1, 2]
        assert [u["client_id"] for u in updates] == ["a", "b"]


async def test_one_vote_per_client_per_poll(http: httpx.AsyncClient) -> None:
    poll = uid("poll")
    body = {"client_id": "a", "poll_id": poll, "option": "yes"}
    assert (await http.post("/api/votes", json=body)).status_code == 201
    repeat = await http.post("/api/votes", json=body)
    assert repeat.status_code == 200
    assert repeat.json()["repeated"] is True and repeat.json()["tallies"] == {"yes": 1}
    change = await http.post("/api/votes", json={**body, "option": "no"})
    assert change.status_code == 409
    assert change.json()["error"] == "already_voted"
    tallies = (await http.get(f"/api/votes/{poll}?client_id=a")).json()
    assert tallies == {"poll_id": poll, "tallies": {"yes": 1}, "total": 1, "your_vote": "yes"}


async def test_concurrent_votes_are_all_counted(http: httpx.AsyncClient) -> None:
    poll = uid("poll")
    answers = await asyncio.gather(
        *(
            http.post(
                "/api/votes", json={"client_id": f"c{n}", "poll_id": poll, "option": f"o{n % 3}"}
            )
            for n in range(24)
        )
    )
    assert {a.status_code for a in answers} == {201}
    assert (await http.get(f"/api/votes/{poll}")).json()["tallies"] == {
        "o0": 8,
        "o1": 8,
        "o2": 8,
    }


async def test_a_chat_message_reaches_the_chat_stream(http: httpx.AsyncClient) -> None:
    chat = asyncio.create_task(read_stream(http, "/sse/chat?client_id=b&window=1.5"))
    await soon(chat)
    text = uid("hello")
    posted = await http.post("/api/chat/messages", json={"client_id": "a", "text": text})
    assert posted.status_code == 201
    [message] = [m for m in of_type(await chat, "chat_message") if m["text"] == text]
    assert message["client_id"] == "a"
    assert message["id"] == posted.json()["message"]["id"]


async def test_an_ai_answer_streams_in_pieces_to_the_asking_client_only(
    http: httpx.AsyncClient,
) -> None:
    asker, other = uid("asker"), uid("other")
    mine = asyncio.create_task(
        read_stream(
            http,
            f"/sse/ai?client_id={asker}&window=4",
            stop_when=lambda e: json.loads(e.data)["type"] == "ai_complete",
        )
    )
    theirs = asyncio.create_task(read_stream(http, f"/sse/events?client_id={other}&window=1.5"))
    await soon(mine)
    answer = await http.post("/api/ai/chat", json={"client_id": asker, "question": "What is SSE?"})
    assert answer.status_code == 202
    assert answer.json()["channel"] == f"ai/{asker}"
    result = await mine
    pieces = of_type(result, "ai_response")
    [complete] = of_type(result, "ai_complete")
    assert len(pieces) > 5
    assert complete["content"] == "".join(p["content"] for p in pieces)
    assert complete["request_id"] == answer.json()["request_id"]
    assert of_type(await theirs, "ai_response") == []


async def test_the_first_piece_of_an_answer_is_sent_alone_before_the_rest_is_written(
    http: httpx.AsyncClient,
) -> None:
    client = uid("c")
    stream = asyncio.create_task(
        read_stream(http, f"/sse/ai?client_id={client}&window=30", stop_after_events=2)
    )
    await soon(stream)
    asked = await http.post("/api/ai/chat", json={"client_id": client, "question": "quick?"})
    result = await stream
    assert [e["type"] for e in envelopes(result)] == ["connection_ack", "ai_response"]
    assert of_type(result, "ai_response")[0]["index"] == 0
    # Once the answer is complete, the channel's log shows how it was written: each store
    # write gives its events one created_at. The first piece was written on its own, at once
    # (not held back for the pieces after it), and the rest came in later writes.
    await read_stream(
        http,
        f"/channels/ai/{client}/stream?from=start&window=30",
        stop_when=lambda e: e.type == "ai_complete",
    )
    logged = (await http.get(f"/channels/ai/{client}/events")).json()["events"]
    writes = [
        [(e["type"], e["data"].get("index")) for e in write]
        for _, write in itertools.groupby(logged, key=lambda e: e["created_at"])
    ]
    assert writes[0] == [("ai_response", 0)], writes
    assert len(writes) >= 2 and writes[-1][-1] == ("ai_complete", None)
    assert [index for write in writes for _, index in write][:-1] == list(range(len(logged) - 1))
    assert {e["data"]["request_id"] for e in logged} == {asked.json()["request_id"]}


async def test_one_cursor_resumes_all_three_channels(http: httpx.AsyncClient) -> None:
    client = uid("c")
    poll = uid("poll")
    url = f"/sse/events?client_id={client}&window=1"
    first = await read_stream(http, url)
    cursor = first.last_event_id
    # While nobody listens: one event on each channel.
    await http.post("/api/votes", json={"client_id": client, "poll_id": poll, "option": "x"})
    await http.post("/api/chat/messages", json={"client_id": client, "text": f"{poll} msg"})
    await http.post("/api/ai/chat", json={"client_id": client, "question": f"{poll}?"})
    await asyncio.sleep(1.5)  # the answer is written meanwhile
    resumed = await read_stream(http, url, last_event_id=cursor)
    kinds = [e["type"] for e in envelopes(resumed) if poll in json.dumps(e)]
    assert sorted(kinds[:2]) == ["chat_message", "vote_update"]
    assert kinds.count("ai_complete") == 1
    again = await read_stream(http, url, last_event_id=resumed.last_event_id)
    assert [e for e in envelopes(again) if poll in json.dumps(e)] == []


async def test_bad_input_is_refused_and_stores_nothing(http: httpx.AsyncClient) -> None:
    before = (await http.get("/channels/chat/events?limit=1000")).json()["cursor"]
    cases: list[tuple[str, Any, int]] = [
        ("/api/chat/messages", {"client_id": "a"}, 422),
        ("/api/chat/messages", {"client_id": "a b", "text": "hi"}, 422),
        ("/api/chat/messages", {"client_id": "a", "text": "   "}, 422),
        ("/api/chat/messages", {"client_id": "a", "text": "x" * 201}, 422),
        ("/api/chat/messages", {"client_id": "a", "text": "hi", "extra": 1}, 422),
        ("/api/votes", {"client_id": "a", "poll_id": "../p", "option": "x"}, 422),
        ("/api/votes", {"client_id": "a", "poll_id": "p", "option": ""}, 422),
        ("/api/ai/chat", {"question": "no client"}, 422),
    ]
    for path, body, status in cases:
        answer = await http.post(path, json=body)
        assert answer.status_code == status, (path, body, answer.text)
        assert set(answer.json()) == {"error", "detail"}
    broken = await http.post("/api/chat/messages", content=b"{not json")
    assert broken.status_code == 400
    after = (await http.get(f"/channels/chat/events?after={before}")).json()
    assert after["events"] == []


async def test_an_option_beyond_the_poll_limit_is_refused(http: httpx.AsyncClient) -> None:
    poll = uid("poll")
    for n in range(3):
        body = {"client_id": f"c{n}", "poll_id": poll, "option": f"o{n}"}
        assert (await http.post("/api/votes", json=body)).status_code == 201
    body = {"client_id": "c9", "poll_id": poll, "option": "o9"}
    assert (await http.post("/api/votes", json=body)).status_code == 422
    assert (await http.get(f"/api/votes/{poll}?client_id=c9")).json()["your_vote"] is None


async def test_streams_refuse_bad_parameters(http: httpx.AsyncClient) -> None:
    for path in [
        "/sse/events",
        "/sse/ai",
        "/sse/events?client_id=a&channels=votes,news",
        "/sse/events?client_id=a%20b",
        "/sse/events?client_id=a&channels=",
    ]:
        answer = await http.get(path)
        assert answer.status_code == 422, path
        assert answer.json()["error"] == "validation_failed"
    assert (await http.get("/sse/votes?last_event_id=garbage")).status_code == 400
