"""The whole service as one ASGI app: ``uvicorn functions.app:app``."""

from __future__ import annotations

from serverless_sse.service import create_app

from . import channels, metrics, tasks

routes = [*channels.routes, *metrics.routes, *tasks.routes]

app = create_app(routes)
