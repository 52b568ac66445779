"""A minimal SSE reader for tests: httpx for the bytes, the project's decoder for the rest.

It does exactly one request per call (no reconnects): tests decide when and how to resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from serverless_sse.protocol import Comment, EventStreamDecoder, ServerSentEvent


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    events: list[ServerSentEvent] = field(default_factory=list)
    comments: list[tuple[float, Comment]] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    body: bytes = b""
    first_byte_after: float | None = None

    def of_type(self, event_type: str) -> list[ServerSentEvent]:
        return [e for e in self.events if e.type == event_type]

    def data(self, event_type: str = "message") -> list[Any]:
        return [json.loads(e.data) for e in self.of_type(event_type)]

    @property
    def ended_with(self) -> str:
        return self.events[-1].type if self.events else ""


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    max_seconds: float = 30.0,
    stop_after_events: int | None = None,
    method: str = "GET",
    json_body: Any = None,
    stop_when: Callable[[ServerSentEvent], bool] | None = None,
) -> StreamResult:
    """Read one response to its end (or until ``stop_after_events`` events, then hang up).

    ``method`` and ``json_body`` read a stream that answers a POST (the group chat's);
    ``stop_when`` hangs up after the first event it accepts."""
    request_headers = dict(headers or {})
    if last_event_id:
        request_headers["Last-Event-ID"] = last_event_id
    started = time.monotonic()
    async with client.stream(
        method, url, headers=request_headers, json=json_body, timeout=httpx.Timeout(max_seconds)
    ) as response:
        result = StreamResult(response.status_code, response.headers)
        if response.status_code != 200:
            result.body = await response.aread()
            return result
        decoder = EventStreamDecoder()
        async for chunk in response.aiter_raw():
            if result.first_byte_after is None:
                result.first_byte_after = time.monotonic() - started
            stop = False
            for item in decoder.feed(chunk):
                if isinstance(item, Comment):
                    result.comments.append((time.monotonic() - started, item))
                else:
                    result.events.append(item)
                    stop = stop or (stop_when is not None and stop_when(item))
            if stop_after_events is not None and len(result.events) >= stop_after_events:
                break
            if stop:
                break
            if time.monotonic() - started > max_seconds:
                raise TimeoutError(f"stream {url} ran past {max_seconds}s")
        decoder.close()
        result.retry = decoder.retry
        result.last_event_id = decoder.last_event_id
        return result
