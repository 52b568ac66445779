"""The sans-IO core that :class:`EventSource` and :class:`AsyncEventSource` share.

:class:`StreamCore` is a small state machine over one logical stream that spans many HTTP
responses. It never touches a socket or a clock of its own: a driver (the sync or the async
twin) asks it what to do next (:meth:`StreamCore.next_step`), sends the request it describes
(:meth:`StreamCore.request`), and tells it what happened (the status and headers, each chunk of
bytes, a clean end, a failure). In return it says which events to hand to the caller, which
state changes to announce, and when, if ever, to connect again. The twins differ only in how
they wait and read.

The reconnect rules, in one place:

- a response that delivered events and then ended cleanly (a window ending with ``timeout``, a
  closed channel's final event) is followed by a reconnect after the server's ``retry:``
  (at once when it sent none), with ``Last-Event-ID`` set to the last id seen;
- a failure (connection refused or cut, a read timeout, a response that ended before any
  event, a 429/502/503/504) is followed by a reconnect after a backoff delay: ``Retry-After``
  when the server gave one, else full jitter under an exponential cap, never sooner than the
  server's ``retry:``; ``max_retries`` failures in a row end it with :class:`RetriesExhausted`;
- ``204 No Content`` ends it cleanly for good; any other status, a content type other than
  ``text/event-stream``, or a stream over the size limits ends it with an error;
- a stream that does not reconnect (``POST`` by default: a request body must not be replayed)
  ends after its one response, and its failures are raised at once.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx

from ..events import EventFormat
from ..protocol import EventStreamDecoder, ProtocolError, ServerSentEvent
from .backoff import Backoff, parse_retry_after
from .errors import ConnectionLost, InvalidStream, RetriesExhausted, StreamError, StreamRefused
from .event import Event
from .state import ConnectionState, StateChange

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_TIMEOUT",
    "Connect",
    "Finish",
    "Handler",
    "StreamCore",
    "StreamOptions",
]

Handler = Callable[[Event], object]
"""An event handler. The async twin also awaits what a handler returns, when it is awaitable."""

StateCallback = Callable[[StateChange], object]

DEFAULT_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A live stream is never quiet for long: the service sends a heartbeat comment every 15 s. A
# read that waits 60 s (four heartbeats) has found a dead connection, not a quiet channel.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=60.0)
# The service refuses event payloads over 350,000 bytes at most (64 KiB by default); 1 MiB
# characters is far above anything it sends and still bounds what a hostile server can make
# the client hold.
DEFAULT_MAX_BYTES = 1 << 20
# How much of a refused response's body is kept for the error (the service's JSON error body
# is a few hundred bytes; a proxy's HTML page is cut).
ERROR_BODY_LIMIT = 64 * 1024

# Failures of the connection itself, which another attempt may not meet: refused, reset,
# timed out, cut mid-response, or a proxy in the way.
_TRANSIENT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)

# What a header value may hold without being refused or altered on its way (RFC 9110 field
# values: no control characters but HTAB, no leading or trailing whitespace).
_SENDABLE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


class StreamOptions(TypedDict, total=False):
    """Options of :func:`connect` and :func:`aconnect` (every one optional).

    - ``method``: ``GET`` (default) or ``POST`` (for endpoints that answer a POST with a
      stream, like group chat's ``group-sse``), with ``json`` or ``content`` as its body.
    - ``params``, ``headers``: query parameters (merged with the URL's own) and extra request
      headers.
    - ``token``: an access token, sent as ``Authorization: Bearer <token>``; a function
      returning one is called before every attempt (so a refreshed token is picked up).
    - ``last_event_id``: resume from this id (sent as ``Last-Event-ID`` on the first request).
    - ``format``: ``named`` (default) or ``envelope``: for ``envelope`` streams, an event's
      type is read from the ``type`` key of its JSON data.
    - ``reconnect``: reconnect after a response ends (default: for ``GET`` only).
    - ``max_retries``: failed attempts in a row after which it gives up (default: never).
    - ``backoff``: the delays after failures (:class:`Backoff`).
    - ``retry_statuses``: statuses that are retried (default 429, 502, 503, 504).
    - ``recent_events``: how many recent events :attr:`recent` keeps (default 1000).
    - ``max_line_bytes``, ``max_event_bytes``: limits on one line and on one event's data,
      in characters (default 1 MiB each); going over ends the stream with
      :class:`InvalidStream`.
    - ``timeout``: per request, an :class:`httpx.Timeout` or seconds (default: 10 s to
      connect, 60 s between two reads).
    - ``on_state``: called with each :class:`StateChange`.
    - ``on_reset``: called with each ``reset`` event (history was lost: reload state).
    - ``clock``: the current Unix time, for ``Retry-After`` dates (tests replace it).
    """

    method: str
    params: httpx.QueryParams | Mapping[str, str] | None
    headers: Mapping[str, str] | None
    token: str | Callable[[], str] | None
    json: Any
    content: str | bytes | None
    last_event_id: str
    format: EventFormat
    reconnect: bool | None
    max_retries: int | None
    backoff: Backoff
    retry_statuses: frozenset[int]
    recent_events: int
    max_line_bytes: int | None
    max_event_bytes: int | None
    timeout: httpx.Timeout | float | None
    on_state: StateCallback | None
    on_reset: Handler | None
    clock: Callable[[], float]


@dataclass(frozen=True, slots=True)
class Connect:
    """Send the next request after waiting ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Finish:
    """Stop for good; raise ``error`` unless it is ``None`` (a clean end)."""

    error: StreamError | None


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """Everything a driver needs to build the next request."""

    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    json: Any
    content: str | bytes | None
    timeout: httpx.Timeout | float | None


class StreamCore:
    """One logical stream across reconnects: decoding, resume state, and the retry schedule."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        params: httpx.QueryParams | Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | Callable[[], str] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        last_event_id: str = "",
        format: EventFormat = "named",
        reconnect: bool | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES,
        recent_events: int = 1000,
        max_line_bytes: int | None = DEFAULT_MAX_BYTES,
        max_event_bytes: int | None = DEFAULT_MAX_BYTES,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        on_state: StateCallback | None = None,
        on_reset: Handler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if format not in ("named", "envelope"):
            raise ValueError("format is 'named' or 'envelope'")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if recent_events < 0:
            raise ValueError("recent_events must be 0 or more")
        # Merged here, once: httpx would replace the URL's own query with ``params``.
        self.url = str(httpx.URL(url).copy_merge_params(params)) if params else url
        self.method = method.upper()
        self.reconnect = self.method == "GET" if reconnect is None else reconnect
        self.on_state = on_state
        self.on_reset = on_reset
        self._headers = dict(headers or {})
        self._token = token
        self._json = json
        self._content = content
        self._timeout = timeout
        self._envelope = format == "envelope"
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        self._retry_statuses = retry_statuses
        self._clock = clock
        self._decoder = EventStreamDecoder(
            max_line_bytes=max_line_bytes,
            max_event_bytes=max_event_bytes,
            last_event_id=last_event_id,
        )
        self._handlers: dict[str, list[Handler]] = {}
        self._next: Connect | Finish = Connect(0.0)
        self._events_in_response = 0
        self.state = ConnectionState.CONNECTING
        self.failures = 0
        """Failed attempts in a row (reset by any event)."""
        self.recent: deque[Event] = deque(maxlen=recent_events)
        """The most recent events, oldest first."""

    # -- what the caller configures and reads ----------------------------------------------

    @property
    def last_event_id(self) -> str:
        return self._decoder.last_event_id

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    @property
    def retry_ms(self) -> int | None:
        """The reconnection time the server asked for with ``retry:``, in milliseconds."""
        return self._decoder.retry

    def add_handler(self, event_type: str, handler: Handler) -> None:
        self._handlers.setdefault(event_type, []).append(handler)

    def handlers_for(self, event: Event) -> list[Handler]:
        """The callbacks for ``event``, in order: ``on_reset`` first, then ``on()`` handlers."""
        found = list(self._handlers.get(event.type, ()))
        if event.type == "reset" and self.on_reset is not None:
            found.insert(0, self.on_reset)
        return found

    # -- what the driver asks ----------------------------------------------------------------

    def next_step(self) -> Connect | Finish:
        return self._next

    def request(self) -> RequestSpec:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        headers.update((name.lower(), value) for name, value in self._headers.items())
        token = self._token() if callable(self._token) else self._token
        if token:
            headers["authorization"] = f"Bearer {token}"
        if self.last_event_id:
            # Sent as UTF-8, as browsers send it; _resume made sure it is a valid header value.
            headers["last-event-id"] = self.last_event_id
        raw = [(name.encode(), value.encode()) for name, value in headers.items()]
        return RequestSpec(self.method, self.url, raw, self._json, self._content, self._timeout)

    # -- what the driver tells ---------------------------------------------------------------

    def connecting(self) -> StateChange:
        """A request is about to be sent."""
        self._events_in_response = 0
        return self._enter(ConnectionState.CONNECTING)

    def accepts(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether a response is a stream to read (else read a little of its body and call
        :meth:`refused`)."""
        return status == 200 and _is_event_stream(headers.get("content-type"))

    def opened(self) -> StateChange:
        return self._enter(ConnectionState.OPEN)

    def refused(self, status: int, headers: Mapping[str, str], body: bytes) -> StateChange | None:
        """The response was not a stream to read: decide whether to try again."""
        if status == 204:
            return self._finish(None)
        if status == 200:
            kind = headers.get("content-type", "no content type")
            return self._finish(InvalidStream(f"expected text/event-stream, got {kind}"))
        retry_after = parse_retry_after(headers.get("retry-after"), now=self._clock())
        error = StreamRefused(status, body=body, headers=headers, retry_after=retry_after)
        if self.reconnect and status in self._retry_statuses:
            return self._retry(error, retry_after)
        return self._finish(error)

    def feed(self, chunk: bytes) -> list[Event]:
        """Bytes of the open response; returns the events they completed.

        Raises :class:`InvalidStream` when the stream breaks the size limits (pass it to
        :meth:`failed`).
        """
        try:
            items = self._decoder.feed(chunk)
        except ProtocolError as exc:
            raise InvalidStream(str(exc)) from exc
        events = [self._event(item) for item in items if isinstance(item, ServerSentEvent)]
        if events:
            self.failures = 0
            self._events_in_response += len(events)
            self.recent.extend(events)
        return events

    def ended(self) -> StateChange | None:
        """The response body ended cleanly."""
        if self.state is ConnectionState.CLOSED:
            return None
        self._decoder.close()
        if not self.reconnect:
            return self._finish(None)
        if self._events_in_response == 0:
            # A server (or proxy) that answers and hangs up at once must not be called again
            # in a tight loop: with nothing delivered, this counts as a failure.
            return self._retry(ConnectionLost("the stream ended before any event"), None)
        return self._resume(self._retry_seconds())

    def failed(self, error: Exception) -> StateChange | None:
        """The attempt failed: an :class:`httpx.HTTPError` or a :class:`StreamError`."""
        if self.state is ConnectionState.CLOSED:
            return None
        self._decoder.close()
        if isinstance(error, StreamError):
            return self._finish(error)  # the stream broke the client's limits
        described = f"{type(error).__name__}: {error}"
        if isinstance(error, _TRANSIENT):
            lost = ConnectionLost(described)
            lost.__cause__ = error
            return self._retry(lost, None) if self.reconnect else self._finish(lost)
        # Trying again would give the same answer: too many redirects or an undecodable body
        # (the response), an unsupported URL scheme or an invalid header (the request).
        fatal = (
            InvalidStream(described)
            if isinstance(error, httpx.TooManyRedirects | httpx.DecodingError)
            else StreamError(f"cannot send the request: {described}")
        )
        fatal.__cause__ = error
        return self._finish(fatal)

    def close(self) -> StateChange | None:
        """The caller closed the source."""
        if self.state is ConnectionState.CLOSED:
            return None
        return self._finish(None)

    # -- inside ------------------------------------------------------------------------------

    def _event(self, item: ServerSentEvent) -> Event:
        if self._envelope and item.type == "message" and item.data.startswith("{"):
            try:
                payload = json.loads(item.data)
            except ValueError:
                return Event(item.type, item.data, item.last_event_id)
            kind = payload.get("type") if isinstance(payload, dict) else None
            if isinstance(kind, str) and kind:
                return Event(kind, item.data, item.last_event_id, payload)
            return Event(item.type, item.data, item.last_event_id, payload)
        return Event(item.type, item.data, item.last_event_id)

    def _retry_seconds(self) -> float:
        retry = self._decoder.retry
        return 0.0 if retry is None else retry / 1000

    def _retry(self, error: StreamError, retry_after: float | None) -> StateChange | None:
        self.failures += 1
        if self._max_retries is not None and self.failures > self._max_retries:
            exhausted = RetriesExhausted(self.failures, error)
            exhausted.__cause__ = error
            return self._finish(exhausted)
        if retry_after is not None:
            delay = retry_after
        else:
            delay = max(self._retry_seconds(), self._backoff.delay(self.failures))
        return self._resume(delay, error)

    def _resume(self, delay: float, error: StreamError | None = None) -> StateChange | None:
        last_id = self.last_event_id
        if not _SENDABLE.fullmatch(last_id) or last_id != last_id.strip(" \t"):
            return self._finish(
                InvalidStream(f"the event id {last_id!r} cannot be sent back as Last-Event-ID")
            )
        self._next = Connect(delay)
        if error is None:
            return None
        return self._enter(ConnectionState.ERROR, error, delay)

    def _finish(self, error: StreamError | None) -> StateChange:
        self._next = Finish(error)
        return self._enter(ConnectionState.CLOSED, error)

    def _enter(
        self, state: ConnectionState, error: Exception | None = None, retry_in: float | None = None
    ) -> StateChange:
        self.state = state
        return StateChange(state, error, retry_in)


def _is_event_stream(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"
