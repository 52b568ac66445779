"""The whole service as one ASGI app: ``uvicorn functions.app:app``."""

from __future__ import annotations

from serverless_sse.jobs import in_process_worker
from serverless_sse.service import create_app

from . import channels, dashboard, groupchat, metrics, realtime, tasks

routes = [
    *channels.routes,
    *metrics.routes,
    *tasks.routes,
    *realtime.routes,
    *groupchat.routes,
    *dashboard.routes,
]

# Locally the answer worker runs in this process (SSE_WORKER=off when it runs elsewhere).
app = create_app(routes, background=[in_process_worker])
