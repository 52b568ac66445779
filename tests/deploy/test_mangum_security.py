"""Security and limits in the buffered mode: the real handlers behind API Gateway's HTTP API
(Mangum), each in a Lambda container of its own, on a shared Redis store.

Every rule that tests/e2e/test_security_e2e.py and test_caps_e2e.py check under uvicorn holds
here too, where a stream is a long-poll: where a credential may come from (with the query form
switched off), 401/403 per channel, a token expiring during a long-poll, the publish rate across
instances (the stream cap across instances is in test_mangum.py), CORS, size limits, hostile
input.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from serverless_sse.auth import hash_key, mint_token
from tests.hostile import HOSTILE_CHANNEL_PATHS, ODD_BUT_VALID_BODIES, REFUSED_BODIES
from tests.lambda_container import HttpApiResponse, LambdaContainer, two_instances
from tests.stores import flush_redis

pytestmark = pytest.mark.deploy

STORE = "redis://127.0.0.1:6379/11"
SECRET = "deploy-security-secret-" + "x" * 32
KEY = "deploy-security-key-0123456789abcdef"
WAIT = 20.0  # the long-poll wait: long, so that a poll cut short by its token shows it
RATE = 5

ENV = {
    "SSE_STORE": STORE,
    "SSE_BUFFERED_WAIT_SECONDS": str(WAIT),
    "SSE_API_KEYS": hash_key(KEY),
    "SSE_JWT_SECRET": SECRET,
    "SSE_ALLOW_ANONYMOUS": "false",
    "SSE_PUBLIC_SUBSCRIBE": "public/**",
    "SSE_QUERY_TOKENS": "false",
    "SSE_PUBLISH_RATE_PER_CLIENT": str(RATE),
    "SSE_CORS_ORIGINS": "https://app.example",
    "SSE_WORKER": "off",
    "SSE_LOG_LEVEL": "WARNING",
}
KEY_AUTH = {"authorization": f"Bearer {KEY}"}


def token(
    *, publish: list[str] | None = None, subscribe: list[str] | None = None, ttl: float = 300
) -> str:
    return mint_token(SECRET, "ana", publish=publish or [], subscribe=subscribe or [], ttl=ttl)


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def channel(prefix: str = "rooms") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def instances() -> Iterator[tuple[LambdaContainer, LambdaContainer]]:
    """Two instances of the channels function."""
    flush_redis(STORE)
    with two_instances("functions.channels.handler", ENV) as pair:
        yield pair


@pytest.fixture(scope="module")
def lam(instances: tuple[LambdaContainer, LambdaContainer]) -> LambdaContainer:
    return instances[0]


def stored(container: LambdaContainer, name: str) -> list[object]:
    history = container.request("GET", f"/channels/{name}/events", headers=KEY_AUTH)
    assert history.status == 200, history.body
    return [e["data"] for e in history.json()["events"]]


def assert_json_error(response: HttpApiResponse, status: int | None = None) -> None:
    assert 400 <= response.status < 500, (response.status, response.body)
    if status is not None:
        assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error", "detail"}


# -- credentials -------------------------------------------------------------------------------


def test_the_query_form_is_refused_when_switched_off(lam: LambdaContainer) -> None:
    name = channel()
    grant = token(subscribe=["rooms/*"])
    by_query = lam.request(
        "GET", f"/channels/{name}/stream", query={"access_token": grant, "window": "0.2"}
    )
    assert_json_error(by_query, 401)
    by_cookie = lam.request(
        "GET", f"/channels/{name}/stream", query={"window": "0.2"}, cookies=[f"sse_token={grant}"]
    )
    by_key_header = lam.request(
        "GET", f"/channels/{name}/stream", query={"window": "0.2"}, headers={"x-api-key": KEY}
    )
    assert (by_cookie.status, by_key_header.status) == (200, 200)


def test_a_write_with_only_a_cookie_is_refused_and_stores_nothing(lam: LambdaContainer) -> None:
    name = channel()
    forged = lam.request(
        "POST",
        f"/channels/{name}/events",
        body='{"data": "forged", "x": "="}',
        headers={"content-type": "text/plain"},
        cookies=[f"sse_token={KEY}"],
    )
    assert_json_error(forged, 401)
    assert "reads only" in forged.json()["detail"]
    assert stored(lam, name) == []


def test_each_channel_of_a_multiplexed_long_poll_is_checked(lam: LambdaContainer) -> None:
    rooms = token(subscribe=["rooms/*"])
    query = {"window": "0.2"}
    refused = lam.request(
        "GET", "/stream", query={**query, "channels": "rooms/a,tasks/b"}, headers=bearer(rooms)
    )
    assert_json_error(refused, 403)
    assert "tasks/b" in refused.json()["detail"]
    anonymous = lam.request("GET", "/stream", query={**query, "channels": "public/a,rooms/b"})
    assert_json_error(anonymous, 401)
    assert "rooms/b" in anonymous.json()["detail"]
    granted = lam.request(
        "GET", "/stream", query={**query, "channels": "rooms/a,public/b"}, headers=bearer(rooms)
    )
    assert granted.status == 200
    events, _, _ = granted.decode()
    assert events[-1].type == "timeout"


def test_each_channel_of_an_sse_events_long_poll_is_checked() -> None:
    client_id = f"c{uuid.uuid4().hex[:8]}"
    query = {"client_id": client_id, "channels": "votes,chat,ai", "window": "0.2"}
    with LambdaContainer("functions.realtime.handler", ENV) as realtime:
        assert_json_error(realtime.request("GET", "/sse/events", query=query), 401)
        partial = bearer(token(subscribe=["votes", "chat"]))
        refused = realtime.request("GET", "/sse/events", query=query, headers=partial)
        assert_json_error(refused, 403)
        assert f"ai/{client_id}" in refused.json()["detail"]
        full = bearer(token(subscribe=["votes", "chat", f"ai/{client_id}"]))
        granted = realtime.request("GET", "/sse/events", query=query, headers=full)
    assert granted.status == 200
    events, _, _ = granted.decode()
    assert json.loads(events[0].data)["type"] == "connection_ack"


def test_a_token_that_expires_ends_its_long_poll_and_the_next_is_refused(
    lam: LambdaContainer,
) -> None:
    name = channel()
    soon = token(subscribe=["rooms/*"], ttl=3)
    poll = lam.request("GET", f"/channels/{name}/stream", headers=bearer(soon))
    assert poll.status == 200
    events, _, decoder = poll.decode()
    assert [e.type for e in events] == ["timeout"]
    # The wait is jittered downwards only, to no less than 90 % of it: a poll that ended well
    # before that was ended by its token.
    assert poll.seconds < WAIT * 0.9 - 5, f"the long-poll outlived its token ({poll.seconds:.1f}s)"
    again = lam.request(
        "GET",
        f"/channels/{name}/stream",
        headers={**bearer(soon), "last-event-id": decoder.last_event_id},
    )
    assert_json_error(again, 401)
    assert "expired" in again.json()["detail"]


# -- caps ----------------------------------------------------------------------------------------


def in_one_second(requests: Callable[[], list[HttpApiResponse]]) -> list[HttpApiResponse]:
    """The answers to ``requests``, all sent within one second of the clock (the rate's
    window): sent from the start of a second, and again from the next one if they straddled
    two."""
    for _ in range(5):
        time.sleep(1.01 - time.time() % 1)
        started = int(time.time())
        responses = requests()
        if int(time.time()) == started:
            return responses
    raise AssertionError("the machine is too slow to send a few requests within one second")


def test_the_publish_rate_is_global_across_instances(
    instances: tuple[LambdaContainer, LambdaContainer],
) -> None:
    a, b = instances
    publisher = bearer(
        mint_token(SECRET, f"rate-{uuid.uuid4().hex[:6]}", publish=["rates/**"], ttl=300)
    )
    names: list[str] = []

    def alternating() -> list[HttpApiResponse]:
        names.append(channel("rates"))  # a fresh channel per try
        return [
            instance.request(
                "POST",
                f"/channels/{names[-1]}/events",
                body=json.dumps({"data": n}),
                headers=publisher,
            )
            for n, instance in enumerate([a, b] * RATE + [a])
        ]

    responses = in_one_second(alternating)
    statuses = [r.status for r in responses]
    assert statuses == [201] * RATE + [429] * (len(statuses) - RATE)
    refused = responses[RATE]
    assert refused.json()["error"] == "too_many_requests"
    assert int(refused.headers["retry-after"]) >= 1
    assert stored(b, names[-1]) == list(range(RATE))


# -- CORS and size limits ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/channels/rooms/x/events", "/channels/rooms/x/close"])
def test_a_preflight_for_a_post_is_answered(lam: LambdaContainer, path: str) -> None:
    response = lam.request(
        "OPTIONS",
        path,
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"


def test_oversized_headers_get_431(lam: LambdaContainer) -> None:
    response = lam.request("GET", "/healthz", headers={"x-padding": "x" * 20_000})
    assert_json_error(response, 431)


def test_an_oversized_body_gets_413_and_stores_nothing(lam: LambdaContainer) -> None:
    name = channel()
    body = json.dumps([{"data": "x" * 60_000}] * 20)  # over SSE_MAX_BODY_BYTES (1 MiB)
    response = lam.request("POST", f"/channels/{name}/events", body=body, headers=KEY_AUTH)
    assert_json_error(response, 413)
    assert stored(lam, name) == []


# -- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bomb", REFUSED_BODIES, ids=range(len(REFUSED_BODIES)))
def test_a_hostile_body_gets_a_json_4xx_and_stores_nothing(
    lam: LambdaContainer, bomb: bytes
) -> None:
    name = channel()
    response = lam.request("POST", f"/channels/{name}/events", body=bomb, headers=KEY_AUTH)
    assert_json_error(response)
    assert stored(lam, name) == []


@pytest.mark.parametrize("body", ODD_BUT_VALID_BODIES, ids=range(len(ODD_BUT_VALID_BODIES)))
def test_an_odd_but_valid_body_is_stored_whole(lam: LambdaContainer, body: bytes) -> None:
    name = channel()
    response = lam.request("POST", f"/channels/{name}/events", body=body, headers=KEY_AUTH)
    assert response.status == 201, response.body
    assert stored(lam, name) == [json.loads(body)["data"]]


@pytest.mark.parametrize("channel_path", HOSTILE_CHANNEL_PATHS)
def test_a_hostile_channel_name_gets_a_json_4xx(lam: LambdaContainer, channel_path: str) -> None:
    response = lam.request(
        "POST", f"/channels/{channel_path}/events", body='{"data": 1}', headers=KEY_AUTH
    )
    assert_json_error(response)
