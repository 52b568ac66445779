"""Who is asking, and what they may do: the one authorization hook every endpoint calls.

Every handler gets a :class:`Principal` from :func:`authenticate` and checks it with
:func:`require_publish` / :func:`require_subscribe` before it touches a channel. With no
credentials configured (the local default) the service is open: everyone may publish and
subscribe everywhere, and the principal is the anonymous client, identified by its address.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request

from .errors import Forbidden

__all__ = ["Principal", "authenticate", "require_publish", "require_subscribe"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A client: its identity (for caps and logs) and the channel patterns it was granted.

    Patterns are globs over whole channel names (``tasks/*``, ``rooms/lobby``, ``*``).
    """

    subject: str
    publish: tuple[str, ...] = ("*",)
    subscribe: tuple[str, ...] = ("*",)
    expires_at: float | None = None
    anonymous: bool = True

    def may_publish(self, channel: str) -> bool:
        return _matches(channel, self.publish)

    def may_subscribe(self, channel: str) -> bool:
        return _matches(channel, self.subscribe)


def _matches(channel: str, patterns: Iterable[str]) -> bool:
    return any(p == "*" or fnmatch.fnmatchcase(channel, p) for p in patterns)


def client_address(request: Request) -> str:
    client = request.client
    return client.host if client is not None else "unknown"


async def authenticate(request: Request) -> Principal:
    """The principal making ``request``. Open service: the anonymous client at its address."""
    return Principal(subject=f"ip:{client_address(request)}")


def require_publish(principal: Principal, channel: str) -> None:
    if not principal.may_publish(channel):
        raise Forbidden(f"not allowed to publish to {channel!r}")


def require_subscribe(principal: Principal, channels: Iterable[str]) -> None:
    for channel in channels:
        if not principal.may_subscribe(channel):
            raise Forbidden(f"not allowed to subscribe to {channel!r}")
