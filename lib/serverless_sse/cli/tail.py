"""``serverless-sse tail``: print a stream's events as they come, resuming across windows."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_service_options


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tail",
        help="print a stream's events as they come",
        description=(
            "Follow a stream and print one line per event: TYPE DATA, or a JSON object with "
            "--json. Reconnects by itself at every window end and after failures, resuming "
            "with Last-Event-ID; stops when the stream is finished (204) or refused. "
            "'timeout' events are not printed (see --verbose)."
        ),
    )
    parser.add_argument(
        "target",
        metavar="URL|CHANNEL",
        help="a stream URL, or a channel name on --server (its /channels/CHANNEL/stream)",
    )
    parser.add_argument("--json", action="store_true", help="print each event as a JSON line")
    parser.add_argument("--from-start", action="store_true", help="begin with the retained history")
    parser.add_argument("--last-event-id", default="", metavar="ID", help="resume after this id")
    parser.add_argument("--format", choices=["named", "envelope"], help="the stream's format")
    parser.add_argument("--window", type=float, metavar="SECONDS", help="ask for shorter windows")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N events")
    parser.add_argument(
        "--max-retries", type=int, metavar="N", help="give up after N failures in a row"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="report connections and window ends"
    )
    add_service_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..client import ConnectionState, Event, StateChange, StreamError, connect
    from ..errors import InvalidChannel
    from ..events import validate_channel
    from .common import fail, header_pairs, note

    target: str = args.target
    if "://" in target:
        url = target
    else:
        try:
            channel = validate_channel(target)
        except InvalidChannel as exc:
            return fail(f"{target!r} is neither a URL nor a channel name: {exc.detail}", 2)
        url = f"{args.server.rstrip('/')}/channels/{channel}/stream"
    params: dict[str, str] = {}
    if args.from_start:
        params["from"] = "start"
    if args.format:
        params["format"] = args.format
    if args.window is not None:
        params["window"] = f"{args.window:g}"

    def on_state(change: StateChange) -> None:
        if change.state is ConnectionState.ERROR:
            note(f"{change.error}; retrying in {change.retry_in:.1f} s")
        elif args.verbose and change.state is not ConnectionState.CLOSED:
            note(f"{change.state}")

    def line(event: Event) -> str:
        if not args.json:
            return f"{event.type} {event.data}"
        try:
            data = event.json()
        except ValueError:
            data = event.data
        return json.dumps({"id": event.id, "type": event.type, "data": data}, ensure_ascii=False)

    printed = 0
    source = connect(
        url,
        params=params,
        headers=header_pairs(args.header),
        token=args.token,
        last_event_id=args.last_event_id,
        format=args.format or "named",
        max_retries=args.max_retries,
        on_state=on_state,
    )
    try:
        with source:
            for event in source:
                if event.type == "timeout":
                    if args.verbose:
                        note(f"window ended; resuming from {event.id or 'the start'}")
                    continue
                if event.type == "reset":
                    note(f"history lost, the stream continues after it: {event.data}")
                print(line(event), flush=True)
                printed += 1
                if args.count is not None and printed >= args.count:
                    break
    except StreamError as exc:
        return fail(str(exc))
    if args.verbose and source.last_event_id:
        note(f"last event id: {source.last_event_id}")
    sys.stdout.flush()
    return 0
