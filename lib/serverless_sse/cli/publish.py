"""``serverless-sse publish``: one event from the command line, or many from stdin."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .common import add_service_options

if TYPE_CHECKING:  # the client (and httpx) are imported only when the command runs
    from ..client import Publisher

# A progress bar only for batches that take a while (tqdm's ``delay``), and only on a terminal.
PROGRESS_DELAY_SECONDS = 0.5


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "publish",
        help="publish one event, or many from stdin",
        description=(
            "Publish DATA (a JSON value) to CHANNEL as one event. With DATA '-', read JSON "
            "lines from stdin, one event's data per line (or, with --items, one whole event "
            "object per line) and publish them in batches, in order, with a progress bar on a "
            "terminal. A batch the service finds too large is split. Every event gets an "
            "idempotency key unless it has one, so a batch retried after a lost answer is "
            "stored once. Prints the id of the last event."
        ),
    )
    parser.add_argument("channel", metavar="CHANNEL")
    parser.add_argument("data", metavar="DATA", help="a JSON value, or '-' for stdin")
    parser.add_argument("--type", default="message", help="the event type (default message)")
    parser.add_argument(
        "--text", action="store_true", help="send DATA (or each line) as a JSON string"
    )
    parser.add_argument(
        "--items",
        action="store_true",
        help='each stdin line is an event object: {"type", "data", "idempotency_key"}',
    )
    parser.add_argument("--idempotency-key", metavar="KEY", help="for a single event")
    parser.add_argument(
        "--batch-size", type=int, default=100, metavar="N", help="events per request (100)"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        metavar="N",
        help="tries of one request, for answers that are safe to retry (5)",
    )
    add_service_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..client import Publisher, StreamError
    from ..errors import InvalidChannel
    from .common import fail, header_pairs, note

    if args.batch_size < 1 or args.max_attempts < 1:
        return fail("--batch-size and --max-attempts must be 1 or more", 2)
    maker = EventMaker(event_type=args.type, text=args.text, items=args.items)
    headers = header_pairs(args.header)
    try:
        with Publisher(
            args.server, token=args.token, headers=headers, max_attempts=args.max_attempts
        ) as publisher:
            sender = BatchSender(publisher, args.channel, args.batch_size)
            if args.data != "-":
                one = maker.make(maker.parse(args.data, "DATA"), 1)
                if args.idempotency_key:
                    one["idempotency_key"] = args.idempotency_key
                sender.send([one])
            else:
                from tqdm import tqdm

                with tqdm(
                    unit="event", file=sys.stderr, disable=None, delay=PROGRESS_DELAY_SECONDS
                ) as progress:
                    sender.on_sent = progress.update
                    sender.send_all(maker.from_lines(sys.stdin))
    except InvalidChannel as exc:
        return fail(f"{args.channel!r} is not a channel name: {exc.detail}", 2)
    except BadInput as exc:
        return fail(f"{exc}; {sender.published} events were published before it", 2)
    except StreamError as exc:
        return fail(f"{exc}; {sender.published} events were published before it")
    if sender.last_id:
        print(sender.last_id)
    if args.data == "-":
        note(f"published {sender.published} events to {args.channel}")
    return 0


class BadInput(Exception):
    """A line (or DATA) that cannot be published; nothing of it was sent."""


class EventMaker:
    """Turns DATA or stdin lines into event objects for the publish endpoint.

    Each event gets the idempotency key ``cli-<run>-<line>`` unless it has one: a batch sent
    again after a lost answer is stored once, while running the command again publishes anew.
    """

    def __init__(self, *, event_type: str, text: bool, items: bool) -> None:
        self.event_type = event_type
        self.text = text
        self.items = items
        self.run_id = uuid.uuid4().hex[:16]

    def parse(self, raw: str, where: str) -> Any:
        if self.text:
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            raise BadInput(f"{where} is not JSON (use --text to send text)") from None

    def make(self, value: Any, number: int) -> dict[str, Any]:
        if self.items:
            if not isinstance(value, dict):
                raise BadInput(f"line {number} is not an event object")
            event = dict(value)
        else:
            event = {"type": self.event_type, "data": value}
        event.setdefault("idempotency_key", f"cli-{self.run_id}-{number}")
        return event

    def from_lines(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        """One event per non-blank line, read lazily (stdin may be endless)."""
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if line.strip():
                yield self.make(self.parse(line, f"line {number}"), number)


class BatchSender:
    """Publishes events in order, in batches of at most ``size``.

    A batch the service refuses stored nothing. When it is refused as too large (413: more
    events than ``SSE_MAX_BATCH_EVENTS`` or than the client's events per second, or a body
    over ``SSE_MAX_BODY_BYTES``), or is still rate-limited (429) once the publisher's own
    retries are spent, it is split in two and each half sent; later
    batches start from the size that fitted. A single event refused so is an error.
    """

    def __init__(self, publisher: Publisher, channel: str, size: int) -> None:
        self.publisher = publisher
        self.channel = channel
        self.size = size
        self.published = 0
        self.last_id = ""
        self.on_sent: Callable[[int], object] = lambda count: None

    def send_all(self, events: Iterable[dict[str, Any]]) -> None:
        batch: list[dict[str, Any]] = []
        for event in events:
            batch.append(event)
            if len(batch) >= self.size:
                self.send(batch)
                batch = []
        if batch:
            self.send(batch)

    def send(self, batch: list[dict[str, Any]]) -> None:
        from ..client import PublishRefused

        try:
            results = self.publisher.publish_many(self.channel, batch)
        except PublishRefused as exc:
            if exc.status not in (413, 429) or len(batch) == 1:
                raise
            self.size = min(self.size, len(batch) // 2)
            start = 0
            while start < len(batch):  # in pieces of the size that fits, as it shrinks
                piece = batch[start : start + self.size]
                self.send(piece)
                start += len(piece)
            return
        self.published += len(results)
        self.last_id = results[-1].id
        self.on_sent(len(results))
