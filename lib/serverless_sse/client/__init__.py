"""A Python client for the service's streams (and any spec-conformant SSE endpoint).

It reconnects by itself, resumes with ``Last-Event-ID``, honours the server's ``retry:``,
backs off after failures, and stops for good where an EventSource would (``204``, a refused
request, a response that is not an event stream). Blocking and asyncio twins share one sans-IO
core (:class:`~serverless_sse.client.core.StreamCore`) and the project's own decoder::

    from serverless_sse.client import connect

    with connect("http://127.0.0.1:8000/channels/rooms/lobby/stream") as source:
        for event in source:
            print(event.type, event.json())

    from serverless_sse.client import aconnect

    async with aconnect(url, token="...", format="envelope") as source:
        @source.on("vote_update")
        def show(event): ...

        await source.run()

:class:`Publisher` publishes, retrying only what cannot store an event twice.
"""

from .aio import AsyncEventSource, aconnect
from .backoff import Backoff
from .core import DEFAULT_RETRY_STATUSES, DEFAULT_TIMEOUT, StreamOptions
from .errors import (
    ConnectionLost,
    InvalidStream,
    PublishRefused,
    Refused,
    RetriesExhausted,
    StreamError,
    StreamRefused,
)
from .event import Event
from .publisher import Published, Publisher
from .state import ConnectionState, StateChange
from .sync import EventSource, connect

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_TIMEOUT",
    "AsyncEventSource",
    "Backoff",
    "ConnectionLost",
    "ConnectionState",
    "Event",
    "EventSource",
    "InvalidStream",
    "PublishRefused",
    "Published",
    "Publisher",
    "Refused",
    "RetriesExhausted",
    "StateChange",
    "StreamError",
    "StreamOptions",
    "StreamRefused",
    "aconnect",
    "connect",
]
