"""What operators see: Prometheus metrics, request ids, structured JSON logs.

Metrics live in a registry per service (not prometheus-client's global one), so several apps
in one process (tests, one Lambda per family) never share or double-register counters.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .events import NewEvent
from .stores.base import Appended, ChannelState, EventStore, ReadResult

__all__ = [
    "InstrumentedStore",
    "Metrics",
    "RequestContext",
    "configure_logging",
    "request_id",
]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_INCOMING_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_log = logging.getLogger("serverless_sse.access")


class Metrics:
    """The service's metrics (``GET /metrics``)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.open_streams = Gauge("sse_open_streams", "Streams open now", registry=registry)
        self.feeds = Gauge(
            "sse_channel_feeds",
            "Channels this process follows in the store (one shared reader each)",
            registry=registry,
        )
        # What must come back down once clients leave: a count that only grows is a leak.
        self.tasks = Gauge(
            "sse_event_loop_tasks", "asyncio tasks alive in the event loop", registry=registry
        )
        self.tasks.set_function(_loop_tasks)
        # The process's memory, open descriptors and CPU (process_* metrics, from /proc).
        ProcessCollector(registry=registry)
        self.streams = Counter(
            "sse_streams", "Streams ended, by how they ended", ["ended_by"], registry=registry
        )
        self.reconnects = Counter(
            "sse_reconnects", "Streams opened with a cursor (resumes)", registry=registry
        )
        self.published = Counter(
            "sse_events_published", "Events stored (idempotent repeats excluded)", registry=registry
        )
        self.delivered = Counter(
            "sse_events_delivered",
            "Events written to streams (counted as streams end)",
            registry=registry,
        )
        self.resets = Counter(
            "sse_resets", "reset events sent, by reason", ["reason"], registry=registry
        )
        self.rejections = Counter(
            "sse_rejections",
            "Requests answered with an error, by status",
            ["status"],
            registry=registry,
        )
        self.store_seconds = Histogram(
            "sse_store_seconds",
            "Store call latency, by operation",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=registry,
        )
        self.store_errors = Counter(
            "sse_store_errors",
            "Store calls that failed, by operation",
            ["operation"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _loop_tasks() -> float:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # rendered outside the event loop's thread: not known there
        return math.nan


class InstrumentedStore(EventStore):
    """Times every call of the store it wraps and counts what was published.

    Waiting reads (``wait > 0``) are timed separately (``read_wait``): their duration is how
    long nothing happened, not the store's latency.
    """

    def __init__(self, inner: EventStore, metrics: Metrics) -> None:
        self.inner = inner
        self.scheme = inner.scheme
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (test hooks, admin helpers) stay reachable.
        return getattr(self.inner, name)

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        except Exception:
            self._metrics.store_errors.labels(operation).inc()
            raise
        finally:
            self._metrics.store_seconds.labels(operation).observe(time.perf_counter() - started)

    async def append(self, channel: str, events: Sequence[NewEvent]) -> list[Appended]:
        results: list[Appended] = await self._timed("append", self.inner.append(channel, events))
        self._metrics.published.inc(sum(not r.duplicate for r in results))
        return results

    async def read(
        self, channel: str, after: int, *, limit: int, wait: float = 0.0, epoch: str = ""
    ) -> ReadResult:
        operation = "read_wait" if wait > 0 else "read"
        call = self.inner.read(channel, after, limit=limit, wait=wait, epoch=epoch)
        result: ReadResult = await self._timed(operation, call)
        return result

    async def state(self, channel: str) -> ChannelState:
        result: ChannelState = await self._timed("state", self.inner.state(channel))
        return result

    async def states(self, channels: Sequence[str]) -> list[ChannelState]:
        result: list[ChannelState] = await self._timed("states", self.inner.states(channels))
        return result

    async def close(self, channel: str, final: NewEvent) -> Appended:
        result: Appended = await self._timed("close", self.inner.close(channel, final))
        self._metrics.published.inc()
        return result

    async def get_value(self, key: str) -> str | None:
        result: str | None = await self._timed("get_value", self.inner.get_value(key))
        return result

    async def put_value(
        self, key: str, value: str, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        call = self.inner.put_value(key, value, ttl=ttl, only_if_absent=only_if_absent)
        result: bool = await self._timed("put_value", call)
        return result

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        result: int = await self._timed("increment", self.inner.increment(key, amount, ttl=ttl))
        return result

    async def delete_value(self, key: str) -> None:
        await self._timed("delete_value", self.inner.delete_value(key))

    async def acquire_lease(self, group: str, holder: str, *, limit: int, ttl: float) -> bool:
        call = self.inner.acquire_lease(group, holder, limit=limit, ttl=ttl)
        result: bool = await self._timed("acquire_lease", call)
        return result

    async def release_lease(self, group: str, holder: str) -> None:
        await self._timed("release_lease", self.inner.release_lease(group, holder))

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def aclose(self) -> None:
        await self.inner.aclose()


class RequestContext:
    """Outermost middleware: a request id for every request (``X-Request-ID`` in and out),
    size limits on the request line and headers, one JSON access log line, rejection counts."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_url_bytes: int) -> None:
        self.app = app
        self._max_header = max_header_bytes
        self._max_url = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        rid = incoming if _INCOMING_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if status >= 400:
                    metrics = _metrics_of(scope)
                    if metrics is not None:
                        metrics.rejections.labels(str(status)).inc()
            await send(message)

        try:
            url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(
                scope.get("query_string", b"")
            )
            if header_bytes > self._max_header:
                await _refuse(
                    send_with_id,
                    431,
                    "headers_too_large",
                    f"request headers over {self._max_header} bytes",
                )
            elif url_bytes > self._max_url:
                await _refuse(
                    send_with_id, 414, "uri_too_long", f"request target over {self._max_url} bytes"
                )
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("-", 0))[0],
                    "principal": getattr(
                        (scope.get("state") or {}).get("principal"), "subject", None
                    ),
                },
            )
            request_id.reset(token)


def _metrics_of(scope: Scope) -> Metrics | None:
    app = scope.get("app")
    service = getattr(getattr(app, "state", None), "service", None)
    metrics = getattr(service, "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(*, json_logs: bool, level: str) -> None:
    """Send the service's logs (``serverless_sse.*``) to stderr, one JSON object a line.

    Called when the app starts, never at import time. Idempotent.
    """
    logger = logging.getLogger("serverless_sse")
    logger.setLevel(level.upper())
    if any(getattr(h, "_serverless_sse", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._serverless_sse = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    if json_logs:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    logger.addHandler(handler)
    logger.propagate = False
