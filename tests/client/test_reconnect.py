"""When the client connects again, with what, and when it stops for good."""

from __future__ import annotations

import asyncio
import email.utils
import json

import httpx
import pytest

from serverless_sse.client import (
    Backoff,
    ConnectionLost,
    ConnectionState,
    InvalidStream,
    RetriesExhausted,
    StreamError,
    StreamRefused,
    aconnect,
    connect,
)
from serverless_sse.protocol import encode_event

from .scripted import Reply, Script, Twin, run, window

# Jitter fixed at its top: every delay is the backoff's ceiling, so schedules can be compared.
CEILING = Backoff(initial=1.0, maximum=5.0, random=lambda: 1.0)


def timeout(cursor: str) -> bytes:
    return encode_event('{"reason":"window_elapsed","retry_ms":250}', event="timeout", id=cursor)


def error_reply(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"error": code, "detail": f"{code} detail"}).encode()
    return Reply(
        [body], status=status, headers={"content-type": "application/json", **(headers or {})}
    )


# -- resuming --------------------------------------------------------------------------------


def test_every_reconnect_sends_the_last_event_id(twin: Twin) -> None:
    script = Script(
        window(encode_event("a", id="1"), timeout("1")),
        window(encode_event("b", id="2"), encode_event("c", id="3"), timeout("3")),
        window(timeout("3")),
        window(encode_event("d", id="4")),
    )
    outcome = run(twin, script)
    assert outcome.types == [
        "message",
        "timeout",
        "message",
        "message",
        "timeout",
        "timeout",
        "message",
    ]
    assert [e.data for e in outcome.events if e.type == "message"] == ["a", "b", "c", "d"]
    assert script.header("last-event-id") == [None, "1", "3", "3", "4"]


def test_a_given_last_event_id_is_sent_on_the_first_request(twin: Twin) -> None:
    script = Script(window(encode_event("b", id="2")))
    run(twin, script, last_event_id="1")
    assert script.header("last-event-id") == ["1", "2"]


def test_a_clean_window_end_reconnects_after_the_servers_retry(twin: Twin) -> None:
    script = Script(
        window(encode_event("a", id="1"), timeout("1"), retry=250),
        window(encode_event("b", id="2"), timeout("2")),
    )
    outcome = run(twin, script, backoff=CEILING)
    # 250 ms after each window, the reconnection time carrying over to the second response.
    assert outcome.sleeps == [0.25, 0.25]
    assert ConnectionState.ERROR not in [c.state for c in outcome.changes]


def test_a_clean_window_end_without_retry_reconnects_at_once(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1"), timeout("1")), window(encode_event("b")))
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == []
    assert len(script.requests) == 3


def test_timeout_events_are_handed_to_the_caller(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1"), timeout("1")))
    outcome = run(twin, script)
    assert outcome.types == ["message", "timeout"]
    assert outcome.events[1].json()["reason"] == "window_elapsed"


# -- failures and backoff --------------------------------------------------------------------


def test_failures_back_off_exponentially_up_to_the_cap(twin: Twin) -> None:
    script = Script(*[Reply(refuse=True)] * 5, window(encode_event("a")))
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert outcome.data == ["a"]


def test_backoff_delays_are_fully_jittered(twin: Twin) -> None:
    draws = iter([0.5, 0.0, 0.75])
    jittered = Backoff(initial=1.0, maximum=30.0, random=lambda: next(draws))
    script = Script(*[Reply(refuse=True)] * 3, window(encode_event("a")))
    outcome = run(twin, script, backoff=jittered)
    # Uniform in [0, 1], [0, 2], [0, 4]: 0.5, 0 (at once: no sleep at all), then 3.
    assert outcome.sleeps == [0.5, 3.0]
    assert len(script.requests) == 5


def test_backoff_never_retries_sooner_than_the_servers_retry(twin: Twin) -> None:
    tiny = Backoff(initial=1.0, maximum=30.0, random=lambda: 0.1)
    script = Script(
        window(encode_event("a", id="1"), cut=True, retry=3000),
        Reply(refuse=True),
        window(encode_event("b", id="2")),
    )
    outcome = run(twin, script, backoff=tiny)
    assert outcome.sleeps == [3.0, 3.0, 3.0]  # two failures, then a clean end


def test_an_event_resets_the_failure_count(twin: Twin) -> None:
    script = Script(
        Reply(refuse=True),
        Reply(refuse=True),
        window(encode_event("a", id="1"), cut=True),
        Reply(refuse=True),
        window(encode_event("b", id="2")),
    )
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == [1.0, 2.0, 1.0, 2.0]


def test_a_dropped_connection_is_retried_and_reported_as_an_error_state(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1"), cut=True), window(encode_event("b")))
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.data == ["a", "b"]
    errors = [c for c in outcome.changes if c.state is ConnectionState.ERROR]
    assert len(errors) == 1
    assert isinstance(errors[0].error, ConnectionLost)
    assert errors[0].retry_in == 1.0


@pytest.mark.parametrize(
    "failure", [httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError], ids=str
)
def test_a_read_that_fails_or_times_out_is_retried(
    twin: Twin, failure: type[httpx.TransportError]
) -> None:
    script = Script(window(encode_event("a", id="1"), cut=failure), window(encode_event("b")))
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.data == ["a", "b"]
    assert script.header("last-event-id") == [None, "1", "1"]


def test_an_unsupported_url_scheme_fails_at_once(twin: Twin) -> None:
    async def read_async() -> None:
        async with aconnect("ftp://example.invalid/stream", backoff=CEILING) as source:
            async for _ in source:
                pass

    with pytest.raises(StreamError, match="cannot send the request"):
        if twin == "sync":
            with connect("ftp://example.invalid/stream", backoff=CEILING) as source:
                list(source)
        else:
            asyncio.run(read_async())


def test_too_many_redirects_fail_at_once(twin: Twin) -> None:
    loop = Reply(status=307, headers={"location": "/channels/c/stream"})
    script = Script(*[loop] * 30)
    outcome = run(twin, script, follow_redirects=True)
    assert isinstance(outcome.error, InvalidStream)
    assert "TooManyRedirects" in str(outcome.error)


def test_a_response_that_ends_before_any_event_counts_as_a_failure(twin: Twin) -> None:
    # Else a server that answers and hangs up at once would be called in a tight loop.
    script = Script(window(b": ok\n\n"), window(b": ok\n\n"), window(encode_event("a")))
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == [1.0, 2.0]
    assert outcome.data == ["a"]


def test_max_retries_gives_up_after_that_many_failures_in_a_row(twin: Twin) -> None:
    script = Script(*[Reply(refuse=True)] * 10)
    outcome = run(twin, script, backoff=CEILING, max_retries=3)
    assert isinstance(outcome.error, RetriesExhausted)
    assert outcome.error.failures == 4
    assert isinstance(outcome.error.__cause__, ConnectionLost)
    assert len(script.requests) == 4
    assert outcome.sleeps == [1.0, 2.0, 4.0]
    assert outcome.changes[-1].state is ConnectionState.CLOSED
    assert outcome.changes[-1].error is outcome.error


def test_max_retries_zero_never_retries(twin: Twin) -> None:
    script = Script(Reply(refuse=True), window(encode_event("a")))
    outcome = run(twin, script, max_retries=0)
    assert isinstance(outcome.error, RetriesExhausted)
    assert len(script.requests) == 1


def test_max_retries_counts_failures_in_a_row_not_in_total(twin: Twin) -> None:
    script = Script(
        Reply(refuse=True),
        Reply(refuse=True),
        window(encode_event("a", id="1"), cut=True),
        Reply(refuse=True),
        window(encode_event("b", id="2")),
    )
    # Four failures in all, never more than two in a row (the cut after "a" is one).
    outcome = run(twin, script, backoff=CEILING, max_retries=2)
    assert outcome.error is None
    assert outcome.data == ["a", "b"]


# -- statuses --------------------------------------------------------------------------------


def test_204_stops_for_good(twin: Twin) -> None:
    script = Script(Reply(status=204, headers={}), window(encode_event("never")))
    outcome = run(twin, script)
    assert outcome.events == []
    assert outcome.error is None
    assert len(script.requests) == 1
    assert outcome.states == ["connecting", "closed"]


def test_204_after_a_finished_channel_ends_iteration_cleanly(twin: Twin) -> None:
    script = Script(
        window(encode_event("a", id="1"), encode_event("{}", event="complete", id="2")),
        Reply(status=204, headers={}),
    )
    outcome = run(twin, script)
    assert outcome.types == ["message", "complete"]
    assert outcome.error is None
    assert script.header("last-event-id") == [None, "2"]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_statuses_are_retried_with_backoff(twin: Twin, status: int) -> None:
    script = Script(
        error_reply(status, "store_unavailable"),
        error_reply(status, "x"),
        window(encode_event("a")),
    )
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == [1.0, 2.0]
    assert outcome.data == ["a"]
    refused = outcome.changes[1].error
    assert isinstance(refused, StreamRefused)
    assert (refused.status, refused.code) == (status, "store_unavailable")


def test_429_waits_as_long_as_retry_after_says(twin: Twin) -> None:
    script = Script(
        error_reply(429, "too_many_requests", {"retry-after": "7"}), window(encode_event("a"))
    )
    outcome = run(twin, script, backoff=CEILING)
    assert outcome.sleeps == [7.0]
    assert outcome.changes[1].retry_in == 7.0
    assert outcome.data == ["a"]


def test_retry_after_may_be_an_http_date(twin: Twin) -> None:
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 30, usegmt=True)
    script = Script(
        error_reply(503, "store_unavailable", {"retry-after": when}), window(encode_event("a"))
    )
    outcome = run(twin, script, backoff=CEILING, clock=lambda: now)
    assert outcome.sleeps == [30.0]


def test_429_without_retry_after_backs_off(twin: Twin) -> None:
    script = Script(error_reply(429, "too_many_requests"), window(encode_event("a")))
    assert run(twin, script, backoff=CEILING).sleeps == [1.0]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_cursor"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (500, "internal_error"),
    ],
)
def test_other_statuses_stop_with_the_servers_error(twin: Twin, status: int, code: str) -> None:
    script = Script(error_reply(status, code), window(encode_event("a")))
    outcome = run(twin, script)
    assert isinstance(outcome.error, StreamRefused)
    assert (outcome.error.status, outcome.error.code, outcome.error.detail) == (
        status,
        code,
        f"{code} detail",
    )
    assert len(script.requests) == 1
    assert outcome.states == ["connecting", "closed"]


def test_retry_statuses_can_be_chosen(twin: Twin) -> None:
    script = Script(error_reply(500, "internal_error"), window(encode_event("a")))
    outcome = run(twin, script, backoff=CEILING, retry_statuses=frozenset({500}))
    assert outcome.data == ["a"]


def test_a_response_that_is_not_an_event_stream_stops_for_good(twin: Twin) -> None:
    script = Script(
        Reply([b"<html>login</html>"], headers={"content-type": "text/html"}),
        window(encode_event("a")),
    )
    outcome = run(twin, script)
    assert isinstance(outcome.error, InvalidStream)
    assert "text/html" in str(outcome.error)
    assert len(script.requests) == 1


def test_a_response_without_a_content_type_stops_for_good(twin: Twin) -> None:
    script = Script(Reply([b"data: a\n\n"], headers={}))
    outcome = run(twin, script)
    assert isinstance(outcome.error, InvalidStream)
