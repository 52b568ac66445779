"""Credentials, grants and channel patterns."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from pydantic import ValidationError
from starlette.requests import HTTPConnection

from serverless_sse.auth import (
    Authenticator,
    Principal,
    hash_key,
    matches,
    mint_token,
    require_publish,
    require_subscribe,
)
from serverless_sse.errors import Forbidden, Unauthorized
from serverless_sse.settings import Settings

SECRET = "s" * 40
KEY = "k3y-for-tests-0123456789"


def connection(
    headers: dict[str, str] | None = None,
    query: str = "",
    client: str = "10.0.0.7",
    method: str = "GET",
) -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "headers": raw,
        "query_string": query.encode(),
        "client": (client, 1234),
        "path": "/",
    }
    return HTTPConnection(scope)


def secured(**options: Any) -> Authenticator:
    defaults: dict[str, Any] = {
        "key_hashes": frozenset({hash_key(KEY)}),
        "jwt_secret": SECRET,
        "public_subscribe": ("public/**",),
        "closed_subscribe": ("internal/**",),
    }
    return Authenticator(**(defaults | options))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("tasks/*", "tasks/42", True),
        ("tasks/*", "tasks/42/log", False),
        ("tasks/**", "tasks/42/log", True),
        ("tasks/**", "tasks", False),
        ("rooms/lobby", "rooms/lobby", True),
        ("rooms/lobby", "rooms/lobby2", False),
        ("rooms/?", "rooms/a", True),
        ("rooms/?", "rooms/ab", False),
        ("**", "anything/at/all", True),
        ("*", "a/b", False),
        ("a.b", "aXb", False),
    ],
)
def test_patterns_are_globs_over_segments(pattern: str, channel: str, expected: bool) -> None:
    assert matches(channel, [pattern]) is expected


# -- keys --------------------------------------------------------------------------------------


def test_a_key_is_configured_as_its_hash() -> None:
    hashed = hash_key(KEY)
    assert hashed.startswith("sha256:") and KEY not in hashed
    assert hash_key(hashed) == hashed


def test_an_open_service_lets_everyone_do_everything() -> None:
    principal = Authenticator().authenticate(connection())
    assert principal.anonymous and principal.subject == "ip:10.0.0.7"
    assert principal.may_publish("any/thing") and principal.may_subscribe("internal/x")


@pytest.mark.parametrize(
    "where",
    [
        {"headers": bearer(KEY)},
        {"headers": {"X-API-Key": KEY}},
        {"headers": {"Cookie": f"sse_token={KEY}"}},
        {"query": f"access_token={KEY}"},
    ],
)
def test_an_api_key_is_accepted_from_every_place(where: dict[str, Any]) -> None:
    principal = secured().authenticate(connection(**where))
    assert not principal.anonymous
    assert principal.subject.startswith("key:")
    assert principal.may_publish("anything") and principal.may_subscribe("internal/x")


def test_a_configured_hash_accepts_its_key() -> None:
    auth = Authenticator(key_hashes=frozenset({hash_key(KEY)}))
    assert not auth.authenticate(connection(bearer(KEY))).anonymous


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(Unauthorized):
        Authenticator(key_hashes=frozenset({hash_key(KEY)})).authenticate(
            connection(bearer("wrong"))
        )


@pytest.mark.parametrize(
    "where",
    [{"headers": {"Cookie": f"sse_token={KEY}"}}, {"query": f"access_token={KEY}"}],
    ids=["cookie", "query"],
)
def test_a_write_never_takes_its_credential_from_a_cookie_or_the_query(
    where: dict[str, Any],
) -> None:
    with pytest.raises(Unauthorized, match="reads only"):
        secured().authenticate(connection(method="POST", **where))


def test_a_write_takes_its_credential_from_a_header_whatever_the_cookie_says() -> None:
    cookie = {"Cookie": "sse_token=stale"}
    for header in (bearer(KEY), {"X-API-Key": KEY}):
        principal = secured().authenticate(connection({**cookie, **header}, method="POST"))
        assert not principal.anonymous


def test_query_tokens_can_be_switched_off() -> None:
    auth = secured(query_tokens=False)
    principal = auth.authenticate(connection(query=f"access_token={KEY}"))
    assert principal.anonymous


def test_a_non_bearer_authorization_is_refused() -> None:
    with pytest.raises(Unauthorized):
        secured().authenticate(connection({"Authorization": "Basic dXNlcjpwYXNz"}))


# -- tokens ------------------------------------------------------------------------------------


def test_a_token_grants_its_patterns() -> None:
    token = mint_token(SECRET, "ana", publish=["tasks/*"], subscribe=["rooms/**"], ttl=60)
    principal = secured().authenticate(connection(bearer(token)))
    assert principal.subject == "sub:ana" and not principal.anonymous
    assert principal.may_publish("tasks/1") and not principal.may_publish("tasks/1/x")
    assert principal.may_subscribe("rooms/a/b") and not principal.may_subscribe("tasks/1")
    assert principal.may_subscribe("public/news"), "public patterns stay open to token holders"
    assert principal.expires_at is not None and principal.expires_at > time.time()


def test_closed_patterns_refuse_even_a_granted_token() -> None:
    token = mint_token(SECRET, "ana", subscribe=["**"], ttl=60)
    principal = secured().authenticate(connection(bearer(token)))
    assert principal.may_subscribe("rooms/x")
    assert not principal.may_subscribe("internal/audit")


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "a", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256"),
        jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"),
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none"),
        jwt.encode(
            {"sub": "a", "exp": int(time.time()) + 60, "sse": {"publish": "**"}},
            SECRET,
            algorithm="HS256",
        ),
        jwt.encode(
            {"sub": "a", "exp": int(time.time()) + 60, "sse": ["x"]}, SECRET, algorithm="HS256"
        ),
        "not.a.token",
        jwt.encode({"sub": "a", "exp": 10**400}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "a" * 201, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": 42, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "a", "exp": "soon"}, SECRET, algorithm="HS256"),
        jwt.encode(
            {"sub": "a", "exp": int(time.time()) + 60, "sse": {"subscribe": [""]}},
            SECRET,
            algorithm="HS256",
        ),
    ],
    ids=[
        "expired",
        "bad-signature",
        "no-exp",
        "no-sub",
        "alg-none",
        "grant-not-list",
        "sse-not-object",
        "garbage",
        "exp-out-of-range",
        "empty-sub",
        "sub-too-long",
        "sub-not-text",
        "exp-not-a-number",
        "empty-pattern",
    ],
)
def test_a_bad_token_is_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        secured().authenticate(connection(bearer(token)))


def test_a_token_for_another_audience_is_refused() -> None:
    token = mint_token(SECRET, "a", audience="other", ttl=60)
    with pytest.raises(Unauthorized):
        secured(jwt_audience="sse").authenticate(connection(bearer(token)))
    ok = mint_token(SECRET, "a", audience="sse", ttl=60)
    assert not secured(jwt_audience="sse").authenticate(connection(bearer(ok))).anonymous


# -- anonymous clients when credentials are configured ---------------------------------------


def test_without_a_credential_only_public_channels_are_open() -> None:
    principal = secured().authenticate(connection())
    assert principal.anonymous
    assert principal.may_subscribe("public/news")
    assert not principal.may_subscribe("rooms/x")
    assert not principal.may_publish("public/news")


def test_refusals_are_401_without_a_credential_and_403_without_a_grant() -> None:
    anonymous = secured().authenticate(connection())
    with pytest.raises(Unauthorized):
        require_publish(anonymous, "public/news")
    with pytest.raises(Unauthorized):
        require_subscribe(anonymous, ["rooms/x"])
    token = mint_token(SECRET, "ana", subscribe=["rooms/*"], ttl=60)
    holder = secured().authenticate(connection(bearer(token)))
    with pytest.raises(Forbidden):
        require_publish(holder, "rooms/a")
    with pytest.raises(Forbidden):
        require_subscribe(holder, ["rooms/a", "tasks/1"])
    require_subscribe(holder, ["rooms/a", "public/x"])


def test_a_principal_is_a_plain_value() -> None:
    principal = Principal("sub:x", publish=("a/*",), subscribe=())
    assert principal.may_publish("a/b") and not principal.may_subscribe("a/b")


# -- settings ------------------------------------------------------------------------------------


def test_plain_keys_are_hashed_as_the_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_API_KEYS", f"{KEY}, {hash_key('other-key-0123')}")
    settings = Settings()
    assert settings.api_keys == [hash_key(KEY), hash_key("other-key-0123")]
    assert KEY not in repr(settings)


def test_a_short_jwt_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_JWT_SECRET", "short")
    with pytest.raises(ValidationError):
        Settings()


def test_a_deployment_refuses_to_start_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_ALLOW_ANONYMOUS", "false")
    with pytest.raises(ValidationError, match="refusing to start an open service"):
        Settings()
    monkeypatch.setenv("SSE_API_KEYS", hash_key(KEY))
    assert Settings().api_keys == [hash_key(KEY)]


def test_any_origin_with_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_CORS_ORIGINS", "*")
    with pytest.raises(ValidationError, match="every site"):
        Settings()
    monkeypatch.setenv("SSE_CORS_CREDENTIALS", "false")
    assert Settings().cors_origins == ["*"]
