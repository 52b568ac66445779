"""What the client reads: events as an EventSource would dispatch them, in both formats, from
streams that use every line end, a BOM, odd ids and odd ``retry`` values, or that are cut."""

from __future__ import annotations

import json

from serverless_sse.client import Event, InvalidStream
from serverless_sse.protocol import encode_event

from .scripted import Script, Twin, run, window

BOM = "\ufeff".encode()


def test_events_carry_their_type_data_and_id(twin: Twin) -> None:
    script = Script(
        window(encode_event('{"n":1}', event="tick", id="c1"), encode_event("plain", id="c2"))
    )
    outcome = run(twin, script)
    assert outcome.events == [Event("tick", '{"n":1}', "c1"), Event("message", "plain", "c2")]
    assert outcome.events[0].json() == {"n": 1}


def test_multi_line_data_is_joined_with_line_feeds(twin: Twin) -> None:
    outcome = run(twin, Script(window(b"data: a\ndata: b\n\n")))
    assert outcome.data == ["a\nb"]


def test_cr_only_line_ends_are_read(twin: Twin) -> None:
    script = Script(window(b"retry: 10\rid: 1\revent: e\rdata: x\rdata: y\r\r"))
    outcome = run(twin, script)
    assert outcome.events == [Event("e", "x\ny", "1")]
    assert outcome.sleeps == [0.01]


def test_a_bom_at_the_start_of_each_response_is_ignored(twin: Twin) -> None:
    script = Script(
        window(BOM + b"id: 1\ndata: a\n\n"),
        window(BOM + b"data: b\n\n"),
    )
    assert run(twin, script).data == ["a", "b"]


def test_an_id_with_nul_is_ignored_and_the_previous_id_is_sent_back(twin: Twin) -> None:
    script = Script(window(b"id: 1\ndata: a\n\n", b"id: 2\x00x\ndata: b\n\n"))
    outcome = run(twin, script)
    assert [e.id for e in outcome.events] == ["1", "1"]
    assert script.header("last-event-id") == [None, "1"]


def test_a_retry_that_is_not_all_digits_is_ignored(twin: Twin) -> None:
    script = Script(
        window(b"retry: 1500\n\n", b"retry: 2s\n\nretry: 1e3\n\nretry: -1\n\n", b"data: a\n\n")
    )
    outcome = run(twin, script)
    assert outcome.sleeps == [1.5]


def test_an_event_cut_off_by_a_dropped_connection_is_not_delivered(twin: Twin) -> None:
    script = Script(
        window(b"id: 1\ndata: a\n\n", b"id: 2\ndata: hal", cut=True),
        window(b"id: 2\ndata: half and the rest\n\n"),
    )
    outcome = run(twin, script)
    assert outcome.data == ["a", "half and the rest"]
    assert script.header("last-event-id") == [None, "1", "2"]


def test_an_event_left_open_by_a_clean_end_of_response_is_not_delivered(twin: Twin) -> None:
    script = Script(window(b"id: 1\ndata: a\n\nid: 2\ndata: b\n"), window(b"id: 2\ndata: b\n\n"))
    outcome = run(twin, script)
    assert outcome.data == ["a", "b"]
    assert script.header("last-event-id") == [None, "1", "2"]


def test_an_envelope_event_takes_its_type_from_its_data(twin: Twin) -> None:
    payload = {"type": "vote_update", "poll_id": "p", "votes": {"a": 2}}
    script = Script(window(encode_event(json.dumps(payload), id="1")))
    outcome = run(twin, script, format="envelope")
    assert outcome.types == ["vote_update"]
    assert outcome.events[0].json() == payload


def test_envelope_data_without_a_type_stays_a_message(twin: Twin) -> None:
    script = Script(window(b'data: {"x":1}\n\n', b"data: [DONE]\n\n", b'data: {"type":7}\n\n'))
    outcome = run(twin, script, format="envelope")
    assert outcome.types == ["message", "message", "message"]
    assert outcome.data == ['{"x":1}', "[DONE]", '{"type":7}']


def test_a_named_event_keeps_its_own_type_in_envelope_mode(twin: Twin) -> None:
    script = Script(window(b'event: timeout\ndata: {"type":"other"}\n\n'))
    assert run(twin, script, format="envelope").types == ["timeout"]


def test_named_mode_does_not_look_inside_the_data(twin: Twin) -> None:
    script = Script(window(b'data: {"type":"vote_update"}\n\n'))
    assert run(twin, script).types == ["message"]


def test_an_event_over_the_size_limit_stops_the_stream(twin: Twin) -> None:
    script = Script(
        window(b"data: ok\n\n", b"data: 0123456789\ndata: x\n\n"), window(b"data: z\n\n")
    )
    outcome = run(twin, script, max_event_bytes=10)
    assert outcome.data == ["ok"]
    assert isinstance(outcome.error, InvalidStream)
    assert len(script.requests) == 1


def test_a_line_over_the_size_limit_stops_the_stream(twin: Twin) -> None:
    script = Script(window(b": " + b"x" * 100))
    outcome = run(twin, script, max_line_bytes=50)
    assert isinstance(outcome.error, InvalidStream)
    assert len(script.requests) == 1


def test_comments_and_heartbeats_are_not_events(twin: Twin) -> None:
    script = Script(window(b": ok\n\n", b":\n\n", b": hb\n\ndata: a\n\n"))
    assert run(twin, script).data == ["a"]


def test_an_id_that_cannot_be_sent_back_as_a_header_stops_the_stream(twin: Twin) -> None:
    # "id:  a" has the value " a": a header value cannot start with a space.
    script = Script(window(b"id:  a\ndata: x\n\n"), window(b"data: y\n\n"))
    outcome = run(twin, script)
    assert outcome.data == ["x"]
    assert isinstance(outcome.error, InvalidStream)
    assert len(script.requests) == 1


def test_a_non_ascii_id_is_sent_back_as_utf8(twin: Twin) -> None:
    script = Script(window("id: é\ndata: x\n\n".encode()))
    run(twin, script)
    assert script.requests[1].headers.raw[-1] == (b"last-event-id", "é".encode())
