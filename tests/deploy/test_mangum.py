"""The real handlers behind API Gateway's HTTP API (Mangum), each in a Lambda container of its
own (tests/lambda_container.py), on a shared Redis store: what a client gets from a deployment
whose platform buffers every response, so that streams answer as long-polls.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serverless_sse.auth import hash_key, mint_token
from serverless_sse.cursor import Cursor
from tests.lambda_container import HttpApiResponse, LambdaContainer, two_instances
from tests.servers import UvicornServer
from tests.stores import flush_redis

pytestmark = pytest.mark.deploy

STORE = "redis://127.0.0.1:6379/12"
SECRET = "deploy-secret-" + "x" * 32
KEY = "deploy-api-key-0123456789abcdef"
WAIT = 2.0  # the long-poll wait (SSE_BUFFERED_WAIT_SECONDS), short for tests

ENV = {
    "SSE_STORE": STORE,
    "SSE_BUFFERED_WAIT_SECONDS": str(WAIT),
    "SSE_API_KEYS": hash_key(KEY),
    "SSE_JWT_SECRET": SECRET,
    "SSE_ALLOW_ANONYMOUS": "false",
    "SSE_MAX_STREAMS_PER_CLIENT": "1",
    "SSE_CORS_ORIGINS": "https://app.example",
    "SSE_WORKER": "off",
    "SSE_LOG_LEVEL": "WARNING",
}
KEY_AUTH = {"authorization": f"Bearer {KEY}"}


def token(*, publish: list[str] | None = None, subscribe: list[str] | None = None) -> str:
    return mint_token(SECRET, "ana", publish=publish or [], subscribe=subscribe or [], ttl=300)


def channel() -> str:
    return f"rooms/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def containers() -> Iterator[tuple[LambdaContainer, LambdaContainer]]:
    """Two instances of the channels function (one streams while the other publishes)."""
    flush_redis(STORE)
    with two_instances("functions.channels.handler", ENV) as pair:
        yield pair


@pytest.fixture(scope="module")
def streams(containers: tuple[LambdaContainer, LambdaContainer]) -> LambdaContainer:
    return containers[0]


@pytest.fixture(scope="module")
def publishes(containers: tuple[LambdaContainer, LambdaContainer]) -> LambdaContainer:
    return containers[1]


def publish(container: LambdaContainer, name: str, data: Any) -> HttpApiResponse:
    return container.request(
        "POST", f"/channels/{name}/events", body=json.dumps({"data": data}), headers=KEY_AUTH
    )


# -- long-polls ------------------------------------------------------------------------------


def test_an_eventsource_gets_every_event_once_in_order_across_responses(
    streams: LambdaContainer, publishes: LambdaContainer
) -> None:
    """A client that reconnects with Last-Event-ID after each response, as EventSource does
    after each ``timeout``, reads one continuous stream out of a steady publisher."""
    name, total = channel(), 40
    failures: list[str] = []

    def publisher() -> None:
        for n in range(total):
            answer = publish(publishes, name, {"n": n})
            if answer.status != 201:
                failures.append(f"publish {n}: {answer.status} {answer.body!r}")
            time.sleep(0.03)

    thread = threading.Thread(target=publisher)
    thread.start()
    received: list[int] = []
    responses = 0
    last_event_id = ""
    deadline = time.monotonic() + 60
    try:
        while len(received) < total and time.monotonic() < deadline:
            headers = {**KEY_AUTH, **({"last-event-id": last_event_id} if last_event_id else {})}
            # The URL stays the same, as EventSource's does: the header wins over ?from=start.
            response = streams.request(
                "GET", f"/channels/{name}/stream", query={"from": "start"}, headers=headers
            )
            assert response.status == 200, response.body
            events, comments, decoder = response.decode()
            responses += 1
            assert events and events[-1].type == "timeout"
            assert all(e.last_event_id for e in events)  # every event carries its id
            assert [c.text for c in comments] == ["ok"]  # no heartbeats in a buffered answer
            received += [json.loads(e.data)["n"] for e in events if e.type == "message"]
            last_event_id = decoder.last_event_id
            time.sleep((decoder.retry or 0) / 1000)
    finally:
        thread.join()
    assert not failures
    assert received == list(range(total))
    assert responses >= 5


def test_a_long_poll_with_nothing_to_deliver_ends_after_the_wait(
    streams: LambdaContainer,
) -> None:
    name = channel()
    response = streams.request("GET", f"/channels/{name}/stream", headers=KEY_AUTH)
    assert response.status == 200
    assert WAIT * 0.9 - 0.05 <= response.seconds < WAIT + 5
    events, comments, decoder = response.decode()
    assert [e.type for e in events] == ["timeout"]
    assert json.loads(events[0].data) == {"reason": "window_elapsed", "retry_ms": 100}
    assert Cursor.decode(events[0].last_event_id).position(name) is not None
    assert [c.text for c in comments] == ["ok"]
    assert decoder.retry == 100


def test_a_finished_task_ends_its_long_poll_then_answers_204() -> None:
    with LambdaContainer("functions.tasks.handler", ENV) as tasks:
        task_id = uuid.uuid4().hex[:12]
        created = tasks.request(
            "POST", "/api/tasks", body=json.dumps({"id": task_id}), headers=KEY_AUTH
        )
        assert created.status == 201, created.body
        posted = tasks.request(
            "POST",
            f"/api/tasks/{task_id}/output",
            body=json.dumps({"output": "Step 1/1: Build\n"}),
            headers=KEY_AUTH,
        )
        assert posted.status == 200, posted.body
        completed = tasks.request("POST", f"/api/tasks/{task_id}/complete", headers=KEY_AUTH)
        assert completed.status == 200, completed.body
        stream = tasks.request("GET", f"/api/tasks/{task_id}/stream", headers=KEY_AUTH)
        events, _, decoder = stream.decode()
        types = [json.loads(e.data)["type"] for e in events]
        assert types[-1] == "complete" and "timeout" not in types
        again = tasks.request(
            "GET",
            f"/api/tasks/{task_id}/stream",
            headers={**KEY_AUTH, "last-event-id": decoder.last_event_id},
        )
        assert again.status == 204  # EventSource stops for good
        unknown = tasks.request("GET", "/api/tasks/nope/stream", headers=KEY_AUTH)
        assert unknown.status == 404 and unknown.json()["error"] == "not_found"


# -- errors and security ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def uvicorn_channels() -> Iterator[UvicornServer]:
    """The same function under uvicorn (as the Lambda Web Adapter runs it), same settings."""
    with UvicornServer(ENV, app="functions.channels:app") as server:
        yield server


def expired_token() -> str:
    return mint_token(SECRET, "ana", subscribe=["**"], ttl=-10)


ERROR_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "unknown route": ("GET", "/nope", {}),
    "invalid channel name": ("GET", "/channels/bad!name/stream", {"headers": KEY_AUTH}),
    "no credential": ("POST", "/channels/c/events", {"body": '{"data": 1}'}),
    "a token without the grant": (
        "POST",
        "/channels/c/events",
        {"body": '{"data": 1}', "headers": {"authorization": f"Bearer {token()}"}},
    ),
    "an expired token": (
        "GET",
        "/channels/c/stream",
        {"headers": {"authorization": f"Bearer {expired_token()}"}},
    ),
    "an event too large": (
        "POST",
        "/channels/c/events",
        {"body": json.dumps({"data": "x" * 70_000}), "headers": KEY_AUTH},
    ),
    "a body that is not JSON": ("POST", "/channels/c/events", {"body": "{", "headers": KEY_AUTH}),
    "a cursor that does not parse": (
        "GET",
        "/channels/c/stream",
        {"headers": {**KEY_AUTH, "last-event-id": "not-a-cursor"}},
    ),
    "a bad query value": (
        "GET",
        "/channels/c/events",
        {"query": {"limit": "0"}, "headers": KEY_AUTH},
    ),
    "a preflight from another origin": (
        "OPTIONS",
        "/channels/c/stream",
        {
            "headers": {
                "origin": "https://evil.example",
                "access-control-request-method": "GET",
            }
        },
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_answer_as_under_uvicorn(
    case: str, streams: LambdaContainer, uvicorn_channels: UvicornServer
) -> None:
    method, path, options = ERROR_CASES[case]
    under_mangum = streams.request(method, path, **options)
    under_uvicorn = httpx.request(
        method,
        uvicorn_channels.url + path,
        params=options.get("query"),
        headers=options.get("headers"),
        content=options.get("body"),
        timeout=30,
    )
    assert under_mangum.status == under_uvicorn.status_code
    assert under_mangum.status >= 400
    assert under_mangum.json()["error"] == under_uvicorn.json()["error"]
    assert under_mangum.headers["content-type"] == "application/json"


def test_the_stream_cap_holds_across_instances(
    streams: LambdaContainer, publishes: LambdaContainer
) -> None:
    """A client's concurrent streams count in the store, whichever instance serves them: of
    two long-polls at once with SSE_MAX_STREAMS_PER_CLIENT=1, one is refused."""
    name = channel()
    answers: list[HttpApiResponse] = []

    def long_poll(instance: LambdaContainer) -> None:
        answers.append(instance.request("GET", f"/channels/{name}/stream", headers=KEY_AUTH))

    first = threading.Thread(target=long_poll, args=(streams,))
    first.start()
    time.sleep(WAIT / 3)  # well inside the first one's wait, whichever is admitted first
    long_poll(publishes)
    first.join()
    assert sorted(a.status for a in answers) == [200, 429]
    refused = next(a for a in answers if a.status == 429)
    assert refused.json()["error"] == "too_many_requests"
    assert int(refused.headers["retry-after"]) >= 1
    after = publishes.request("GET", f"/channels/{name}/stream", headers=KEY_AUTH)
    assert after.status == 200  # the lease went with the response that held it


def test_a_browser_token_in_the_query_or_a_cookie_opens_a_stream(
    streams: LambdaContainer,
) -> None:
    """EventSource cannot set headers: its token comes as ?access_token= or the sse_token
    cookie, which API Gateway passes apart from the headers."""
    name = channel()
    grant = token(subscribe=[name])
    by_query = streams.request(
        "GET", f"/channels/{name}/stream", query={"access_token": grant, "window": "0.2"}
    )
    by_cookie = streams.request(
        "GET", f"/channels/{name}/stream", query={"window": "0.2"}, cookies=[f"sse_token={grant}"]
    )
    refused = streams.request("GET", f"/channels/{name}/stream", query={"window": "0.2"})
    assert (by_query.status, by_cookie.status, refused.status) == (200, 200, 401)
