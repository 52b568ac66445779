"""Publishing from Python: :class:`Publisher` posts events to a channel, and retries what is
safe to retry.

``POST /channels/{channel}/events`` stores a batch all or nothing. A ``429`` or ``503`` stored
nothing, so it is retried (after ``Retry-After`` when given, else a backoff delay). A dropped
connection, a timeout, a ``502`` or a ``504`` may have come after the events were stored: such
a failure is retried only when every event of the batch carries an ``idempotency_key`` (the
service then stores it once however often it is sent), and raised otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ..events import validate_channel
from .backoff import Backoff, parse_retry_after
from .errors import ConnectionLost, PublishRefused

__all__ = ["Published", "Publisher"]

# Nothing was stored: always safe to send again.
_NOTHING_STORED = frozenset({429, 503})
# The request may have been served before the failure: safe again only with idempotency keys.
_MAYBE_STORED = frozenset({502, 504})


@dataclass(frozen=True, slots=True)
class Published:
    """An event the service stored: its cursor (``id``, to resume a stream after it) and its
    sequence number; ``duplicate`` when an idempotency key matched an event stored before."""

    id: str
    seq: int
    duplicate: bool = False


class Publisher:
    """Publishes to the service at ``base_url``.

    ::

        with Publisher("http://127.0.0.1:8000") as publisher:
            publisher.publish("rooms/lobby", {"text": "hello"}, type="chat")

    ``max_attempts`` counts every try of one request (1 never retries). ``sleep`` and ``clock``
    are how it waits and reads the time (tests replace them).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        timeout: httpx.Timeout | float | None = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be 1 or more")
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._client = client if client is not None else httpx.Client(follow_redirects=True)
        self._owns_client = client is None
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff(initial=0.5, maximum=10.0)
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        type: str = "message",
        idempotency_key: str | None = None,
    ) -> Published:
        """Store one event; ``data`` is any JSON value."""
        item: dict[str, Any] = {"type": type, "data": data}
        if idempotency_key is not None:
            item["idempotency_key"] = idempotency_key
        return self.publish_many(channel, [item])[0]

    def publish_many(self, channel: str, items: Sequence[Mapping[str, Any]]) -> list[Published]:
        """Store a batch all or nothing: each item is ``{"type", "data", "idempotency_key"}``
        as the endpoint takes it (``type`` and the key optional). The service bounds a batch
        (``SSE_MAX_BATCH_EVENTS``, 100 by default). A malformed channel name raises
        :class:`~serverless_sse.errors.InvalidChannel` before anything is sent."""
        # Channel names are URL-safe by construction: validated, they go in the path as is.
        url = f"{self.base_url}/channels/{validate_channel(channel)}/events"
        body = list(items)
        keyed = all(isinstance(item.get("idempotency_key"), str) for item in body)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.post(
                    url, json=body, headers=self._headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                if not keyed or attempt >= self._max_attempts:
                    lost = ConnectionLost(f"{type(exc).__name__}: {exc}")
                    raise lost from exc
                self._sleep(self._backoff.delay(attempt))
                continue
            if response.status_code == 201:
                return [
                    Published(e["id"], e["seq"], bool(e.get("duplicate")))
                    for e in response.json()["events"]
                ]
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._clock())
            refused = PublishRefused(
                response.status_code,
                body=response.content,
                headers=response.headers,
                retry_after=retry_after,
            )
            status = response.status_code
            retryable = status in _NOTHING_STORED or (keyed and status in _MAYBE_STORED)
            if not retryable or attempt >= self._max_attempts:
                raise refused
            delay = retry_after if retry_after is not None else self._backoff.delay(attempt)
            self._sleep(delay)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
