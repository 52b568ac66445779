"""The Python client against the real service (uvicorn in its own process)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from serverless_sse.auth import hash_key, mint_token
from serverless_sse.client import Event, StateChange, StreamRefused, aconnect, connect
from serverless_sse.events import EventFormat
from tests.servers import UvicornServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer({"SSE_RETENTION_EVENTS": "10", "SSE_RETRY_MS": "100"}) as running:
        yield running


@pytest.fixture
def channel() -> str:
    return f"client/{uuid.uuid4().hex[:12]}"


def publish(server: UvicornServer, channel: str, body: object) -> list[dict[str, object]]:
    response = httpx.post(f"{server.url}/channels/{channel}/events", json=body)
    assert response.status_code == 201, response.text
    events: list[dict[str, object]] = response.json()["events"]
    return events


def close(server: UvicornServer, channel: str, body: object | None = None) -> None:
    response = httpx.post(f"{server.url}/channels/{channel}/close", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fmt", ["named", "envelope"])
def test_a_finished_channel_is_read_to_its_final_event_then_the_client_stops(
    server: UvicornServer, channel: str, fmt: EventFormat
) -> None:
    publish(server, channel, [{"type": "vote_update", "data": {"n": n}} for n in (1, 2, 3)])
    close(server, channel, {"type": "done", "data": {"total": 3}})
    url = f"{server.url}/channels/{channel}/stream"
    params = {"from": "start", "format": fmt}
    with connect(url, params=params, format=fmt) as source:
        events = list(source)
    assert [e.type for e in events] == ["vote_update"] * 3 + ["done"]
    assert [e.json()["n"] for e in events[:3]] == [1, 2, 3]
    assert str(source.state) == "closed"  # the reconnect after "done" got 204


async def test_the_async_client_resumes_across_windows_until_the_channel_closes(
    server: UvicornServer, channel: str
) -> None:
    async def publish_then_close() -> int:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for n in range(1, 31):
                body = {"type": "tick", "data": {"n": n}}
                assert (
                    await http.post(f"/channels/{channel}/events", json=body)
                ).status_code == 201
                await asyncio.sleep(0.1)
            assert (await http.post(f"/channels/{channel}/close")).status_code == 200
        return 30

    publisher = asyncio.create_task(publish_then_close())
    url = f"{server.url}/channels/{channel}/stream"
    ticks: list[int] = []
    window_ends = 0
    async with aconnect(url, params={"window": "1", "from": "start"}) as source:
        async for event in source:
            if event.type == "tick":
                ticks.append(event.json()["n"])
            elif event.type == "timeout":
                window_ends += 1
    assert ticks == list(range(1, await publisher + 1))
    assert window_ends >= 2


def test_on_reset_is_called_when_the_history_was_trimmed(
    server: UvicornServer, channel: str
) -> None:
    first = publish(server, channel, {"data": 1})[0]["id"]
    publish(server, channel, [{"data": n} for n in range(2, 32)])
    close(server, channel)
    resets: list[Event] = []
    url = f"{server.url}/channels/{channel}/stream"
    with connect(url, last_event_id=str(first), on_reset=resets.append) as source:
        events = list(source)
    assert len(resets) == 1
    gap = resets[0].json()
    assert (gap["reason"], gap["missed_from"]) == ("history_trimmed", 2)
    delivered = [e.json() for e in events if e.type == "message"]
    assert delivered == list(range(gap["missed_to"] + 1, 32))


def test_a_cursor_the_server_refuses_stops_the_client_with_its_error(
    server: UvicornServer, channel: str
) -> None:
    url = f"{server.url}/channels/{channel}/stream"
    with pytest.raises(StreamRefused) as refused, connect(url, last_event_id="garbage") as source:
        list(source)
    assert (refused.value.status, refused.value.code) == (400, "invalid_cursor")


def test_the_client_follows_several_channels_on_one_stream(
    server: UvicornServer, channel: str
) -> None:
    other = f"{channel}-b"
    publish(server, channel, {"type": "a", "data": 1})
    publish(server, other, {"type": "b", "data": 2})
    close(server, channel)
    close(server, other)
    url = f"{server.url}/stream"
    with connect(url, params={"channels": f"{channel},{other}", "from": "start"}) as source:
        types = sorted(e.type for e in source)
    assert types == ["a", "b", "complete", "complete"]


# -- with credentials and caps (the service's security settings) -----------------------------

SECRET = "client-e2e-secret-" + "x" * 32
KEY = "client-e2e-api-key-0123456789"


@pytest.fixture(scope="module")
def secured() -> Iterator[UvicornServer]:
    env = {
        "SSE_API_KEYS": hash_key(KEY),
        "SSE_JWT_SECRET": SECRET,
        "SSE_ALLOW_ANONYMOUS": "false",
        "SSE_MAX_STREAMS_PER_CLIENT": "1",
        "SSE_RETRY_MS": "100",
    }
    with UvicornServer(env) as running:
        yield running


def finished_channel(server: UvicornServer, channel: str) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.post(f"/channels/{channel}/events", json={"data": 1}).status_code == 201
        assert http.post(f"/channels/{channel}/close").status_code == 200
    return f"{server.url}/channels/{channel}/stream"


def test_without_a_token_the_client_stops_with_401(secured: UvicornServer, channel: str) -> None:
    url = finished_channel(secured, channel)
    with pytest.raises(StreamRefused) as refused, connect(url) as source:
        list(source)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_a_token_lets_the_client_read(secured: UvicornServer, channel: str) -> None:
    url = finished_channel(secured, channel)
    jwt = mint_token(SECRET, "reader", subscribe=["client/*"], ttl=60)
    with connect(url, token=jwt, params={"from": "start"}) as source:
        assert [e.type for e in source] == ["message", "complete"]


async def test_a_stream_over_the_cap_waits_for_retry_after_then_reads(
    secured: UvicornServer, channel: str
) -> None:
    url = finished_channel(secured, channel)
    live = f"{secured.url}/channels/{channel}-live/stream"
    waits: list[float] = []
    async with aconnect(live, token=KEY) as holder:
        first = asyncio.create_task(anext(holder))  # holds this client's only stream
        await asyncio.sleep(0.5)

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            first.cancel()  # the held stream ends; its lease is released
            await holder.aclose()
            await asyncio.sleep(0.5)

        changes: list[StateChange] = []
        params = {"from": "start"}
        async with aconnect(
            url, token=KEY, params=params, sleep=sleep, on_state=changes.append
        ) as source:
            types = [e.type async for e in source]
    assert types == ["message", "complete"]
    refused = changes[1].error
    assert isinstance(refused, StreamRefused) and refused.status == 429
    # The 429's Retry-After (whole seconds), then the server's retry: after the final event.
    assert waits[0] == refused.retry_after and waits[0] >= 1
    assert waits[1:] == [0.1]
