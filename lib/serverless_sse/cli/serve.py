"""``serverless-sse serve``: the service under uvicorn, configured by the ``SSE_*`` settings."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_APP = "functions.app:app"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the service under uvicorn",
        description=(
            "Serve every endpoint with uvicorn. Settings come from SSE_* environment variables "
            "and .env (see README, Configuration); the app is looked up from the current "
            "directory, so run it from the project's checkout or pass --app."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--app", default=DEFAULT_APP, help=f"the ASGI app, module:attribute (default {DEFAULT_APP})"
    )
    parser.add_argument("--store", help="event store URL for this run (sets SSE_STORE)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--reload", action="store_true", help="restart when code changes")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import os
    import sys

    import uvicorn
    from pydantic import ValidationError

    from ..settings import Settings
    from .common import fail, note

    if args.store:
        os.environ["SSE_STORE"] = args.store
    try:
        settings = Settings()
    except ValidationError as exc:
        return fail(f"invalid settings:\n{exc}", 2)
    module = args.app.partition(":")[0]
    sys.path.insert(0, os.getcwd())
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        return fail(f"cannot import {module!r}: run from the project's directory or pass --app", 2)
    # Only the scheme: a store URL may carry a password.
    scheme = settings.store.partition("://")[0]
    note(f"serving {args.app} on http://{args.host}:{args.port} with the {scheme} store")
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        log_level=args.log_level,
        # The app writes its own access line (JSON, with the request id and without the query
        # string); uvicorn's would repeat it with the query, ?access_token= included.
        access_log=False,
        app_dir=os.getcwd(),
    )
    return 0
