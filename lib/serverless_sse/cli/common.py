"""Options and output shared by the commands that talk to a running service."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_service_options", "fail", "header_pairs", "note"]

DEFAULT_SERVER = "http://127.0.0.1:8000"


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """``--server``, ``--token`` and ``--header``, with their environment variables."""
    parser.add_argument(
        "--server",
        default=os.environ.get("SSE_SERVER", DEFAULT_SERVER),
        help=f"the service's base URL (env SSE_SERVER; default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SSE_TOKEN"),
        help="access token, sent as 'Authorization: Bearer <token>' (env SSE_TOKEN)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable)",
    )


def header_pairs(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip():
            raise SystemExit(f"serverless-sse: error: a header is 'Name: value', not {value!r}")
        headers[name.strip()] = rest.strip()
    return headers


def note(message: str) -> None:
    """A line for the person at the terminal (stderr, so stdout stays data)."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, status: int = 1) -> int:
    note(f"serverless-sse: error: {message}")
    return status
