"""What the client tells its caller besides the events: handlers by name, the reset callback,
connection states, and the bounded memory of recent events; and how it is stopped."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from serverless_sse.client import (
    AsyncEventSource,
    ConnectionLost,
    ConnectionState,
    Event,
    EventSource,
    aconnect,
    connect,
)
from serverless_sse.protocol import encode_event

from .scripted import Reply, Script, Twin, run, window


def vote(n: int) -> bytes:
    return encode_event(json.dumps({"n": n}), event="vote_update", id=str(n))


def test_handlers_are_called_by_event_name(twin: Twin) -> None:
    votes: list[Event] = []
    chats: list[Event] = []

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", votes.append)

        @source.on("chat_message")
        def on_chat(event: Event) -> None:
            chats.append(event)

    script = Script(window(vote(1), encode_event("hi", event="chat_message"), vote(2)))
    outcome = run(twin, script, setup=setup)
    assert [e.json()["n"] for e in votes] == [1, 2]
    assert [e.data for e in chats] == ["hi"]
    assert len(outcome.events) == 3  # iteration still sees every event


def test_several_handlers_for_one_name_run_in_the_order_they_were_added(twin: Twin) -> None:
    calls: list[str] = []

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", lambda e: calls.append("first"))
        source.on("vote_update", lambda e: calls.append("second"))

    run(twin, Script(window(vote(1))), setup=setup)
    assert calls == ["first", "second"]


def test_handlers_see_envelope_types(twin: Twin) -> None:
    seen: list[str] = []

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", lambda e: seen.append(e.json()["poll_id"]))

    script = Script(window(b'data: {"type":"vote_update","poll_id":"p1"}\n\n'))
    run(twin, script, setup=setup, format="envelope")
    assert seen == ["p1"]


def test_a_coroutine_handler_is_awaited_by_the_async_twin() -> None:
    seen: list[int] = []

    async def on_vote(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.json()["n"])

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", on_vote)

    run("async", Script(window(vote(1), vote(2))), setup=setup)
    assert seen == [1, 2]


def test_an_exception_in_a_handler_reaches_the_caller_and_is_not_retried(twin: Twin) -> None:
    def boom(event: Event) -> None:
        raise LookupError("handler bug")

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", boom)

    script = Script(window(vote(1)), window(vote(2)))
    with pytest.raises(LookupError):
        run(twin, script, setup=setup)
    assert len(script.requests) == 1


def test_a_handler_raising_an_http_error_is_not_taken_for_a_stream_failure(twin: Twin) -> None:
    def boom(event: Event) -> None:
        raise httpx.ConnectError("the handler's own request failed")

    def setup(source: EventSource | AsyncEventSource) -> None:
        source.on("vote_update", boom)

    script = Script(window(vote(1)), window(vote(2)))
    with pytest.raises(httpx.ConnectError):
        run(twin, script, setup=setup)
    assert len(script.requests) == 1


def test_reset_calls_on_reset_and_is_handed_to_the_caller(twin: Twin) -> None:
    resets: list[Event] = []
    gap = {"reason": "history_trimmed", "missed_from": 3, "missed_to": 9}
    script = Script(window(encode_event(json.dumps(gap), event="reset", id="9"), vote(10)))
    outcome = run(twin, script, on_reset=resets.append)
    assert [e.json() for e in resets] == [gap]
    assert outcome.types == ["reset", "vote_update"]


def test_an_async_on_reset_is_awaited() -> None:
    resets: list[str] = []

    async def reload(event: Event) -> None:
        await asyncio.sleep(0)
        resets.append(event.id)

    script = Script(window(encode_event("{}", event="reset", id="9")))
    run("async", script, on_reset=reload)
    assert resets == ["9"]


def test_state_callbacks_follow_the_connection(twin: Twin) -> None:
    script = Script(
        window(vote(1), encode_event("{}", event="timeout", id="1")),
        Reply(refuse=True),
        window(vote(2)),
        Reply(status=204, headers={}),
    )
    outcome = run(twin, script)
    assert outcome.states == [
        "connecting",
        "open",
        "connecting",  # the window ended: straight back to connecting
        "error",  # the next attempt failed
        "connecting",
        "open",
        "connecting",
        "closed",  # 204: finished
    ]
    error = outcome.changes[3]
    assert isinstance(error.error, ConnectionLost)
    assert error.retry_in is not None
    assert outcome.changes[-1].error is None


def test_state_is_readable_on_the_source(twin: Twin) -> None:
    outcome = run(twin, Script(window(vote(1))))
    assert outcome.source.state is ConnectionState.CLOSED


def test_recent_events_are_kept_up_to_the_bound(twin: Twin) -> None:
    script = Script(window(*[vote(n) for n in range(1, 8)]))
    outcome = run(twin, script, recent_events=3)
    assert [e.id for e in outcome.source.recent] == ["5", "6", "7"]


def test_the_default_memory_keeps_the_last_thousand_events(twin: Twin) -> None:
    script = Script(window(b"".join(vote(n) for n in range(1, 1201))))
    outcome = run(twin, script)
    recent = outcome.source.recent
    assert (len(recent), recent[0].id, recent[-1].id) == (1000, "201", "1200")


def test_last_event_id_and_retry_are_readable_on_the_source(twin: Twin) -> None:
    outcome = run(twin, Script(window(vote(1), vote(2), retry=1234)))
    assert outcome.source.last_event_id == "2"
    assert outcome.source.retry_ms == 1234


# -- stopping --------------------------------------------------------------------------------


def test_iteration_continues_where_a_break_left_it(twin: Twin) -> None:
    script = Script(window(vote(1), vote(2)), window(vote(3)))
    transport = httpx.MockTransport(script.handle)
    if twin == "sync":
        with connect("http://test/s", client=httpx.Client(transport=transport)) as source:
            first = next(iter(source))
            rest = list(source)
    else:

        async def main() -> tuple[Event, list[Event]]:
            async with aconnect(
                "http://test/s", client=httpx.AsyncClient(transport=transport)
            ) as source:
                first = await anext(aiter(source))
                return first, [e async for e in source]

        first, rest = asyncio.run(main())
    assert [first.id, *[e.id for e in rest]] == ["1", "2", "3"]


def test_close_from_a_handler_stops_at_once(twin: Twin) -> None:
    def setup(source: EventSource | AsyncEventSource) -> None:
        if isinstance(source, EventSource):
            source.on("vote_update", lambda event: source.close())
        else:

            async def stop(event: Event) -> None:
                await source.aclose()

            source.on("vote_update", stop)

    script = Script(window(vote(1), vote(2)), window(vote(3)))
    outcome = run(twin, script, setup=setup)
    assert len(script.requests) == 1
    assert outcome.events == []  # the handler saw event 1; nothing more is delivered
    assert outcome.source.state is ConnectionState.CLOSED
    assert outcome.states[-1] == "closed"


def test_closing_a_source_closes_the_response_it_was_reading(twin: Twin) -> None:
    closed: list[bool] = []

    class Tracked(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield vote(1)
            yield vote(2)

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield vote(1)
            yield vote(2)

        def close(self) -> None:
            closed.append(True)

        async def aclose(self) -> None:
            closed.append(True)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Tracked())

    transport = httpx.MockTransport(handle)
    if twin == "sync":
        source = connect("http://test/s", client=httpx.Client(transport=transport))
        assert next(source).id == "1"
        source.close()
    else:

        async def main() -> None:
            source = aconnect("http://test/s", client=httpx.AsyncClient(transport=transport))
            assert (await anext(source)).id == "1"
            await source.aclose()

        asyncio.run(main())
    assert closed == [True]
