"""Events on the wire in both formats, read back with the project's own decoder."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serverless_sse.events import EventFormat, dumps
from serverless_sse.frames import (
    HEARTBEAT,
    control_frame,
    envelope_json,
    event_body,
    opening,
    with_id,
)
from serverless_sse.protocol import Comment, EventStreamDecoder, ServerSentEvent

CURSOR = "AQLtT8TquS0AAPyjz5dIzAhBYkMtMTJfeBH8RArr"


def read(raw: bytes) -> tuple[list[ServerSentEvent | Comment], EventStreamDecoder]:
    decoder = EventStreamDecoder()
    items = decoder.feed(raw)
    decoder.close()
    return items, decoder


def pairs(text: str) -> list[tuple[str, Any]]:
    """The top-level members of a JSON object, in order, repeats included."""
    found: list[list[tuple[str, Any]]] = []

    def hook(members: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append(members)
        return dict(members)

    json.loads(text, object_pairs_hook=hook)
    return found[-1]  # the outermost object is completed last


# -- envelope_json ---------------------------------------------------------------------------


def test_an_object_payload_gets_the_type_first() -> None:
    assert envelope_json("update", '{"a":1,"b":[2]}') == '{"type":"update","a":1,"b":[2]}'


def test_an_empty_object_payload_becomes_just_the_type() -> None:
    assert envelope_json("ping", "{}") == '{"type":"ping"}'


@pytest.mark.parametrize("data", ["[1,2]", "[]", '"text"', '""', "42", "-1.5", "null", "true"])
def test_a_payload_that_is_not_an_object_travels_as_data(data: str) -> None:
    assert envelope_json("t", data) == f'{{"type":"t","data":{data}}}'
    assert json.loads(envelope_json("t", data)) == {"type": "t", "data": json.loads(data)}


def test_the_event_type_wins_over_a_type_key_in_the_payload() -> None:
    text = envelope_json("update", '{"a":1,"type":"spoofed","b":2}')
    assert pairs(text) == [("type", "update"), ("a", 1), ("b", 2)]


def test_a_payload_type_key_first_is_replaced_not_repeated() -> None:
    assert pairs(envelope_json("t", '{"type":"x"}')) == [("type", "t")]


def test_a_type_key_in_a_nested_object_is_kept() -> None:
    text = envelope_json("t", '{"inner":{"type":"x"}}')
    assert pairs(text) == [("type", "t"), ("inner", {"type": "x"})]


def test_a_type_string_in_a_value_is_not_a_type_key() -> None:
    text = envelope_json("t", dumps({"a": '"type"', "b": "type"}))
    assert pairs(text) == [("type", "t"), ("a", '"type"'), ("b", "type")]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "data", "a", "tÿpe"]) | st.text(max_size=5), inner
        )
    ),
    max_leaves=12,
)
event_types = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)


@given(event_types, json_values)
def test_an_envelope_is_one_json_object_with_exactly_one_type_first(
    event_type: str, payload: Any
) -> None:
    members = pairs(envelope_json(event_type, dumps(payload)))
    assert members[0] == ("type", event_type)
    assert [key for key, _ in members].count("type") == 1
    if isinstance(payload, dict):
        rest = {k: v for k, v in payload.items() if k != "type"}
    else:
        rest = {"data": payload}
    assert dict(members[1:]) == rest
    assert len(members) == 1 + len(rest)


# -- event bodies ----------------------------------------------------------------------------


def test_a_named_event_carries_its_type_in_the_event_field() -> None:
    body = event_body("update", '{"a":1}', "named")
    assert body == b'event: update\ndata: {"a":1}\n\n'
    assert read(body)[0] == [ServerSentEvent("update", '{"a":1}', "")]


def test_an_envelope_event_is_a_message_with_the_type_inside() -> None:
    body = event_body("update", '{"a":1}', "envelope")
    assert body == b'data: {"type":"update","a":1}\n\n'
    assert read(body)[0] == [ServerSentEvent("message", '{"type":"update","a":1}', "")]


@pytest.mark.parametrize("fmt", ["named", "envelope"])
def test_with_id_gives_the_event_its_cursor(fmt: EventFormat) -> None:
    items, decoder = read(with_id(CURSOR, event_body("t", '"x"', fmt)))
    assert [e.last_event_id for e in items if isinstance(e, ServerSentEvent)] == [CURSOR]
    assert decoder.last_event_id == CURSOR


@given(event_types, json_values, st.sampled_from(["named", "envelope"]))
def test_every_event_body_decodes_to_one_event_with_the_payload(
    event_type: str, payload: Any, fmt: EventFormat
) -> None:
    data = dumps(payload)
    (event,), _ = read(with_id(CURSOR, event_body(event_type, data, fmt)))
    assert isinstance(event, ServerSentEvent)
    assert event.last_event_id == CURSOR
    if fmt == "named":
        assert (event.type, event.data) == (event_type, data)
    else:
        assert (event.type, event.data) == ("message", envelope_json(event_type, data))


# -- control frames, opening, heartbeat ------------------------------------------------------


def test_a_named_control_frame() -> None:
    payload = {"reason": "window_elapsed", "retry_ms": 1000}
    items, decoder = read(control_frame("timeout", payload, CURSOR, "named"))
    assert items == [ServerSentEvent("timeout", dumps(payload), CURSOR)]
    assert decoder.last_event_id == CURSOR


def test_an_envelope_control_frame() -> None:
    payload = {"reason": "history_trimmed", "missed_from": 3, "missed_to": 9}
    (event,), _ = read(control_frame("reset", payload, CURSOR, "envelope"))
    assert isinstance(event, ServerSentEvent)
    assert (event.type, event.last_event_id) == ("message", CURSOR)
    assert pairs(event.data) == [("type", "reset"), *payload.items()]


def test_the_opening_sets_the_retry_and_sends_a_comment_but_no_event() -> None:
    items, decoder = read(opening(2500))
    assert items == [Comment("ok")]
    assert decoder.retry == 2500
    assert decoder.last_event_id == ""


def test_the_opening_then_events_read_normally() -> None:
    items, _ = read(opening(1000) + event_body("t", "1", "named"))
    assert items == [Comment("ok"), ServerSentEvent("t", "1", "")]


def test_the_heartbeat_is_a_comment_only() -> None:
    assert read(HEARTBEAT)[0] == [Comment("hb")]
