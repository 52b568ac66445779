"""Who is asking, and what they may do: the one authorization hook every endpoint calls.

Every handler gets a :class:`Principal` from :func:`authenticate` and checks it with
:func:`require_publish` / :func:`require_subscribe` before it touches a channel.

Credentials (DESIGN.md, "Security and limits"):

- **API keys**, configured as SHA-256 hashes (``sha256:<hex>``; a plain key in the settings is
  hashed when the settings are read, so no key is kept in memory as plain text). A key may
  publish and subscribe everywhere.
- **HS256 JWTs** with ``sub``, ``exp`` and ``sse: {"publish": [...], "subscribe": [...]}``.

A credential comes from ``Authorization: Bearer``, ``X-API-Key``, the ``sse_token`` cookie, or
(unless switched off) the ``access_token`` query parameter, because a browser's EventSource
cannot set headers. The last two are for reads (GET) only: see ``Authenticator._credential``.

Channel patterns are globs over whole names (:mod:`.patterns`): ``*`` matches within one ``/``
segment, ``**`` across segments, ``?`` one character: ``tasks/*`` covers ``tasks/42`` but not
``tasks/42/log``; ``tasks/**`` covers both.

With no credentials configured the service is open (the local default): everyone may publish
and subscribe everywhere, and the principal is the anonymous client, known by its address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from .errors import Forbidden, Unauthorized
from .patterns import matches

__all__ = [
    "Authenticator",
    "Principal",
    "authenticate",
    "client_address",
    "hash_key",
    "mint_token",
    "require_publish",
    "require_subscribe",
]

_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_READS = frozenset({"GET", "HEAD"})
_MAX_SUBJECT = 200
_LATEST_EXPIRY = 253_402_300_799  # 9999-12-31T23:59:59Z; beyond, a float loses seconds


@dataclass(frozen=True, slots=True)
class Principal:
    """A client: its identity (for caps and logs) and what it may do.

    ``subscribe``/``publish`` are the patterns it may use; ``deny_subscribe`` are patterns
    closed to it whatever it was granted. ``anonymous`` is true when no credential was shown
    (a refusal is then 401, "show a credential", rather than 403).
    """

    subject: str
    publish: tuple[str, ...] = ("**",)
    subscribe: tuple[str, ...] = ("**",)
    deny_subscribe: tuple[str, ...] = ()
    expires_at: float | None = None
    anonymous: bool = True

    def may_publish(self, channel: str) -> bool:
        return matches(channel, self.publish)

    def may_subscribe(self, channel: str) -> bool:
        return matches(channel, self.subscribe) and not matches(channel, self.deny_subscribe)


def hash_key(key: str) -> str:
    """The form an API key is configured in: ``sha256:<hex>``."""
    if _KEY_HASH.fullmatch(key):
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def mint_token(
    secret: str,
    subject: str,
    *,
    publish: Sequence[str] = (),
    subscribe: Sequence[str] = (),
    ttl: float = 3600,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token granting ``publish``/``subscribe`` channel patterns for ``ttl`` seconds."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "exp": now + int(ttl),
        "sse": {"publish": list(publish), "subscribe": list(subscribe)},
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def client_address(connection: HTTPConnection) -> str:
    client = connection.client
    return client.host if client is not None else "unknown"


@dataclass(frozen=True)
class Authenticator:
    """Turns a request's credential into a :class:`Principal`, by the configured rules."""

    key_hashes: frozenset[str] = frozenset()
    jwt_secret: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    public_subscribe: tuple[str, ...] = ()
    closed_subscribe: tuple[str, ...] = ()
    query_tokens: bool = True
    _hashes_bytes: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hashes_bytes", tuple(h.encode() for h in self.key_hashes))

    @property
    def open(self) -> bool:
        """No credentials configured: everyone may do everything."""
        return not self.key_hashes and not self.jwt_secret

    def authenticate(self, connection: HTTPConnection) -> Principal:
        address = client_address(connection)
        if self.open:
            return Principal(subject=f"ip:{address}")
        credential = self._credential(connection)
        if credential is None:
            return Principal(
                subject=f"ip:{address}",
                publish=(),
                subscribe=self.public_subscribe,
                deny_subscribe=self.closed_subscribe,
            )
        if self._is_key(credential):
            digest = hash_key(credential)
            return Principal(subject=f"key:{digest[7:19]}", anonymous=False)
        return self._from_token(credential)

    def _credential(self, connection: HTTPConnection) -> str | None:
        authorization = connection.headers.get("authorization")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <token>'")
            return value.strip()
        key = connection.headers.get("x-api-key")
        if key:
            return key.strip()
        cookie = connection.cookies.get("sse_token")
        query = connection.query_params.get("access_token") if self.query_tokens else None
        if not cookie and not query:
            return None
        # The cookie and the query form exist for EventSource, which only reads. A browser
        # sends the cookie with any cross-site form post too, so accepting it on a write would
        # let another site publish with its visitor's grants (CSRF); and a query string ends
        # up in logs. A form cannot set a header, so writes take their credential from one.
        if connection.scope.get("method", "GET") not in _READS:
            raise Unauthorized(
                "a write takes its credential from the Authorization or X-API-Key header; "
                "the sse_token cookie and ?access_token= are accepted on reads only"
            )
        return cookie or query

    def _is_key(self, credential: str) -> bool:
        digest = hash_key(credential).encode()
        # Compare against every configured hash, always: no early exit to time.
        found = False
        for known in self._hashes_bytes:
            found |= hmac.compare_digest(digest, known)
        return found

    def _from_token(self, token: str) -> Principal:
        if not self.jwt_secret:
            raise Unauthorized("unknown API key")
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                audience=self.jwt_audience,
                issuer=self.jwt_issuer,
                options={"require": ["exp", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid credential: {exc}") from None
        grants = claims.get("sse") or {}
        if not isinstance(grants, dict):
            raise Unauthorized("the token's 'sse' claim must be an object")
        publish = _patterns(grants.get("publish", []))
        subscribe = _patterns(grants.get("subscribe", []))
        # The subject names the client in caps (store keys) and logs: bounded, like a channel.
        subject = claims["sub"]
        if not 0 < len(subject) <= _MAX_SUBJECT:
            raise Unauthorized(f"the token's 'sub' must be 1-{_MAX_SUBJECT} characters")
        expires = claims["exp"]  # PyJWT checked that it is a whole number, and not past
        if expires > _LATEST_EXPIRY:
            raise Unauthorized("the token's 'exp' is out of range")
        return Principal(
            subject=f"sub:{subject}",
            publish=publish,
            subscribe=subscribe + self.public_subscribe,
            deny_subscribe=self.closed_subscribe,
            expires_at=float(expires),
            anonymous=False,
        )


def _patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise Unauthorized("token grants must be lists of channel patterns")
    return tuple(value)


_OPEN = Authenticator()


async def authenticate(connection: HTTPConnection) -> Principal:
    """The principal making this request, remembered on the request for later steps (caps)."""
    cached = connection.scope.get("state", {}).get("principal")
    if isinstance(cached, Principal):
        return cached
    service = getattr(connection.app.state, "service", None)
    authenticator: Authenticator = getattr(service, "auth", _OPEN)
    principal = authenticator.authenticate(connection)
    connection.state.principal = principal
    return principal


def require_publish(principal: Principal, channel: str) -> None:
    """Refuse (401 without a credential, 403 without a grant) unless ``channel`` may be
    published to."""
    if not principal.may_publish(channel):
        if principal.anonymous:
            raise Unauthorized("publishing needs a credential")
        raise Forbidden(f"not allowed to publish to {channel!r}")


def require_subscribe(principal: Principal, channels: Iterable[str]) -> None:
    """Refuse (401/403) unless every one of ``channels`` may be subscribed to."""
    for channel in channels:
        if not principal.may_subscribe(channel):
            if principal.anonymous:
                raise Unauthorized(f"subscribing to {channel!r} needs a credential")
            raise Forbidden(f"not allowed to subscribe to {channel!r}")
