"""The SSE wire format: the encoder, and the decoder against the WHATWG parsing rules (§9.2.5–6).

Every decoder test feeds bytes and looks at what an EventSource would see: the events it
dispatches (type, data, lastEventId), the comments, the reconnection time and the last event
ID a reconnect would send.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_sse.protocol import (
    Comment,
    EventStreamDecoder,
    ProtocolError,
    ServerSentEvent,
    encode_comment,
    encode_event,
    encode_retry,
)

Item = ServerSentEvent | Comment
BOM = "\ufeff".encode()


def parse(
    *chunks: bytes, max_line_bytes: int | None = None, max_event_bytes: int | None = None
) -> tuple[list[Item], EventStreamDecoder]:
    """Feed ``chunks`` in order, then end the stream; returns everything read and the decoder."""
    decoder = EventStreamDecoder(max_line_bytes=max_line_bytes, max_event_bytes=max_event_bytes)
    items: list[Item] = []
    for chunk in chunks:
        items.extend(decoder.feed(chunk))
    decoder.close()
    return items, decoder


def events(*chunks: bytes) -> list[ServerSentEvent]:
    return [i for i in parse(*chunks)[0] if isinstance(i, ServerSentEvent)]


def data_of(*chunks: bytes) -> list[str]:
    return [e.data for e in events(*chunks)]


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def split_at(raw: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def message(data: str, last_event_id: str = "", type: str = "message") -> ServerSentEvent:
    return ServerSentEvent(type, data, last_event_id)


# -- line ends -------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_each_line_end_ends_a_line(eol: bytes) -> None:
    raw = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert events(raw) == [ServerSentEvent("e", "a\nb", "")]


def test_line_ends_may_be_mixed_in_one_stream() -> None:
    assert data_of(b"data: a\rdata: b\ndata: c\r\n\r\ndata: d\n\r") == ["a\nb\nc", "d"]


def test_lf_then_cr_are_two_line_ends() -> None:
    # "\n\r" is not a line end pair: it ends the data line and then a blank line.
    assert data_of(b"data: a\n\r") == ["a"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF read as a second line end, the blank line would dispatch "a" on its own.
    assert data_of(b"data: a\r", b"\ndata: b\n\n") == ["a\nb"]


def test_crlf_split_across_chunks_then_a_blank_line_split_the_same_way() -> None:
    assert data_of(b"data: a\r", b"\n\r", b"\ndata: b\n\n") == ["a", "b"]


def test_cr_at_the_end_of_a_chunk_followed_by_another_character_is_a_line_end() -> None:
    assert data_of(b"data: a\r", b"data: b\r\r") == ["a\nb"]


def test_cr_at_the_end_of_a_chunk_followed_by_cr_is_a_blank_line() -> None:
    assert data_of(b"data: a\r", b"\rdata: b\n\n") == ["a", "b"]


def test_empty_chunks_between_cr_and_lf_do_not_break_a_crlf() -> None:
    assert data_of(b"data: a\r", b"", b"", b"\ndata: b\n\n") == ["a\nb"]


def test_only_cr_lf_and_crlf_end_lines() -> None:
    # str.splitlines() would also split on these; the SSE grammar does not.
    others = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    assert data_of(f"data: a{others}b\n\n".encode()) == [f"a{others}b"]


# -- byte order mark -------------------------------------------------------------------------


def test_a_leading_bom_is_ignored() -> None:
    assert data_of(BOM + b"data: a\n\n") == ["a"]


def test_only_one_leading_bom_is_ignored() -> None:
    # The second BOM starts the first line's field name: "\ufeffdata" is an unknown field.
    assert data_of(BOM + BOM + b"data: a\n\ndata: b\n\n") == ["b"]


def test_a_bom_split_across_chunks_is_ignored() -> None:
    assert data_of(*bytewise(BOM), b"data: a\n\n") == ["a"]


def test_a_bom_after_the_start_of_the_stream_is_content() -> None:
    assert data_of(b"data: a\n\n" + BOM + b"data: b\n\ndata: \xef\xbb\xbfc\n\n") == ["a", "\ufeffc"]


def test_a_bom_in_a_later_chunk_is_content() -> None:
    assert data_of(b"data: a\n\n", BOM + b"data: b\n\n", b"data: c\n\n") == ["a", "c"]


# -- UTF-8 -----------------------------------------------------------------------------------


def test_utf8_is_decoded() -> None:
    assert data_of("data: é€😀 日本\n\n".encode()) == ["é€😀 日本"]


def test_utf8_split_across_chunks_is_decoded_whole() -> None:
    assert data_of(*bytewise("data: é€😀\n\n".encode())) == ["é€😀"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff", "\ufffd"),
        (b"a\x80b", "a\ufffdb"),
        (b"\xe2\x82", "\ufffd"),  # a cut sequence is one maximal subpart: one replacement
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is not UTF-8
        (b"\xc0\xaf", "\ufffd\ufffd"),  # overlong
    ],
)
def test_invalid_utf8_is_replaced_with_u_fffd(raw: bytes, expected: str) -> None:
    assert data_of(b"data: " + raw + b"\n\n") == [expected]


def test_a_cut_utf8_sequence_before_a_line_end_does_not_swallow_the_line_end() -> None:
    assert data_of(b"data: \xe2\x82", b"\n\n") == ["\ufffd"]


# -- data ------------------------------------------------------------------------------------


def test_data_lines_are_joined_with_lf() -> None:
    assert data_of(b"data: a\ndata: b\ndata: c\n\n") == ["a\nb\nc"]


def test_only_one_trailing_lf_is_removed_from_data() -> None:
    assert data_of(b"data: a\ndata\n\n") == ["a\n"]
    assert data_of(b"data\ndata\n\n") == ["\n"]


@pytest.mark.parametrize("line", [b"data", b"data:", b"data: "])
def test_data_with_an_empty_value_dispatches_an_empty_event(line: bytes) -> None:
    assert events(line + b"\n\n") == [message("")]


def test_a_blank_line_without_data_dispatches_nothing() -> None:
    assert events(b"\n\n\nevent: e\n\n: c\n\n") == []


def test_a_blank_line_without_data_resets_the_event_type() -> None:
    assert events(b"event: e\n\ndata: a\n\n") == [message("a")]


# -- event -----------------------------------------------------------------------------------


def test_the_default_event_type_is_message() -> None:
    assert events(b"data: a\n\n") == [message("a")]


def test_event_sets_the_type() -> None:
    assert events(b"event: update\ndata: a\n\n") == [ServerSentEvent("update", "a", "")]


def test_the_event_type_lasts_for_one_event() -> None:
    assert [e.type for e in events(b"event: x\ndata: a\n\ndata: b\n\n")] == ["x", "message"]


def test_an_empty_event_type_means_message() -> None:
    assert [e.type for e in events(b"event: x\nevent\ndata: a\n\n")] == ["message"]


def test_the_last_event_field_wins() -> None:
    assert [e.type for e in events(b"event: x\nevent: y\ndata: a\n\n")] == ["y"]


# -- id --------------------------------------------------------------------------------------


def test_id_sets_the_last_event_id_of_the_event_and_the_reader() -> None:
    items, decoder = parse(b"id: 42\ndata: a\n\n")
    assert items == [message("a", "42")]
    assert decoder.last_event_id == "42"


def test_the_last_event_id_persists_across_events() -> None:
    assert events(b"id: 1\ndata: a\n\ndata: b\n\n") == [message("a", "1"), message("b", "1")]


@pytest.mark.parametrize("line", [b"id", b"id:", b"id: "])
def test_an_empty_id_resets_the_last_event_id(line: bytes) -> None:
    items, decoder = parse(b"id: 1\ndata: a\n\n" + line + b"\ndata: b\n\n")
    assert items == [message("a", "1"), message("b", "")]
    assert decoder.last_event_id == ""


def test_an_id_containing_nul_is_ignored() -> None:
    items, decoder = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert items == [message("a", "1"), message("b", "1")]
    assert decoder.last_event_id == "1"


def test_an_id_alone_sets_the_last_event_id_without_dispatching() -> None:
    items, decoder = parse(b"id: 7\n\n")
    assert items == []
    assert decoder.last_event_id == "7"


def test_an_id_takes_effect_only_when_its_event_is_dispatched() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(b"id: 7\ndata: a\n")
    assert decoder.last_event_id == ""
    decoder.feed(b"\n")
    assert decoder.last_event_id == "7"


def test_an_id_value_keeps_everything_after_one_space() -> None:
    assert events(b"id:  a b:c \ndata: x\n\n") == [message("x", " a b:c ")]


# -- retry -----------------------------------------------------------------------------------


def test_retry_sets_the_reconnection_time() -> None:
    assert parse(b"retry: 3000\n")[1].retry == 3000


def test_retry_takes_effect_without_a_blank_line_and_dispatches_nothing() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(b"retry: 5\n") == []
    assert decoder.retry == 5


def test_retry_may_be_zero_and_have_leading_zeros() -> None:
    assert parse(b"retry: 0\n")[1].retry == 0
    assert parse(b"retry: 007\n")[1].retry == 7


def test_the_last_valid_retry_wins() -> None:
    assert parse(b"retry: 1\nretry: 2\nretry: x\n")[1].retry == 2


@pytest.mark.parametrize(
    "value",
    [
        b"abc",
        b"12a",
        b" 12",  # "retry:  12": only one space is stripped
        b"12 ",
        b"-1",
        b"+1",
        b"1.5",
        b"1e3",
        b"",
        "١٢".encode(),  # Arabic-Indic digits are digits, but not ASCII digits
        "１２".encode(),  # fullwidth digits
    ],
)
def test_retry_is_ignored_unless_all_ascii_digits(value: bytes) -> None:
    decoder = EventStreamDecoder()
    decoder.feed(b"retry: 100\n")
    decoder.feed(b"retry: " + value + b"\n")
    assert decoder.retry == 100


def test_retry_without_a_value_is_ignored() -> None:
    assert parse(b"retry: 100\nretry\n")[1].retry == 100


def test_a_retry_of_thousands_of_digits_is_ignored_not_a_crash() -> None:
    # int() refuses over 4300 digits; the parser must not raise on such a line.
    assert parse(b"retry: 100\nretry: " + b"9" * 5000 + b"\n")[1].retry == 100


def test_a_retry_beyond_64_bit_milliseconds_is_ignored() -> None:
    assert parse(b"retry: 9223372036854775807\n")[1].retry == 2**63 - 1
    assert parse(b"retry: 100\nretry: 9223372036854775808\n")[1].retry == 100


def test_leading_zeros_do_not_make_a_retry_too_long() -> None:
    assert parse(b"retry: " + b"0" * 5000 + b"25\n")[1].retry == 25


# -- comments and fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b":", ""),
        (b": hello", "hello"),
        (b":hello", "hello"),
        (b":  two", " two"),
        (b": a:b", "a:b"),
    ],
)
def test_a_line_starting_with_a_colon_is_a_comment(line: bytes, text: str) -> None:
    assert parse(line + b"\n")[0] == [Comment(text)]


def test_a_comment_inside_an_event_does_not_interrupt_it() -> None:
    assert parse(b"data: a\n: hb\ndata: b\n\n")[0] == [Comment("hb"), message("a\nb")]


def test_a_field_without_colon_has_an_empty_value() -> None:
    assert events(b"event\ndata\n\n") == [message("")]


def test_only_one_leading_space_is_stripped_from_a_value() -> None:
    assert data_of(b"data:  a\ndata:a\ndata:\tb\ndata: c \n\n") == [" a\na\n\tb\nc "]


def test_a_value_may_contain_colons() -> None:
    assert data_of(b"data: a:b: c\n\n") == ["a:b: c"]


@pytest.mark.parametrize("line", [b"foo: bar", b"Data: x", b"data : x", b" data: x", b"\x00: x"])
def test_unknown_fields_are_ignored(line: bytes) -> None:
    assert parse(line + b"\ndata: a\n\n")[0] == [message("a")]


# -- end of stream ---------------------------------------------------------------------------


def test_an_event_without_its_blank_line_is_discarded_at_close() -> None:
    items, decoder = parse(b"id: 5\ndata: a\n")
    assert items == []
    assert decoder.last_event_id == ""


def test_an_unterminated_last_line_is_discarded() -> None:
    assert parse(b"data: a\n\ndata: b")[0] == [message("a")]


def test_an_unterminated_id_line_does_not_change_the_last_event_id() -> None:
    items, decoder = parse(b"id: 1\ndata: a\n\nid: 5")
    assert items == [message("a", "1")]
    assert decoder.last_event_id == "1"


def test_an_unterminated_retry_line_does_not_change_the_reconnection_time() -> None:
    assert parse(b"retry: 5")[1].retry is None


def test_after_close_the_next_response_starts_afresh_but_keeps_id_and_retry() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(b"retry: 50\nid: 1\ndata: a\n\nid: 2\nevent: x\ndata: half")
    decoder.close()
    # A reconnect: a new response, which may start with a BOM of its own.
    assert decoder.feed(BOM + b"data: b\n\n") == [message("b", "1")]
    assert decoder.retry == 50


def test_a_decoder_may_start_from_a_known_last_event_id() -> None:
    decoder = EventStreamDecoder(last_event_id="41")
    # Events without an id of their own carry it, as after a reconnect.
    assert decoder.feed(b"data: a\n\nid: 42\ndata: b\n\n") == [
        message("a", "41"),
        message("b", "42"),
    ]
    assert decoder.last_event_id == "42"


def test_close_drops_a_cut_utf8_sequence() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(b"data: \xe2\x82")
    decoder.close()
    assert decoder.feed(b"data: a\n\n") == [message("a")]


# -- line length cap -------------------------------------------------------------------------


def test_a_line_longer_than_the_cap_raises() -> None:
    decoder = EventStreamDecoder(max_line_bytes=100)
    with pytest.raises(ProtocolError):
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")


def test_a_line_longer_than_the_cap_raises_before_it_ends() -> None:
    decoder = EventStreamDecoder(max_line_bytes=100)
    decoder.feed(b"data: " + b"x" * 90)
    with pytest.raises(ProtocolError):
        decoder.feed(b"x" * 10)


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1000])
def test_the_line_cap_holds_however_the_line_is_cut(chunk_size: int) -> None:
    raw = b"data: " + b"x" * 95 + b"\n\n"  # 101 characters before the line end
    with pytest.raises(ProtocolError):
        parse(
            *[raw[i : i + chunk_size] for i in range(0, len(raw), chunk_size)], max_line_bytes=100
        )


def test_a_line_exactly_at_the_cap_is_read() -> None:
    raw = b"data: " + b"x" * 94 + b"\r\n\r\n"
    assert parse(*bytewise(raw), max_line_bytes=100)[0] == [message("x" * 94)]


def test_the_line_cap_does_not_count_the_line_end_or_the_bom() -> None:
    raw = BOM + b"data: " + b"x" * 94 + b"\r\n\r\n"
    assert len(parse(raw, max_line_bytes=100)[0]) == 1


# -- event size cap --------------------------------------------------------------------------


def test_an_event_assembled_from_many_short_lines_is_held_to_the_event_cap() -> None:
    # Every line is well under the line cap; together they are over the event cap.
    decoder = EventStreamDecoder(max_line_bytes=20, max_event_bytes=100)
    with pytest.raises(ProtocolError):
        decoder.feed(b"data: xxxxxxxxx\n" * 11)


def test_the_event_cap_raises_before_the_event_is_dispatched() -> None:
    # A stream that never sends the blank line must not grow the reader's memory without bound.
    decoder = EventStreamDecoder(max_event_bytes=100)
    decoder.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(ProtocolError):
        decoder.feed(b"data: " + b"x" * 60 + b"\n")


def test_an_event_exactly_at_the_cap_is_read() -> None:
    # 50 + LF + 49 = 100 characters of data, as dispatched.
    raw = b"data: " + b"x" * 50 + b"\ndata: " + b"y" * 49 + b"\n\n"
    decoder = EventStreamDecoder(max_event_bytes=100)
    assert decoder.feed(raw) == [message("x" * 50 + "\n" + "y" * 49)]


def test_the_event_cap_counts_the_line_feeds_that_join_data_lines() -> None:
    # 101 empty data lines dispatch as 100 LFs; one more line is one more character.
    assert parse(b"data\n" * 101 + b"\n", max_event_bytes=100)[0] == [message("\n" * 100)]
    with pytest.raises(ProtocolError):
        parse(b"data\n" * 102 + b"\n", max_event_bytes=100)


def test_the_event_cap_applies_to_each_event_on_its_own() -> None:
    raw = (b"data: " + b"x" * 80 + b"\n\n") * 5
    assert len(parse(raw, max_event_bytes=100)[0]) == 5


def test_the_event_cap_does_not_count_other_fields_or_comments() -> None:
    raw = b": " + b"c" * 200 + b"\nid: " + b"i" * 200 + b"\nevent: e\ndata: ok\n\n"
    assert parse(raw, max_event_bytes=10)[0] == [Comment("c" * 200), message("ok", "i" * 200, "e")]


def test_an_event_discarded_at_the_end_of_a_stream_does_not_count_against_the_next() -> None:
    decoder = EventStreamDecoder(max_event_bytes=100)
    decoder.feed(b"data: " + b"x" * 90 + b"\n")
    decoder.close()  # the response ended mid-event; a reconnect starts afresh
    assert decoder.feed(b"data: " + b"y" * 90 + b"\n\n") == [message("y" * 90)]


def test_a_long_line_in_small_chunks_is_read_in_linear_time() -> None:
    # 200 KB line in 1 KB chunks: quadratic re-joining would take seconds here.
    line = b"data: " + b"x" * 200_000 + b"\n\n"
    decoder = EventStreamDecoder()
    items: list[Item] = []
    for i in range(0, len(line), 1024):
        items.extend(decoder.feed(line[i : i + 1024]))
    assert items == [message("x" * 200_000)]


def test_many_short_lines_fed_one_byte_at_a_time() -> None:
    raw = b"data: ab\n\n" * 2000
    assert len(events(*bytewise(raw))) == 2000


# -- encoder ---------------------------------------------------------------------------------


def test_encode_event_writes_id_event_then_data_and_a_blank_line() -> None:
    assert encode_event("x", event="t", id="1") == b"id: 1\nevent: t\ndata: x\n\n"


def test_encode_event_with_data_only() -> None:
    assert encode_event("hello") == b"data: hello\n\n"


def test_encode_event_with_retry() -> None:
    assert encode_event("x", retry=10) == b"retry: 10\ndata: x\n\n"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("", [""]),
        ("a\nb", ["a", "b"]),
        ("a\rb", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("a\r\n\rb\n\nc", ["a", "", "b", "", "c"]),
        ("a\n", ["a", ""]),
        ("\n", ["", ""]),
        ("\r\n\r\n", ["", "", ""]),
    ],
    ids=["empty", "LF", "CR", "CRLF", "mixed", "trailing-LF", "only-LF", "two-CRLF"],
)
def test_each_line_of_data_gets_its_own_data_line(data: str, lines: list[str]) -> None:
    expected = "".join(f"data: {line}\n" for line in lines) + "\n"
    assert encode_event(data) == expected.encode()
    assert data_of(encode_event(data)) == ["\n".join(lines)]


def test_data_cannot_inject_fields_or_events() -> None:
    payload = "a\n\nid: evil\nevent: evil\rretry: 1\r\n\r\ndata: b"
    items, decoder = parse(encode_event(payload, id="good"))
    assert items == [message(re.sub(r"\r\n|\r", "\n", payload), "good")]
    assert decoder.retry is None


def test_a_leading_space_in_data_survives() -> None:
    assert data_of(encode_event("  two spaces")) == ["  two spaces"]


@pytest.mark.parametrize("event", ["a\nb", "a\rb", "a\r\nb", "\n"])
def test_an_event_type_with_a_line_break_is_refused(event: str) -> None:
    with pytest.raises(ProtocolError):
        encode_event("x", event=event)


@pytest.mark.parametrize("id", ["a\nb", "a\rb", "\r\n", "a\x00b"])
def test_an_id_with_a_line_break_or_nul_is_refused(id: str) -> None:
    with pytest.raises(ProtocolError):
        encode_event("x", id=id)


@pytest.mark.parametrize("retry", [-1, True, False, 1.5, "10", None])
def test_retry_must_be_a_non_negative_int(retry: object) -> None:
    if retry is None:
        assert encode_event("x", retry=None) == b"data: x\n\n"
        return
    with pytest.raises(ProtocolError):
        encode_event("x", retry=retry)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        encode_retry(retry)  # type: ignore[arg-type]


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


def test_encode_retry_sets_the_reconnection_time_and_dispatches_nothing() -> None:
    assert encode_retry(2500) == b"retry: 2500\n\n"
    items, decoder = parse(encode_retry(2500))
    assert (items, decoder.retry) == ([], 2500)


@pytest.mark.parametrize(
    ("text", "raw", "comments"),
    [
        ("", b":\n\n", [""]),
        ("hb", b": hb\n\n", ["hb"]),
        ("a\nb", b": a\n: b\n\n", ["a", "b"]),
        ("a\r\nb\rc", b": a\n: b\n: c\n\n", ["a", "b", "c"]),
    ],
)
def test_encode_comment_writes_comment_lines(text: str, raw: bytes, comments: list[str]) -> None:
    assert encode_comment(text) == raw
    assert parse(raw)[0] == [Comment(c) for c in comments]


# -- properties ------------------------------------------------------------------------------

single_line = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
event_ids = single_line.filter(lambda s: "\0" not in s)
one_event = st.tuples(st.text(), st.none() | single_line, st.none() | event_ids)


@st.composite
def chunked(draw: st.DrawFn, raw: bytes) -> list[bytes]:
    """``raw`` cut at arbitrary points, sometimes into single bytes."""
    if raw and draw(st.integers(0, 9)) == 0:
        return bytewise(raw)
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=20))
    return split_at(raw, cuts)


@given(st.lists(one_event, min_size=1, max_size=5), st.data())
def test_encoded_events_decode_to_the_same_events_however_the_bytes_are_cut(
    batch: list[tuple[str, str | None, str | None]], data: st.DataObject
) -> None:
    raw = b"".join(encode_event(d, event=e, id=i) for d, e, i in batch)
    expected = []
    last_id = ""
    for payload, event, id in batch:
        last_id = last_id if id is None else id
        expected.append(
            ServerSentEvent(event or "message", re.sub(r"\r\n|\r", "\n", payload), last_id)
        )
    items, decoder = parse(*data.draw(chunked(raw)))
    assert items == expected
    assert decoder.last_event_id == last_id


# Bytes that are mostly SSE: field names, line ends, BOMs, cut and invalid UTF-8.
_PIECES = [
    b"data",
    b"data:",
    b"data: x",
    b"event: e",
    b"id: 1",
    b"id",
    b"retry: 5",
    b"retry",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    BOM,
    b"\xef\xbb",
    b"\xe2\x82",
    b"\xac",
    b"\xff",
]
sse_ish_bytes = st.lists(st.sampled_from(_PIECES) | st.binary(max_size=6), max_size=40).map(
    b"".join
)


def _everything(decoder: EventStreamDecoder, chunks: list[bytes]) -> tuple[object, ...]:
    items: list[Item] = []
    for chunk in chunks:
        items.extend(decoder.feed(chunk))
    state = (decoder.last_event_id, decoder.retry)
    decoder.close()
    return items, state, decoder.last_event_id, decoder.feed(b"data: after\n\n")


@given(st.binary() | sse_ish_bytes, st.data())
def test_decoding_does_not_depend_on_how_the_bytes_are_cut(raw: bytes, data: st.DataObject) -> None:
    whole = _everything(EventStreamDecoder(), [raw])
    assert _everything(EventStreamDecoder(), data.draw(chunked(raw))) == whole


@given(sse_ish_bytes, st.integers(0, 12), st.data())
def test_the_line_cap_does_not_depend_on_how_the_bytes_are_cut(
    raw: bytes, cap: int, data: st.DataObject
) -> None:
    def outcome(chunks: list[bytes]) -> object:
        try:
            return _everything(EventStreamDecoder(max_line_bytes=cap), chunks)
        except ProtocolError:
            return ProtocolError

    assert outcome(data.draw(chunked(raw))) == outcome([raw])


@settings(max_examples=50)
@given(st.text(), st.data())
def test_comments_round_trip(text: str, data: st.DataObject) -> None:
    lines = re.split(r"\r\n|\r|\n", text) if text else [""]
    items, _ = parse(*data.draw(chunked(encode_comment(text))))
    assert items == [Comment(line) for line in lines]


@given(sse_ish_bytes, st.integers(0, 12), st.data())
def test_the_event_cap_does_not_depend_on_how_the_bytes_are_cut(
    raw: bytes, cap: int, data: st.DataObject
) -> None:
    def outcome(chunks: list[bytes]) -> object:
        try:
            return _everything(EventStreamDecoder(max_event_bytes=cap), chunks)
        except ProtocolError:
            return ProtocolError

    assert outcome(data.draw(chunked(raw))) == outcome([raw])
