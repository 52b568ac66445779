"""The event model: channel names, publish and close bodies, and the status of every refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serverless_sse.errors import (
    BadRequest,
    InvalidChannel,
    PayloadTooLarge,
    SSEError,
    ValidationFailed,
)
from serverless_sse.events import (
    NewEvent,
    StoredEvent,
    dumps,
    parse_close_body,
    parse_publish_body,
    validate_channel,
)

MAX_EVENT_BYTES = 1024
MAX_BATCH = 10


def publish(body: bytes | Any, *, max_event_bytes: int = MAX_EVENT_BYTES) -> list[NewEvent]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_publish_body(raw, max_event_bytes=max_event_bytes, max_batch=MAX_BATCH)


def close(body: bytes | Any, *, max_event_bytes: int = MAX_EVENT_BYTES) -> NewEvent:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_close_body(raw, max_event_bytes=max_event_bytes)


def refusal(call: Any, *args: Any, **kwargs: Any) -> SSEError:
    with pytest.raises(SSEError) as info:
        call(*args, **kwargs)
    return info.value


# -- channel names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "votes",
        "tasks/42",
        "rooms/lobby",
        "a.b:c-d_e",
        "a",
        "A/b/C/d",
        "...",  # only "." and ".." are path segments with a meaning
        ".hidden/x.",
        "x" * 200,
        "/".join(["ab"] * 67)[:200].rstrip("/"),
    ],
)
def test_valid_channel_names_are_returned_as_is(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 201,
        "a b",
        " a",
        "café",
        "tasks/４２",  # fullwidth digits
        "a//b",
        "/a",
        "a/",
        "/",
        ".",
        "..",
        "./a",
        "a/.",
        "a/./b",
        "a/../b",
        "../a",
        "a\nb",
        "a\n",  # a trailing newline must not slip past the pattern
        "a\x00",
        "a\tb",
        "a\x7f",
        "a\\b",
        "a?b",
        "a#b",
        "a%2Fb",
        "a*",
    ],
)
def test_invalid_channel_names_are_refused_with_422(name: str) -> None:
    error = refusal(validate_channel, name)
    assert isinstance(error, InvalidChannel)
    assert (error.status, error.code) == (422, "invalid_channel")


@given(st.text(max_size=210))
def test_validate_channel_either_returns_the_name_or_raises_invalid_channel(name: str) -> None:
    try:
        assert validate_channel(name) == name
    except InvalidChannel:
        return
    assert 1 <= len(name) <= 200
    assert all(segment not in ("", ".", "..") for segment in name.split("/"))


# -- publish bodies: what is accepted --------------------------------------------------------


def test_a_single_event_object_is_one_event() -> None:
    assert publish({"type": "update", "data": {"a": 1}}) == [NewEvent("update", '{"a":1}')]


def test_the_event_type_defaults_to_message() -> None:
    assert publish({"data": 1}) == [NewEvent("message", "1")]


def test_a_list_is_a_batch_in_order() -> None:
    body = [{"data": 1}, {"type": "b", "data": 2}, {"data": 3, "idempotency_key": "k3"}]
    assert publish(body) == [
        NewEvent("message", "1"),
        NewEvent("b", "2"),
        NewEvent("message", "3", "k3"),
    ]


def test_a_batch_of_exactly_the_maximum_is_accepted() -> None:
    assert len(publish([{"data": i} for i in range(MAX_BATCH)])) == MAX_BATCH


def test_data_is_kept_as_compact_json_with_utf8_unescaped() -> None:
    raw = b'{"data": {"text": "\\u00e9 \xe6\x97\xa5", "list": [1, 2.5, null, true]}}'
    assert publish(raw) == [NewEvent("message", '{"text":"é 日","list":[1,2.5,null,true]}')]


@pytest.mark.parametrize("data", [None, 0, -1.5, "", "x", [], {}, [{"a": [None]}], True])
def test_any_json_value_is_valid_data(data: Any) -> None:
    assert json.loads(publish({"data": data})[0].data) == data


def test_a_surrogate_pair_escape_is_one_character() -> None:
    assert publish(b'{"data": "\\ud83d\\ude00"}') == [NewEvent("message", '"😀"')]


def test_large_integers_are_kept_exactly() -> None:
    assert publish(b'{"data": 123456789012345678901234567890}')[0].data == (
        "123456789012345678901234567890"
    )


@pytest.mark.parametrize("event_type", ["a", "x" * 64, "server_update", "a.b:c-D_9"])
def test_valid_event_types(event_type: str) -> None:
    assert publish({"type": event_type, "data": 1})[0].type == event_type


@pytest.mark.parametrize("key", ["k", "x" * 200, "order-42:attempt/1", "!~{}[]\"'"])
def test_valid_idempotency_keys(key: str) -> None:
    assert publish({"data": 1, "idempotency_key": key})[0].idempotency_key == key


def test_a_null_idempotency_key_is_no_key() -> None:
    assert publish({"data": 1, "idempotency_key": None})[0].idempotency_key is None


def test_data_exactly_at_the_size_limit_is_accepted() -> None:
    # "[1, 2, 3]" as sent, but "[1,2,3]" (7 bytes) as stored: the stored size counts.
    assert publish(b'{"data": [1, 2, 3]}', max_event_bytes=7) == [NewEvent("message", "[1,2,3]")]


# -- publish bodies: what is refused ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"type": "message"},  # data is required, even as null
        {"data": 1, "extra": True},
        {"data": 1, "id": "x"},
        {"type": "", "data": 1},
        {"type": "x" * 65, "data": 1},
        {"type": "a b", "data": 1},
        {"type": "a\n", "data": 1},
        {"type": "a\nb", "data": 1},
        {"type": "é", "data": 1},
        {"type": 5, "data": 1},
        {"type": None, "data": 1},
        {"data": 1, "idempotency_key": ""},
        {"data": 1, "idempotency_key": "a b"},
        {"data": 1, "idempotency_key": "x" * 201},
        {"data": 1, "idempotency_key": "é"},
        {"data": 1, "idempotency_key": "k\n"},
        {"data": 1, "idempotency_key": 5},
        5,
        "x",
        None,
        True,
        [],
        [{"data": 1}, 5],
        [{"data": 1}, {"type": "bad type", "data": 2}],
        [[{"data": 1}]],
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_with_422(body: Any) -> None:
    error = refusal(publish, body)
    assert isinstance(error, ValidationFailed)
    assert error.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data": "\\ud800"}',
        b'{"data": "\\udc00x"}',
        b'{"data": {"\\ud800": 1}}',
        b'{"data": ["ok", "\\ud83d"]}',
    ],
)
def test_a_lone_surrogate_escape_is_refused_with_422(raw: bytes) -> None:
    error = refusal(publish, raw)
    assert isinstance(error, ValidationFailed)
    assert error.status == 422


def test_a_batch_over_the_maximum_is_refused_with_413() -> None:
    error = refusal(publish, [{"data": i} for i in range(MAX_BATCH + 1)])
    assert isinstance(error, PayloadTooLarge)
    assert error.status == 413


def test_data_over_the_size_limit_is_refused_with_413() -> None:
    assert refusal(publish, {"data": [1, 2, 3, 4]}, max_event_bytes=7).status == 413


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    # '"ééééé"' is 7 characters but 12 bytes.
    assert refusal(publish, {"data": "ééééé"}, max_event_bytes=11).status == 413
    assert publish({"data": "ééééé"}, max_event_bytes=12) == [NewEvent("message", '"ééééé"')]


def test_one_oversized_event_refuses_the_whole_batch() -> None:
    body = [{"data": "small"}, {"data": "x" * MAX_EVENT_BYTES}]
    assert refusal(publish, body).status == 413


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"{'data': 1}",
        b'{"data": 1} x',
        b'{"data": 1,}',
        b'{"data": undefined}',
        b'{"data": 01}',
        b"\xef\xbb\xbf" + b'{"data": 1}',  # a BOM is not JSON text
        '{"data": 1}'.encode("utf-16"),
        b'{"data": "\xff"}',  # invalid UTF-8
        b'{"data": "\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8
        b'{"data": NaN}',
        b'{"data": Infinity}',
        b'{"data": -Infinity}',
        b'{"data": 1e400}',  # would be read as inf, which is not JSON
        b'{"data": -1e400}',
        b'{"data": ' + b"1" * 5000 + b"}",  # longer than int() converts
    ],
)
def test_a_body_that_is_not_json_is_refused_with_400(raw: bytes) -> None:
    error = refusal(publish, raw)
    assert isinstance(error, BadRequest)
    assert error.status == 400


@pytest.mark.parametrize(
    "raw", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"data":' * 50_000 + b"1"]
)
def test_deeply_nested_json_is_refused_with_400_not_a_crash(raw: bytes) -> None:
    assert refusal(publish, raw).status == 400


def test_nesting_near_the_recursion_limit_is_accepted_or_refused_with_400() -> None:
    # Where exactly parsing or re-serialising runs out of stack depends on the caller's depth;
    # either way the answer is an SSEError, never a RecursionError escaping as a 500.
    for depth in range(800, 1200, 5):
        raw = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
        try:
            publish(raw, max_event_bytes=10**6)
        except SSEError as error:
            assert error.status == 400


# -- close bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b" ", b"\r\n\t "])
def test_an_empty_close_body_means_complete_with_null_data(raw: bytes) -> None:
    assert close(raw) == NewEvent("complete", "null")


def test_an_empty_close_object_means_complete_with_null_data() -> None:
    assert close({}) == NewEvent("complete", "null")


def test_a_close_body_names_the_final_event() -> None:
    assert close({"type": "archived", "data": {"by": "ops"}}) == NewEvent(
        "archived", '{"by":"ops"}'
    )


def test_a_close_body_with_data_only_is_complete() -> None:
    assert close({"data": [1]}) == NewEvent("complete", "[1]")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "bad type"}, 422),
        ({"data": 1, "extra": 1}, 422),
        ({"data": 1, "idempotency_key": "k"}, 422),
        ([{"data": 1}], 422),
        (None, 422),
        ("complete", 422),
        (b"{", 400),
        (b'{"data": NaN}', 400),
        (b'{"data": "\\ud800"}', 422),
        ({"data": "x" * MAX_EVENT_BYTES}, 413),
    ],
)
def test_a_bad_close_body_is_refused(body: Any, status: int) -> None:
    assert refusal(close, body).status == status


# -- helpers ---------------------------------------------------------------------------------


def test_dumps_is_compact_and_keeps_utf8() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError):
        dumps(float("nan"))


def test_a_stored_event_parses_its_payload() -> None:
    assert StoredEvent("c", 1, "message", '{"a":1}', 0.0).payload() == {"a": 1}
