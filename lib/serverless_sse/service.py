"""The running service: settings, the store, the fan-out registry and the open windows, owned
by the app's lifespan; and :func:`create_app`, which every function module uses to become an
ASGI app (locally under uvicorn, on Lambda under the Web Adapter or Mangum)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import BaseRoute

from .errors import SSEError
from .events import EventFormat
from .fanout import FeedRegistry
from .http import handle_http_exception, handle_sse_error, handle_unexpected
from .responses import EventStreamResponse
from .settings import Settings
from .stores import EventStore, open_store
from .window import StreamPlan, StreamWindow, Synthetic, Ticker, jittered

__all__ = ["Service", "create_app", "service_of"]


class Service:
    """Everything a request handler needs, created once per process."""

    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.feeds = FeedRegistry(store, buffer_events=settings.feed_buffer_events)
        self.windows: set[StreamWindow] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        return cls(settings, open_store(settings.store, settings))

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
    ) -> EventStreamResponse:
        """The streaming response for a planned stream (``prelude``: events it sends first;
        ``ticker``: periodic computed events)."""
        settings = self.settings
        stream_window = StreamWindow(
            store=self.store,
            feeds=self.feeds,
            plan=plan,
            fmt=fmt,
            duration=self.window_seconds(window),
            heartbeat=settings.heartbeat_seconds,
            retry_ms=settings.retry_ms,
            max_lag=settings.max_lag_events,
            prelude=prelude,
            ticker=ticker,
        )
        self.windows.add(stream_window)
        return EventStreamResponse(stream_window, on_close=self.windows.discard)

    def shutdown_streams(self) -> None:
        """End every open stream with ``timeout`` now, so its client resumes elsewhere."""
        for window in list(self.windows):
            window.shutdown()

    async def aclose(self) -> None:
        self.shutdown_streams()
        await self.feeds.aclose()
        await self.store.aclose()


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def create_app(
    routes: Sequence[BaseRoute],
    *,
    settings: Settings | None = None,
    service: Service | None = None,
) -> Starlette:
    """An ASGI app serving ``routes`` with the service's lifespan, JSON errors and CORS."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        current = service or Service.from_settings(settings or Settings())
        app.state.service = current
        try:
            yield
        finally:
            await current.aclose()

    cfg = service.settings if service is not None else (settings or Settings())
    middleware = []
    if cfg.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=cfg.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-API-Key"],
                allow_credentials=True,
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
