"""Publishing from Python: what is sent, and which failures are retried (only those that
cannot store an event twice)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from serverless_sse.client import Backoff, ConnectionLost, Published, Publisher, PublishRefused
from serverless_sse.errors import InvalidChannel

CEILING = Backoff(initial=1.0, maximum=5.0, random=lambda: 1.0)
Reply = Callable[[httpx.Request], httpx.Response]


def stored(request: httpx.Request) -> httpx.Response:
    items = json.loads(request.content)
    events = [{"id": f"cursor-{n}", "seq": n} for n in range(1, len(items) + 1)]
    return httpx.Response(201, json={"events": events})


def refused(status: int, code: str, **headers: str) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": code, "detail": "no"}, headers=headers)

    return reply


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset", request=request)


class Server:
    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0)(request)


def publisher(server: Server, sleeps: list[float] | None = None, **options: object) -> Publisher:
    client = httpx.Client(transport=httpx.MockTransport(server))
    recorder = sleeps.append if sleeps is not None else (lambda s: None)
    return Publisher("http://test/", client=client, sleep=recorder, backoff=CEILING, **options)  # type: ignore[arg-type]


def test_publish_sends_one_event_and_returns_its_cursor() -> None:
    server = Server(stored)
    result = publisher(server, token="t").publish("rooms/lobby", {"text": "hi"}, type="chat")
    assert result == Published("cursor-1", 1)
    request = server.requests[0]
    assert (request.method, str(request.url)) == ("POST", "http://test/channels/rooms/lobby/events")
    assert json.loads(request.content) == [{"type": "chat", "data": {"text": "hi"}}]
    assert request.headers["authorization"] == "Bearer t"


def test_publish_many_sends_the_batch_in_one_request() -> None:
    server = Server(stored)
    items = [{"data": n, "idempotency_key": f"k{n}"} for n in range(3)]
    results = publisher(server).publish_many("c", items)
    assert [r.seq for r in results] == [1, 2, 3]
    assert json.loads(server.requests[0].content) == items


def test_a_duplicate_is_reported() -> None:
    def duplicate(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"events": [{"id": "c", "seq": 4, "duplicate": True}]})

    assert publisher(Server(duplicate)).publish("c", 1, idempotency_key="k").duplicate


def test_429_is_retried_after_retry_after() -> None:
    sleeps: list[float] = []
    server = Server(refused(429, "too_many_requests", **{"Retry-After": "3"}), stored)
    publisher(server, sleeps).publish("c", 1)
    assert (len(server.requests), sleeps) == (2, [3.0])


def test_503_is_retried_with_backoff_even_without_idempotency_keys() -> None:
    sleeps: list[float] = []
    server = Server(refused(503, "store_unavailable"), refused(503, "store_unavailable"), stored)
    publisher(server, sleeps).publish("c", 1)
    assert sleeps == [1.0, 2.0]


def test_attempts_are_bounded() -> None:
    server = Server(*[refused(503, "store_unavailable")] * 5)
    with pytest.raises(PublishRefused) as raised:
        publisher(server, max_attempts=3).publish("c", 1)
    assert (raised.value.status, len(server.requests)) == (503, 3)


@pytest.mark.parametrize("failure", [dropped, refused(502, "bad_gateway"), refused(504, "x")])
def test_a_failure_that_may_have_stored_the_batch_is_not_retried_without_keys(
    failure: Reply,
) -> None:
    server = Server(failure, stored)
    with pytest.raises((ConnectionLost, PublishRefused)):
        publisher(server).publish("c", 1)
    assert len(server.requests) == 1


@pytest.mark.parametrize("failure", [dropped, refused(502, "bad_gateway"), refused(504, "x")])
def test_a_failure_that_may_have_stored_the_batch_is_retried_with_keys(failure: Reply) -> None:
    server = Server(failure, stored)
    result = publisher(server).publish("c", 1, idempotency_key="k1")
    assert result.seq == 1
    assert [json.loads(r.content) for r in server.requests] == [
        [{"type": "message", "data": 1, "idempotency_key": "k1"}]
    ] * 2


def test_a_refusal_is_raised_with_the_servers_error() -> None:
    server = Server(refused(422, "validation_failed"), stored)
    with pytest.raises(PublishRefused) as raised:
        publisher(server).publish("c", 1)
    assert (raised.value.status, raised.value.code, len(server.requests)) == (
        422,
        "validation_failed",
        1,
    )


def test_a_malformed_channel_name_is_refused_before_sending() -> None:
    server = Server(stored)
    with pytest.raises(InvalidChannel):
        publisher(server).publish("../etc", 1)
    assert server.requests == []
