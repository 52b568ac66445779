"""The running service: settings, the store, the job queue, the fan-out registry and the open
windows, owned by the app's lifespan; and :func:`create_app`, which every function module uses
to become an ASGI app (locally under uvicorn, on Lambda under the Web Adapter or Mangum)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute
from starlette.types import Scope

from .auth import Authenticator, Principal, authenticate, hash_key
from .errors import SSEError, Unauthorized
from .events import EventFormat
from .exit_signals import on_exit_signal
from .fanout import FeedRegistry
from .http import CORS, handle_http_exception, handle_sse_error, handle_unexpected
from .limits import PublishRate, StreamLeases
from .observability import InstrumentedStore, Metrics, RequestContext, configure_logging
from .queues import JobQueue, open_queue
from .queues.memory import MemoryQueue
from .responses import EventStreamResponse
from .settings import Settings
from .stores import EventStore, open_store
from .window import EventTest, StreamPlan, StreamWindow, Synthetic, Ticker, jittered

__all__ = ["Background", "Service", "create_app", "service_of"]

log = logging.getLogger(__name__)


class Service:
    """Everything a request handler needs, created once per process."""

    def __init__(
        self, settings: Settings, store: EventStore, queue: JobQueue | None = None
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store: EventStore = InstrumentedStore(store, self.metrics)
        self.feeds = FeedRegistry(self.store, buffer_events=settings.feed_buffer_events)
        self.metrics.feeds.set_function(lambda: len(self.feeds))
        self.queue: JobQueue = queue or MemoryQueue(visibility=settings.queue_visibility_seconds)
        self.windows: set[StreamWindow] = set()
        self.stopping = False
        """The server is stopping: open streams were ended, new ones end at once."""
        self.auth = Authenticator(
            key_hashes=frozenset(hash_key(k) for k in settings.api_keys),
            jwt_secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            jwt_audience=settings.jwt_audience,
            jwt_issuer=settings.jwt_issuer,
            public_subscribe=tuple(settings.public_subscribe),
            closed_subscribe=tuple(settings.closed_subscribe),
            query_tokens=settings.query_tokens,
        )
        self.stream_leases = StreamLeases(
            self.store, limit=settings.max_streams_per_client, lease_seconds=settings.lease_seconds
        )
        self.publish_rate = PublishRate(self.store, per_second=settings.publish_rate_per_client)

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        return cls(
            settings, open_store(settings.store, settings), open_queue(settings.queue, settings)
        )

    def window_seconds(self, requested: float | None) -> float:
        """This connection's window: ``?window=`` may shorten the configured one, never
        lengthen it; jittered ±10 % so that clients spread their reconnects."""
        limit = self.settings.window_seconds
        base = limit if requested is None else min(requested, limit)
        return jittered(base, jitter=self.settings.window_jitter, limit=limit)

    def stream(
        self,
        plan: StreamPlan,
        *,
        fmt: EventFormat,
        window: float | None = None,
        prelude: Sequence[Synthetic] = (),
        ticker: Ticker | None = None,
        select: EventTest | None = None,
        until: EventTest | None = None,
        epilogue: bytes = b"",
        timeout_payload: Mapping[str, Any] | None = None,
        duration: float | None = None,
    ) -> EventStreamResponse:
        """The streaming response for a planned stream (the options are
        :class:`StreamWindow`'s). ``window`` is the client's ``?window=``; ``duration``
        instead sets exactly how long the stream may last, for a stream that waits for one
        outcome (it is not jittered, and still never longer than the configured window)."""
        settings = self.settings
        if duration is not None:
            length = min(duration, settings.window_seconds)
        else:
            length = self.window_seconds(window)
        stream_window = StreamWindow(
            store=self.store,
            feeds=self.feeds,
            plan=plan,
            fmt=fmt,
            duration=length,
            heartbeat=settings.heartbeat_seconds,
            retry_ms=settings.retry_ms,
            max_lag=settings.max_lag_events,
            prelude=prelude,
            ticker=ticker,
            select=select,
            until=until,
            epilogue=epilogue,
            timeout_payload=timeout_payload,
        )
        if plan.resumed:
            self.metrics.reconnects.inc()
        return EventStreamResponse(stream_window, admit=self._admit, on_close=self._closed)

    def buffered(self, scope: Scope) -> bool:
        """Whether the platform delivers this request's response only once it is complete,
        so that a stream must answer as a long-poll: always with ``SSE_MODE=buffered``, never
        with ``stream``, and with ``auto`` when Mangum runs the app (it puts the Lambda event in
        the ASGI scope as ``aws.event``; the Lambda Web Adapter and uvicorn stream)."""
        mode = self.settings.mode
        return mode == "buffered" or (mode == "auto" and "aws.event" in scope)

    async def _admit(self, scope: Scope, window: StreamWindow) -> Callable[[], Awaitable[None]]:
        """Before the first byte: the response mode (a long-poll where the platform buffers),
        the client's stream cap, and a token's expiry bounding the window. Raises 401/429
        (answered as JSON, nothing streamed)."""
        if self.buffered(scope):
            settings = self.settings
            wait = settings.buffered_wait_seconds
            window.buffer(
                # Jittered downwards only: never past the wait, which stays below the 30 s cut.
                wait=jittered(wait, jitter=settings.window_jitter, limit=wait),
                retry_ms=settings.buffered_retry_ms,
                max_bytes=settings.buffered_max_bytes,
            )
        state = scope.get("state") or {}
        principal = state.get("principal")
        if not isinstance(principal, Principal):
            principal = self.auth.authenticate(HTTPConnection(scope))
        if principal.expires_at is not None:
            left = principal.expires_at - time.time()
            if left <= 0:
                raise Unauthorized("the token has expired")
            window.duration = min(window.duration, left)
        lease = await self.stream_leases.acquire(principal.subject)
        if self.stopping:
            # Admitted between the exit signal and the listener's close: the client goes
            # elsewhere at once, from where this stream would have started.
            window.shutdown()
        self.windows.add(window)
        self.metrics.open_streams.inc()

        async def release() -> None:
            self.metrics.open_streams.dec()
            await self.stream_leases.release(lease)

        return release

    def _closed(self, window: StreamWindow) -> None:
        self.windows.discard(window)
        metrics = self.metrics
        metrics.streams.labels(window.ended_by or "unknown").inc()
        metrics.delivered.inc(window.delivered)
        for reason, count in window.resets.items():
            metrics.resets.labels(reason).inc(count)

    async def charge_publish(self, connection: HTTPConnection, events: int = 1) -> None:
        """Count published events against the client's rate cap (429 when over it)."""
        principal = await authenticate(connection)
        await self.publish_rate.charge(principal.subject, events)

    def shutdown_streams(self) -> None:
        """End every open stream with ``timeout`` now, so its client resumes elsewhere, and
        every stream opened from now on at once. Called when the server is told to stop (see
        :mod:`.exit_signals`), and again as the app shuts down."""
        self.stopping = True
        for window in list(self.windows):
            window.shutdown()

    async def aclose(self) -> None:
        self.shutdown_streams()
        await self.stream_leases.aclose()
        await self.feeds.aclose()
        await self.queue.aclose()
        await self.store.aclose()


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work stopped", exc_info=task.exception())


Background = Callable[[Service], Coroutine[Any, Any, None]]
"""Work that runs beside the app's requests for as long as it serves (the in-process worker).
It is cancelled when the app stops."""


def create_app(
    routes: Sequence[BaseRoute],
    *,
    settings: Settings | None = None,
    service: Service | None = None,
    background: Sequence[Background] = (),
) -> Starlette:
    """An ASGI app serving ``routes`` with the service's lifespan, JSON errors and CORS, and
    running ``background`` work beside them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        current = service or Service.from_settings(cfg)
        configure_logging(json_logs=cfg.log_json, level=cfg.log_level)
        app.state.service = current
        # The server waits for open responses before it runs the shutdown below: streams must
        # learn of the exit signal itself, or they would hold the process to their window's end.
        stop_watching = on_exit_signal(current.shutdown_streams)
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(work(current)) for work in background
        ]
        for task in tasks:
            task.add_done_callback(_report_crash)
        try:
            yield
        finally:
            stop_watching()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await current.aclose()

    cfg = service.settings if service is not None else (settings or Settings())
    middleware = [
        Middleware(
            RequestContext, max_header_bytes=cfg.max_header_bytes, max_url_bytes=cfg.max_url_bytes
        )
    ]
    if cfg.cors_origins:
        middleware.append(
            Middleware(
                CORS,
                allow_origins=cfg.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Idempotency-Key",
                    "Last-Event-ID",
                    "X-API-Key",
                    "X-Request-ID",
                ],
                # Readable by the page's script: how long to back off after a 429, and which
                # request to quote in a bug report.
                expose_headers=["Retry-After", "X-Request-ID"],
                allow_credentials=cfg.cors_credentials,
                max_age=600,
            )
        )
    handlers: dict[Any, Any] = {
        SSEError: handle_sse_error,
        HTTPException: handle_http_exception,
        Exception: handle_unexpected,
    }
    return Starlette(
        routes=list(routes), middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )
