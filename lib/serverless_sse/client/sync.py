"""The blocking twin: :func:`connect` and :class:`EventSource`, driven by :class:`httpx.Client`."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from typing import TypeVar, Unpack, overload

import httpx

from .core import ERROR_BODY_LIMIT, Connect, Handler, StreamCore, StreamOptions
from .errors import StreamError
from .event import Event
from .state import ConnectionState, StateChange

__all__ = ["EventSource", "connect"]

H = TypeVar("H", bound=Handler)


class EventSource:
    """A stream of events that reconnects by itself. Iterate it; close it when done.

    ::

        with connect("http://127.0.0.1:8000/channels/rooms/lobby/stream") as source:
            for event in source:
                print(event.type, event.json())

    Iteration ends when the stream is finished for good (``204 No Content``, a stream that
    does not reconnect and ended, or :meth:`close`) and raises a :class:`StreamError` when it
    stops for any other reason. Iterating again after a ``break`` continues where it stopped.
    See :class:`StreamOptions` for the options.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **options: Unpack[StreamOptions],
    ) -> None:
        self._core = StreamCore(url, **options)
        self._client = client if client is not None else httpx.Client(follow_redirects=True)
        self._owns_client = client is None
        self._sleep = sleep
        self._iterator: Generator[Event] | None = None
        self._response: httpx.Response | None = None
        self._running = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._core.url

    @property
    def state(self) -> ConnectionState:
        return self._core.state

    @property
    def last_event_id(self) -> str:
        """The id a reconnect sends as ``Last-Event-ID``: keep it to resume later."""
        return self._core.last_event_id

    @property
    def retry_ms(self) -> int | None:
        """The reconnection time the server asked for, in milliseconds, if it did."""
        return self._core.retry_ms

    @property
    def failures(self) -> int:
        """Failed attempts in a row (0 once an event arrives)."""
        return self._core.failures

    @property
    def recent(self) -> Sequence[Event]:
        """The most recent events (``recent_events`` of them at most), oldest first."""
        return self._core.recent

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, event_type: str) -> Callable[[H], H]: ...

    @overload
    def on(self, event_type: str, handler: H) -> H: ...

    def on(self, event_type: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler`` with every event of ``event_type``, before iteration yields it.

        Usable as a decorator: ``@source.on("vote_update")``. Handlers run in the order they
        were added; an exception in one ends iteration with that exception.
        """
        if handler is not None:
            self._core.add_handler(event_type, handler)
            return handler

        def register(fn: H) -> H:
            self._core.add_handler(event_type, fn)
            return fn

        return register

    def run(self) -> None:
        """Read the stream to its end, calling the handlers (for handler-only use)."""
        for _ in self:
            pass

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> EventSource:
        return self

    def __next__(self) -> Event:
        if self._iterator is None:
            self._iterator = self._events()
        return next(self._iterator)

    def _events(self) -> Generator[Event]:
        core = self._core
        while isinstance(step := core.next_step(), Connect):
            if step.delay > 0:
                self._sleep(step.delay)
            if core.closed:
                return  # closed while waiting
            self._notify(core.connecting())
            spec = core.request()
            try:
                request = self._client.build_request(
                    spec.method,
                    spec.url,
                    headers=spec.headers,
                    json=spec.json,
                    content=spec.content,
                    timeout=spec.timeout,
                )
                self._response = response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                self._notify(core.failed(exc))
                continue
            try:
                if not core.accepts(response.status_code, response.headers):
                    body = _read_some(response)
                    self._notify(core.refused(response.status_code, response.headers, body))
                    continue
                self._notify(core.opened())
                chunks = response.iter_bytes()
                change: StateChange | None = None
                while True:
                    # Only reading and decoding are guarded: an error raised by a handler, or
                    # by the code iterating this source, is the caller's, not a stream failure.
                    try:
                        chunk = next(chunks, None)
                        if chunk is None:
                            change = core.ended()
                            break
                        events = core.feed(chunk)
                    except (httpx.HTTPError, StreamError) as exc:
                        change = core.failed(exc)
                        break
                    for event in events:
                        self._dispatch(event)
                        if core.closed:
                            return  # a handler closed the source
                        yield event
                        if core.closed:
                            return
                self._notify(change)
            finally:
                self._response = None
                response.close()
        error = step.error
        if error is not None:
            raise error

    def _dispatch(self, event: Event) -> None:
        self._running = True
        try:
            for handler in self._core.handlers_for(event):
                handler(event)
        finally:
            self._running = False

    def _notify(self, change: StateChange | None) -> None:
        if change is not None and self._core.on_state is not None:
            self._core.on_state(change)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop for good: close the response being read, and the client if this source made it.

        May be called from a handler or between two iterations.
        From a handler, the event being handled is not yielded to the iteration.
        """
        self._notify(self._core.close())
        iterator = self._iterator
        if iterator is not None and not self._running:
            # From a handler (``_running``) the generator is executing and returns by itself as
            # soon as the handler does; otherwise it is suspended and closes its response now.
            try:
                iterator.close()
            except ValueError:
                # Being iterated in another thread: end the read it is blocked in.
                response = self._response
                if response is not None:
                    response.close()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> EventSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    url: str,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **options: Unpack[StreamOptions],
) -> EventSource:
    """Open a reconnecting event stream at ``url``: an :class:`EventSource` to iterate.

    Nothing is sent until iteration starts. ``client`` lets requests share a connection pool,
    proxies or a transport (otherwise the source makes its own client and closes it);
    ``sleep`` is how it waits between attempts. See :class:`StreamOptions` for the rest.
    """
    return EventSource(url, client=client, sleep=sleep, **options)


def _read_some(response: httpx.Response) -> bytes:
    """Up to ERROR_BODY_LIMIT bytes of a refused response's body (a failure to read it is
    no reason to lose the status)."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= ERROR_BODY_LIMIT:
                break
    except httpx.HTTPError:
        pass
    return bytes(body[:ERROR_BODY_LIMIT])
