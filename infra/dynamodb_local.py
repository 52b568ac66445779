"""DynamoDB on this machine: moto's server on 127.0.0.1, with the store's table created.

    .venv/bin/python infra/dynamodb_local.py [--port 8001] [--table sse-events]

Prints the ``SSE_STORE`` URL to use, then serves until interrupted (Ctrl-C or SIGTERM). With
``--port 0`` (the default) it picks a free port. Data lives in memory and is gone when it
stops.

moto handles requests in parallel threads, but its backends are not thread-safe: two
conditional writes to the same item could both succeed, which real DynamoDB never allows and
which the store's gap-free sequences rely on. So this server runs one request at a time.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from serverless_sse.stores.dynamodb import create_table

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def one_at_a_time(app: WSGIApp) -> WSGIApp:
    """Run a WSGI app's requests one after the other (moto's backends are not thread-safe)."""
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serialised


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--table", default="sse-events", help="table to create (sse-events)")
    parser.add_argument("--region", default="us-east-1", help="region in the URL (us-east-1)")
    parser.add_argument("--no-table", action="store_true", help="create no table")
    args = parser.parse_args(argv)

    # moto accepts any credentials; boto3 needs some to sign requests with.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        args.host,
        args.port,
        one_at_a_time(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    endpoint = f"http://{args.host}:{server.port}"
    serving = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    serving.start()
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())

    if not args.no_table:
        create_table(args.table, region=args.region, endpoint_url=endpoint)
        print(
            f"SSE_STORE='dynamodb://{args.table}?region={args.region}&endpoint_url={endpoint}'",
            flush=True,
        )
    print(f"DynamoDB (moto) listening on {endpoint}", flush=True)
    try:
        serving.join()
    except KeyboardInterrupt:
        server.shutdown()
    # Without waiting for clients' idle keep-alive connections to close: nothing is kept.
    os._exit(0)


if __name__ == "__main__":
    main()
