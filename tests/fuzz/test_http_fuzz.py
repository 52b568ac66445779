"""Hostile input against the HTTP surface: generated malformed requests, straight into the ASGI
app with raw bytes (so nothing normalises them first).

Every answer must be a success or a 4xx with the JSON error body — never a 5xx — and nothing
half-valid may be stored: every stored event keeps a valid type and JSON data, and a refused
publish leaves its channel unchanged.
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from typing import Any
from urllib.parse import quote, unquote

import jwt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from functions.app import routes
from serverless_sse.auth import hash_key
from serverless_sse.events import validate_channel
from serverless_sse.service import Service, create_app
from serverless_sse.settings import Settings
from serverless_sse.stores.memory import MemoryStore
from tests.hostile import HOSTILE_CHANNEL_PATHS, KNOWN_BOMBS

SETTINGS = Settings(
    window_seconds=0.05,
    heartbeat_seconds=1,
    max_event_bytes=2048,
    max_body_bytes=65536,
    max_batch_events=20,
    log_json=False,
    log_level="CRITICAL",
)


# The same with credentials configured, so that hostile credentials reach the checks.
FUZZ_SECRET = "fuzz-secret-" + "x" * 32
SECURED = SETTINGS.model_copy(
    update={
        "api_keys": [hash_key("fuzz-key-0123456789")],
        "jwt_secret": SecretStr(FUZZ_SECRET),
        "public_subscribe": ["public/**"],
        "cors_origins": ["https://app.example"],
    }
)


class Driver:
    """Runs one request through the app and collects the whole response."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.service = Service(settings, MemoryStore())
        self.app = create_app(routes, service=self.service)
        self.app.state.service = self.service

    async def request(
        self,
        method: str,
        raw_path: bytes,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        done = asyncio.Event()
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        status = 0
        response_headers: dict[bytes, bytes] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.update(dict(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            # As uvicorn builds it: the raw target is ASCII, percent-decoded as UTF-8.
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "root_path": "",
            "query_string": query,
            "headers": [(b"host", b"testserver"), *(headers or [])],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        async with asyncio.timeout(10):
            await self.app(scope, receive, send)
        done.set()
        return status, response_headers, b"".join(chunks)


def assert_answer_is_sound(status: int, headers: dict[bytes, bytes], body: bytes) -> None:
    assert status < 500, body
    if status >= 400:
        assert headers.get(b"content-type", b"").startswith(b"application/json"), (status, body)
        error = json.loads(body)
        assert set(error) == {"error", "detail"} and error["detail"], error


async def assert_store_is_sound(store: MemoryStore) -> None:
    for channel in list(store._logs):
        validate_channel(channel)
        for event in (await store.read(channel, 0, limit=10_000)).events:
            json.loads(event.data)
            assert 1 <= len(event.type) <= 64 and "\n" not in event.type


# -- strategies ------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "..",
            ".",
            "a/../b",
            "%2e%2e",
            "a//b",
            "/",
            "\x00",
            "\r\nX-Injected: 1",
            "\u2028",
            "é",
            "\ud7ff",
            "a" * 250,
            "{}",
            "*",
            "**",
            "rooms/lobby",
            "tasks/1",
        ]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
hostile_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda t, d, k: json.dumps({"type": t, "data": d, "idempotency_key": k}).encode(),
        hostile_text,
        json_values,
        st.one_of(st.none(), hostile_text),
    ),
    st.lists(st.fixed_dictionaries({"type": hostile_text, "data": json_values}), max_size=25).map(
        lambda items: json.dumps(items).encode()
    ),
    st.sampled_from([*KNOWN_BOMBS, b"\xef\xbb\xbf" + b'{"data": 1}', b""]),
)
header_values = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.text(string.printable, max_size=60).map(lambda s: s.encode("latin-1", "ignore")),
)
query_keys = st.sampled_from(
    [
        "window",
        "format",
        "from",
        "last_event_id",
        "limit",
        "after",
        "channels",
        "access_token",
        "client_id",
        "x",
    ]
)


@st.composite
def raw_paths(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from(["/channels/", "/stream", "/healthz", "/metrics", "/", "/api/"]))
    middle = draw(
        st.one_of(
            hostile_text.map(lambda text: quote(text, safe="/%")),
            st.sampled_from(HOSTILE_CHANNEL_PATHS),
        )
    )
    suffix = draw(st.sampled_from(["/events", "/stream", "/close", "", "/x"]))
    return (prefix + middle + suffix).encode("ascii")


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


valid_channels = st.from_regex(
    r"[a-z0-9_.:-]{1,12}(/[a-z0-9_.:-]{1,12}){0,2}", fullmatch=True
).filter(lambda c: all(seg not in (".", "..") for seg in c.split("/")))


def with_known_bombs(test: Any) -> Any:
    for bomb in KNOWN_BOMBS:
        test = example(channel="rooms/lobby", body=bomb)(test)
    return test


@FUZZ
@with_known_bombs
@given(channel=st.one_of(valid_channels, valid_channels, hostile_text), body=hostile_bodies)
async def test_publishing_garbage_never_breaks_the_server_or_the_store(
    channel: str, body: bytes
) -> None:
    driver = Driver()
    store = driver.service.store.inner  # type: ignore[attr-defined]
    path = ("/channels/" + quote(channel, safe="") + "/events").encode()
    before = {c: log.last_seq for c, log in store._logs.items()}
    status, headers, answer = await driver.request("POST", path, body=body)
    assert_answer_is_sound(status, headers, answer)
    after = {c: log.last_seq for c, log in store._logs.items()}
    if status != 201:
        assert after == before, "a refused publish stored something"
    else:
        stored = sum(after.values()) - sum(before.values())
        assert stored == len([e for e in json.loads(answer)["events"] if not e.get("duplicate")])
    await assert_store_is_sound(store)
    await driver.service.aclose()


@pytest.mark.parametrize("channel_path", HOSTILE_CHANNEL_PATHS)
@pytest.mark.parametrize("endpoint", ["events", "close", "stream"])
async def test_a_hostile_channel_name_is_refused_and_nothing_is_stored(
    channel_path: str, endpoint: str
) -> None:
    driver = Driver()
    method = "GET" if endpoint == "stream" else "POST"
    path = f"/channels/{channel_path}/{endpoint}".encode()
    status, headers, answer = await driver.request(method, path, body=b'{"data": 1}')
    assert 400 <= status < 500, (status, answer)
    assert_answer_is_sound(status, headers, answer)
    assert driver.service.store.inner._logs == {}  # type: ignore[attr-defined]
    await driver.service.aclose()


@pytest.mark.parametrize(
    ("method", "path", "header"),
    [
        ("GET", b"/channels/public/a/stream", (b"last-event-id", b"AQ\x01\x7f")),
        ("GET", b"/channels/rooms/a/stream", (b"cookie", b"sse_token=\x01\x02\x03")),
        ("POST", b"/channels/rooms/a/events", (b"content-length", b"+12")),
        ("GET", b"/channels/rooms/a/stream", (b"authorization", b"Bearer \x00\xff")),
    ],
)
async def test_headers_an_http_server_would_refuse_get_a_json_answer_from_the_app(
    method: str, path: bytes, header: tuple[bytes, bytes]
) -> None:
    """uvicorn refuses these before the app; another server (or a Lambda event) may not."""
    driver = Driver(SECURED)
    status, headers, answer = await driver.request(
        method, path, headers=[header], body=b'{"data": 1}'
    )
    assert 400 <= status < 500
    assert_answer_is_sound(status, headers, answer)
    assert driver.service.store.inner._logs == {}  # type: ignore[attr-defined]
    await driver.service.aclose()


# Tokens signed with the service's own secret, so that their claims get past the signature and
# reach the code that reads them: what a buggy (or compromised) token issuer could send.
claim_values = st.one_of(
    json_values,
    st.integers(min_value=-(10**30), max_value=10**400),
    st.lists(hostile_text, max_size=5),
    st.sampled_from(["*", "**", "*a" * 40 + "b", "*?" * 40, "\x00", "rooms/*"]).map(lambda p: [p]),
)
signed_claims = st.fixed_dictionaries(
    {
        # Mostly a subject and an expiry that PyJWT lets through, so that the rest is read.
        "sub": st.one_of(st.text(min_size=1, max_size=8), hostile_text, claim_values),
        "exp": st.one_of(
            st.integers(min_value=int(time.time()) + 60, max_value=10**400), claim_values
        ),
    },
    optional={
        "nbf": claim_values,
        "iat": claim_values,
        "aud": claim_values,
        "sse": st.one_of(
            claim_values,
            st.fixed_dictionaries(
                {}, optional={"publish": claim_values, "subscribe": claim_values}
            ),
        ),
    },
)


@FUZZ
@given(
    claims=signed_claims,
    method=st.sampled_from(["GET", "POST"]),
    where=st.sampled_from(["header", "cookie", "query"]),
)
async def test_any_signed_claims_get_an_answer_never_a_500(
    claims: dict[str, Any], method: str, where: str
) -> None:
    driver = Driver(SECURED)
    token = jwt.encode(claims, FUZZ_SECRET, algorithm="HS256").encode()
    headers = {
        "header": [(b"authorization", b"Bearer " + token)],
        "cookie": [(b"cookie", b"sse_token=" + token)],
        "query": [],
    }[where]
    query = b"access_token=" + token if where == "query" else b""
    path = b"/channels/rooms/a/events" if method == "POST" else b"/channels/rooms/a/stream"
    status, answer_headers, answer = await driver.request(
        method, path, query=query, headers=headers, body=b'{"data": 1}'
    )
    if not answer_headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        assert_answer_is_sound(status, answer_headers, answer)
    await assert_store_is_sound(driver.service.store.inner)  # type: ignore[attr-defined]
    await driver.service.aclose()


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=raw_paths(),
    params=st.lists(st.tuples(query_keys, hostile_text), max_size=4),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    b"last-event-id",
                    b"authorization",
                    b"x-api-key",
                    b"cookie",
                    b"content-type",
                    b"content-length",
                    b"x-request-id",
                    b"origin",
                ]
            ),
            header_values,
        ),
        max_size=4,
    ),
    body=hostile_bodies,
    secured=st.booleans(),
)
async def test_any_malformed_request_gets_a_clean_answer(
    method: str,
    path: bytes,
    params: list[tuple[str, str]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    secured: bool,
) -> None:
    driver = Driver(SECURED if secured else SETTINGS)
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params).encode()
    status, answer_headers, answer = await driver.request(
        method, path, query=query, headers=headers, body=body
    )
    if answer_headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        assert status == 200
    else:
        assert_answer_is_sound(status, answer_headers, answer)
    await assert_store_is_sound(driver.service.store.inner)  # type: ignore[attr-defined]
    await driver.service.aclose()
