"""What the client sends: its headers, the access token, and POST streams (which never
reconnect: a request body is not replayed)."""

from __future__ import annotations

import json

import pytest

from serverless_sse.client import ConnectionLost, StreamRefused
from serverless_sse.protocol import encode_event

from .scripted import Reply, Script, Twin, run, window


def test_every_request_asks_for_an_event_stream_and_no_cache(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1")), window(encode_event("b")))
    run(twin, script)
    assert script.header("accept") == ["text/event-stream"] * 3
    assert script.header("cache-control") == ["no-cache"] * 3


def test_custom_headers_and_the_token_go_on_every_request(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1")), window(encode_event("b")))
    run(twin, script, headers={"X-Trace": "t-1"}, token="s3cret")
    assert script.header("authorization") == ["Bearer s3cret"] * 3
    assert script.header("x-trace") == ["t-1"] * 3


def test_a_token_function_is_asked_before_every_attempt(twin: Twin) -> None:
    tokens = iter(["t1", "t2", "t3"])
    script = Script(window(encode_event("a", id="1")), window(encode_event("b")))
    run(twin, script, token=lambda: next(tokens))
    assert script.header("authorization") == ["Bearer t1", "Bearer t2", "Bearer t3"]


def test_without_a_token_no_authorization_is_sent(twin: Twin) -> None:
    script = Script(window(encode_event("a")))
    run(twin, script)
    assert script.header("authorization") == [None, None]


def test_custom_headers_may_replace_the_defaults(twin: Twin) -> None:
    script = Script(window(encode_event("a")))
    run(twin, script, headers={"Accept": "text/event-stream, */*"})
    assert script.header("accept")[0] == "text/event-stream, */*"


def test_query_parameters_are_merged_with_the_urls_own(twin: Twin) -> None:
    script = Script(window(encode_event("a")))
    url = "http://test/stream?channels=a,b&window=9"
    run(twin, script, url=url, params={"window": "2", "from": "start"})
    sent = dict(script.requests[0].url.params)
    assert sent == {"channels": "a,b", "window": "2", "from": "start"}


def test_a_post_stream_sends_its_body_and_reads_to_the_end(twin: Twin) -> None:
    body = {"message": "hello", "sender": "u1", "userName": "Ann"}
    script = Script(
        window(
            b'data: {"type":"user_message"}\n\n',
            b'data: {"type":"complete"}\n\n',
            b"data: [DONE]\n\n",
        )
    )
    url = "http://test/api/chat/rooms/r1/group-sse"
    outcome = run(twin, script, url=url, method="POST", json=body, format="envelope", token="t")
    assert outcome.types == ["user_message", "complete", "message"]
    assert outcome.data[-1] == "[DONE]"
    assert outcome.error is None
    request = script.requests[0]
    assert (request.method, json.loads(request.content)) == ("POST", body)
    assert request.headers["authorization"] == "Bearer t"
    assert len(script.requests) == 1  # not reconnected
    assert outcome.states == ["connecting", "open", "closed"]


def test_a_post_stream_that_is_cut_raises_instead_of_posting_again(twin: Twin) -> None:
    script = Script(window(b"data: a\n\n", cut=True), window(b"data: b\n\n"))
    outcome = run(twin, script, method="POST", content=b"{}")
    assert outcome.data == ["a"]
    assert isinstance(outcome.error, ConnectionLost)
    assert len(script.requests) == 1


def test_a_post_stream_refused_with_a_retryable_status_is_not_retried(twin: Twin) -> None:
    script = Script(Reply([b"{}"], status=503, headers={"content-type": "application/json"}))
    outcome = run(twin, script, method="POST", json={})
    assert isinstance(outcome.error, StreamRefused)
    assert len(script.requests) == 1


def test_a_get_stream_can_be_told_not_to_reconnect(twin: Twin) -> None:
    script = Script(window(encode_event("a")), window(encode_event("b")))
    outcome = run(twin, script, reconnect=False)
    assert outcome.data == ["a"]
    assert len(script.requests) == 1


def test_a_post_stream_can_be_told_to_reconnect(twin: Twin) -> None:
    script = Script(window(encode_event("a", id="1")), window(encode_event("b")))
    outcome = run(twin, script, method="POST", json={}, reconnect=True)
    assert outcome.data == ["a", "b"]
    assert script.header("last-event-id") == [None, "1", "1"]


@pytest.mark.parametrize(
    "options",
    [{"format": "xml"}, {"max_retries": -1}, {"recent_events": -1}],
    ids=["format", "max_retries", "recent_events"],
)
def test_invalid_options_are_refused_at_once(twin: Twin, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        run(twin, Script(), **options)
