"""The core, end to end: a real uvicorn process, real HTTP, the bytes a client really gets."""

from __future__ import annotations

import asyncio
import http.client as http_client
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from serverless_sse.cursor import Cursor, Position
from tests.servers import UvicornServer
from tests.sse import read_stream

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    env = {
        "SSE_STORE": "memory://",
        "SSE_HEARTBEAT_SECONDS": "0.5",
        "SSE_WINDOW_SECONDS": "60",
        "SSE_MAX_EVENT_BYTES": "1024",
        "SSE_MAX_BODY_BYTES": "20000",
        "SSE_MAX_BATCH_EVENTS": "10",
    }
    with UvicornServer(env) as running:
        yield running


@pytest.fixture(scope="module")
def short_server() -> Iterator[UvicornServer]:
    """Short windows and a retention of 100 events."""
    env = {"SSE_WINDOW_SECONDS": "1.5", "SSE_RETENTION_EVENTS": "100"}
    with UvicornServer(env) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def channel() -> str:
    return f"e2e/{uuid.uuid4().hex[:12]}"


def raw_get(port: int, path: str) -> tuple[int, dict[str, str]]:
    connection = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def publish(http: httpx.AsyncClient, channel: str, body: object) -> httpx.Response:
    return await http.post(f"/channels/{channel}/events", json=body)


async def history(http: httpx.AsyncClient, channel: str, **params: str) -> dict[str, object]:
    response = await http.get(f"/channels/{channel}/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


# -- the promise: nothing lost, nothing repeated, across windows -----------------------------


async def test_a_reconnecting_subscriber_gets_every_event_once_in_order(
    http: httpx.AsyncClient, channel: str
) -> None:
    start = str((await history(http, channel))["cursor"])
    total = 220  # 20 events/s for 11 s: at least five 2-second windows

    async def publisher() -> None:
        for n in range(total):
            response = await publish(http, channel, {"type": "tick", "data": {"n": n}})
            assert response.status_code == 201
            await asyncio.sleep(0.05)

    task = asyncio.create_task(publisher())
    received: list[int] = []
    windows = 0
    cursor = start
    while len(received) < total:
        result = await read_stream(
            http, f"/channels/{channel}/stream?window=2", last_event_id=cursor, max_seconds=10
        )
        assert result.status == 200
        windows += 1
        assert result.ended_with == "timeout"
        received.extend(e["n"] for e in result.data("tick"))
        cursor = result.last_event_id
        assert windows < 20
    await task
    assert received == list(range(total))
    assert windows >= 5


async def test_the_stream_opens_at_once_with_the_sse_headers(
    http: httpx.AsyncClient, channel: str
) -> None:
    result = await read_stream(http, f"/channels/{channel}/stream?window=0.3")
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache, no-transform"
    assert result.headers["x-accel-buffering"] == "no"
    assert result.headers["connection"] == "keep-alive"
    assert result.first_byte_after is not None and result.first_byte_after < 1.0
    assert result.retry == 1000
    assert result.comments[0][1].text == "ok"


async def test_heartbeats_arrive_on_time(http: httpx.AsyncClient, channel: str) -> None:
    result = await read_stream(http, f"/channels/{channel}/stream?window=3")
    beats = [t for t, c in result.comments if c.text == "hb"]
    assert len(beats) >= 4  # every 0.5 s over ~3 s (less the jitter)
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 1.2, gaps
    assert result.ended_with == "timeout"


async def test_the_window_never_exceeds_the_configured_one(short_server: UvicornServer) -> None:
    async with httpx.AsyncClient(base_url=short_server.url) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await read_stream(http, "/channels/c/stream?window=100", max_seconds=10)
        elapsed = loop.time() - started
    assert result.ended_with == "timeout"
    assert elapsed < 1.5 * 1.1 + 1.0


async def test_history_then_stream_leaves_no_gap(http: httpx.AsyncClient, channel: str) -> None:
    await publish(http, channel, [{"data": n} for n in range(5)])
    page = await history(http, channel)
    assert [e["data"] for e in page["events"]] == [0, 1, 2, 3, 4]  # type: ignore[index,union-attr]
    await publish(http, channel, [{"data": n} for n in range(5, 8)])
    result = await read_stream(
        http,
        f"/channels/{channel}/stream?window=0.5&last_event_id={page['cursor']}",
    )
    assert result.data() == [5, 6, 7]


async def test_history_pages_with_after_and_limit(http: httpx.AsyncClient, channel: str) -> None:
    await publish(http, channel, [{"data": n} for n in range(7)])
    first = await history(http, channel, limit="3")
    second = await history(http, channel, limit="3", after=str(first["cursor"]))
    third = await history(http, channel, limit="3", after=str(second["cursor"]))
    seqs = [[e["seq"] for e in page["events"]] for page in (first, second, third)]  # type: ignore[attr-defined]
    assert seqs == [[1, 2, 3], [4, 5, 6], [7]]
    event = first["events"][0]  # type: ignore[index]
    assert set(event) == {"id", "seq", "type", "data", "created_at"}
    assert event["type"] == "message" and event["created_at"].endswith("Z")


async def test_the_header_wins_over_from_start(http: httpx.AsyncClient, channel: str) -> None:
    await publish(http, channel, [{"data": n} for n in range(3)])
    url = f"/channels/{channel}/stream?window=0.4&from=start"
    first = await read_stream(http, url)
    assert first.data() == [0, 1, 2]
    again = await read_stream(http, url, last_event_id=first.last_event_id)
    assert again.data() == []


async def test_publish_answers_ids_that_resume_the_stream(
    http: httpx.AsyncClient, channel: str
) -> None:
    response = await publish(http, channel, [{"data": "a"}, {"data": "b"}, {"data": "c"}])
    assert response.status_code == 201
    ids = response.json()["events"]
    assert [e["seq"] for e in ids] == [1, 2, 3]
    result = await read_stream(
        http, f"/channels/{channel}/stream?window=0.4", last_event_id=ids[0]["id"]
    )
    assert result.data() == ["b", "c"]


async def test_a_repeated_idempotency_key_stores_one_event(
    http: httpx.AsyncClient, channel: str
) -> None:
    body = {"type": "order", "data": {"id": 7}, "idempotency_key": "order-7"}
    first = (await publish(http, channel, body)).json()["events"][0]
    second_response = await publish(http, channel, body)
    assert second_response.status_code == 201
    second = second_response.json()["events"][0]
    assert (second["id"], second["seq"], second.get("duplicate")) == (first["id"], 1, True)
    assert len((await history(http, channel))["events"]) == 1  # type: ignore[arg-type]


# -- finished channels ---------------------------------------------------------------------


async def test_a_closed_channel_ends_with_its_final_event_then_204(
    http: httpx.AsyncClient, channel: str
) -> None:
    await publish(http, channel, [{"data": 1}, {"data": 2}])
    closed = await http.post(f"/channels/{channel}/close", json={"type": "done", "data": {"x": 1}})
    assert closed.status_code == 200 and closed.json()["seq"] == 3
    result = await read_stream(http, f"/channels/{channel}/stream?from=start", max_seconds=5)
    assert [e.type for e in result.events] == ["message", "message", "done"]
    assert json.loads(result.events[-1].data) == {"x": 1}
    again = await read_stream(
        http, f"/channels/{channel}/stream", last_event_id=result.last_event_id
    )
    assert again.status == 204
    refused = await publish(http, channel, {"data": 3})
    assert refused.status_code == 409
    assert refused.json()["error"] == "channel_closed"
    assert (await http.post(f"/channels/{channel}/close")).status_code == 409


async def test_a_live_stream_ends_when_its_channel_closes(
    http: httpx.AsyncClient, channel: str
) -> None:
    async def close_soon() -> None:
        await asyncio.sleep(0.5)
        await publish(http, channel, {"data": "last words"})
        await http.post(f"/channels/{channel}/close")

    task = asyncio.create_task(close_soon())
    result = await read_stream(http, f"/channels/{channel}/stream", max_seconds=10)
    await task
    assert [e.type for e in result.events] == ["message", "complete"]


# -- gaps are told, never silent -----------------------------------------------------------


async def test_a_cursor_older_than_the_retention_gets_reset(short_server: UvicornServer) -> None:
    channel = f"e2e/{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=short_server.url) as http:
        first = (await publish(http, channel, {"data": 1})).json()["events"][0]["id"]
        for start in range(2, 602, 10):
            await publish(http, channel, [{"data": n} for n in range(start, start + 10)])
        result = await read_stream(http, f"/channels/{channel}/stream", last_event_id=first)
    reset = result.events[0]
    assert reset.type == "reset"
    assert json.loads(reset.data) == {
        "reason": "history_trimmed",
        "missed_from": 2,
        "missed_to": 501,
    }
    assert result.data() == list(range(502, 602))
    assert result.ended_with == "timeout"


# -- bad input: the right status, nothing stored -------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "AAAA", "a" * 2000, "AQHtT8TquS0IcnJwb3FzYTEBYzol9B", "AQ==", "../../etc"],
)
async def test_a_malformed_last_event_id_is_refused_with_400(
    http: httpx.AsyncClient, channel: str, cursor: str
) -> None:
    response = await http.get(f"/channels/{channel}/stream", headers={"Last-Event-ID": cursor})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cursor"
    query = await http.get(f"/channels/{channel}/stream", params={"last_event_id": cursor})
    assert query.status_code == 400


async def test_a_cursor_of_another_channel_is_refused(
    http: httpx.AsyncClient, channel: str
) -> None:
    other = Cursor.encode_positions({"elsewhere": Position("", 0)})
    response = await http.get(f"/channels/{channel}/stream", headers={"Last-Event-ID": other})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/channels/a/../b/stream", 422),
        ("/channels/a//b/stream", 422),
        ("/channels/a/./b/events", 422),
        ("/channels/sp%20ace/stream", 422),
        ("/channels/%E2%9C%93/stream", 422),
        ("/channels/" + "x" * 201 + "/stream", 422),
        ("/channels/c/stream?window=abc", 422),
        ("/channels/c/stream?window=-1", 422),
        ("/channels/c/stream?window=nan", 422),
        ("/channels/c/stream?format=xml", 422),
        ("/channels/c/stream?from=end", 422),
        ("/channels/c/events?limit=0", 422),
        ("/channels/c/events?limit=x", 422),
        ("/channels/c/events?after=nope", 400),
        ("/stream", 422),
        ("/stream?channels=" + ",".join(f"c{i}" for i in range(17)), 422),
        ("/stream?channels=a,..", 422),
        ("/nowhere", 404),
    ],
)
async def test_bad_requests_get_their_status_and_a_json_error(
    server: UvicornServer, path: str, status: int
) -> None:
    # http.client sends the path verbatim; httpx would normalise the dot segments away.
    status_got, body = await asyncio.to_thread(raw_get, server.port, path)
    assert status_got == status, body
    assert set(body) == {"error", "detail"} and body["detail"]


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (b"{not json", 400, "bad_request"),
        (b"\xff\xfe{}", 400, "bad_request"),
        (b'{"data": NaN}', 400, "bad_request"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "payload_too_large"),
        (b"[" * 5000 + b"]" * 5000, 400, "bad_request"),
        (b"{}", 422, "validation_failed"),
        (b'{"data": 1, "extra": 2}', 422, "validation_failed"),
        (b'{"type": "bad type", "data": 1}', 422, "validation_failed"),
        (b'{"type": "a\\nb", "data": 1}', 422, "validation_failed"),
        (b'{"type": "' + b"t" * 65 + b'", "data": 1}', 422, "validation_failed"),
        (b'{"data": "\\ud800"}', 422, "validation_failed"),
        (b"[]", 422, "validation_failed"),
        (b'[{"data": 1}, {"data": 2, "type": "no good"}]', 422, "validation_failed"),
        (b'{"data": "' + b"x" * 1100 + b'"}', 413, "payload_too_large"),
        (b"[" + b",".join([b'{"data":1}'] * 11) + b"]", 413, "payload_too_large"),
        (b'{"data": "' + b"x" * 30000 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_a_bad_publish_is_refused_and_stores_nothing(
    http: httpx.AsyncClient, channel: str, content: bytes, status: int, error: str
) -> None:
    response = await http.post(f"/channels/{channel}/events", content=content)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert (await history(http, channel))["events"] == []


async def test_a_bad_close_body_is_refused_and_leaves_the_channel_open(
    http: httpx.AsyncClient, channel: str
) -> None:
    response = await http.post(f"/channels/{channel}/close", content=b'{"type": "a b"}')
    assert response.status_code == 422
    assert (await publish(http, channel, {"data": 1})).status_code == 201


async def test_wrong_methods_get_405_as_json(http: httpx.AsyncClient, channel: str) -> None:
    response = await http.delete(f"/channels/{channel}/events")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


# -- several channels on one connection ----------------------------------------------------


async def test_a_multiplexed_stream_resumes_every_channel(
    http: httpx.AsyncClient, channel: str
) -> None:
    a, b = f"{channel}/a", f"{channel}/b"
    url = f"/stream?channels={a},{b}&window=0.6"
    first = await read_stream(http, url)
    await publish(http, a, {"data": "a1"})
    await publish(http, b, {"data": "b1"})
    second = await read_stream(http, url, last_event_id=first.last_event_id)
    assert sorted(second.data()) == ["a1", "b1"]
    await publish(http, b, {"data": "b2"})
    third = await read_stream(http, url, last_event_id=second.last_event_id)
    assert third.data() == ["b2"]
    assert len(Cursor.decode(third.last_event_id)) == 2


async def test_envelope_format_over_http(http: httpx.AsyncClient, channel: str) -> None:
    await publish(http, channel, {"type": "chat_message", "data": {"text": "hi"}})
    result = await read_stream(
        http, f"/channels/{channel}/stream?from=start&window=0.4&format=envelope"
    )
    assert json.loads(result.events[0].data) == {"type": "chat_message", "text": "hi"}
    assert {e.type for e in result.events} == {"message"}


async def test_healthz_reports_the_store(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "memory"}
