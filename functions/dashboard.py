"""The live dashboard (issue 5, part 6): one page at ``/`` and its static files.

Plain HTML, CSS and JavaScript modules under ``functions/static/``, no build step and nothing
from another origin: the page follows the fleet, a task and a chat room with the browser's own
``EventSource``, and reads the group chat's POST answer with ``fetch`` and a stream reader.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.service import create_app

STATIC = Path(__file__).resolve().parent / "static"

# Everything the page loads comes from this origin; nothing is inline, so no script or style
# can be injected through data the page shows (it also only ever sets text, never markup).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# The files change with each release and carry no version in their names: a browser may keep
# them, but asks (with their ETag, answered by a 304) before using them again.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


class StaticAssets(StaticFiles):
    """The page's scripts, styles and icon, revalidated on every use."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response


async def page(request: Request) -> Response:
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


routes = [
    Route("/", page, methods=["GET"]),
    Mount("/static", StaticAssets(directory=STATIC, check_dir=False), name="static"),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
