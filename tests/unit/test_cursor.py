"""Cursors: what goes in ``id:`` and comes back as ``Last-Event-ID``.

A cursor must round-trip every valid set of positions, stay within 1 KiB for as many channels
as a stream may follow, and refuse anything else with a :class:`CursorError` (400), never guess.
"""

from __future__ import annotations

import base64
import hashlib
import string
from collections.abc import Mapping
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_sse.cursor import MAX_CURSOR_LENGTH, Cursor, Position, channel_digest
from serverless_sse.errors import BadRequest, CursorError

MAX_SEQ = 2**53 - 1
MAX_CHANNELS = 32  # the most channels Settings lets one stream follow
B64URL = string.ascii_letters + string.digits + "-_"

# -- building cursors by hand, from the documented layout ------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def entry(channel: str, epoch: bytes, seq: bytes | int) -> bytes:
    seq_bytes = varint(seq) if isinstance(seq, int) else seq
    return channel_digest(channel) + bytes([len(epoch)]) + epoch + seq_bytes


def seal(payload: bytes) -> str:
    """``payload`` with its check digest, as base64url without padding."""
    check = hashlib.blake2b(payload, digest_size=4, person=b"sse-cursor").digest()
    return base64.urlsafe_b64encode(payload + check).rstrip(b"=").decode()


def handmade(*entries: bytes, version: int = 1, count: bytes | None = None) -> str:
    head = bytes([version]) + (varint(len(entries)) if count is None else count)
    return seal(head + b"".join(entries))


def sorted_by_digest(*channels: str) -> list[str]:
    return sorted(channels, key=channel_digest)


# -- strategies ------------------------------------------------------------------------------

segments = st.text(B64URL + ".:", min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
channels = st.lists(segments, min_size=1, max_size=4).map("/".join)
epochs = st.text(B64URL, min_size=1, max_size=8)
positions = st.just(Position("", 0)) | st.builds(Position, epochs, st.integers(0, MAX_SEQ))
position_maps = st.dictionaries(channels, positions, max_size=MAX_CHANNELS)

EXAMPLE = {"tasks/42": Position("AbC-12_x", 17), "rooms/lobby": Position("", 0)}


def example() -> str:
    return Cursor.encode_positions(EXAMPLE)


# -- Position --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "seq"),
    [("", 0), ("a", 0), ("AZaz09-_", MAX_SEQ), ("x", 1)],
)
def test_valid_positions(epoch: str, seq: int) -> None:
    assert Position(epoch, seq).seq == seq


@pytest.mark.parametrize(
    ("epoch", "seq"),
    [
        ("", 1),  # no log yet, so nothing can have been read
        ("a", -1),
        ("a", MAX_SEQ + 1),
        ("a", 2**63 - 1),
        ("a" * 9, 0),
        ("a b", 0),
        ("a.b", 0),
        ("a=", 0),
        ("é", 0),
        ("\ud800", 0),
    ],
)
def test_invalid_positions_are_refused(epoch: str, seq: int) -> None:
    with pytest.raises(ValueError):
        Position(epoch, seq)


# -- round trips -----------------------------------------------------------------------------


@given(position_maps)
def test_decode_reads_back_every_position_encoded(by_channel: Mapping[str, Position]) -> None:
    decoded = Cursor.decode(Cursor.of(by_channel).encode())
    assert decoded == Cursor.of(by_channel)
    assert len(decoded) == len(by_channel)
    for channel, position in by_channel.items():
        assert decoded.position(channel) == position


@given(position_maps)
def test_encode_of_decode_gives_the_same_text(by_channel: Mapping[str, Position]) -> None:
    text = Cursor.encode_positions(by_channel)
    assert Cursor.decode(text).encode() == text


@given(position_maps, st.randoms(use_true_random=False))
def test_encoding_does_not_depend_on_insertion_order(
    by_channel: Mapping[str, Position], random: Random
) -> None:
    items = list(by_channel.items())
    random.shuffle(items)
    assert Cursor.encode_positions(dict(items)) == Cursor.encode_positions(by_channel)


@given(position_maps)
def test_encode_positions_is_the_same_as_building_a_cursor(
    by_channel: Mapping[str, Position],
) -> None:
    assert Cursor.encode_positions(by_channel) == Cursor.of(by_channel).encode()


def test_a_cursor_is_url_safe_text() -> None:
    assert set(example()) <= set(B64URL)


def test_a_cursor_without_channels_round_trips() -> None:
    assert len(Cursor.decode(Cursor.encode_positions({}))) == 0


def test_position_of_a_channel_not_in_the_cursor_is_none() -> None:
    assert Cursor.decode(example()).position("tasks/43") is None


def test_covers_any_tells_whether_a_cursor_holds_one_of_the_channels() -> None:
    cursor = Cursor.decode(example())
    assert cursor.covers_any(["x", "tasks/42"])
    assert not cursor.covers_any(["x", "y"])
    assert not cursor.covers_any([])


def test_equal_cursors_are_equal_and_hash_alike() -> None:
    a, b = Cursor.of(EXAMPLE), Cursor.decode(example())
    assert a == b
    assert hash(a) == hash(b)
    assert a != Cursor.of({"tasks/42": Position("AbC-12_x", 18)})


# -- size ------------------------------------------------------------------------------------


def test_the_most_channels_at_the_largest_positions_fit_in_1_kib() -> None:
    worst = {f"channel/{i:03d}/" + "x" * 180: Position("Z" * 8, MAX_SEQ) for i in range(32)}
    text = Cursor.encode_positions(worst)
    assert len(text) <= MAX_CURSOR_LENGTH == 1024
    assert Cursor.decode(text) == Cursor.of(worst)


def test_a_channel_name_costs_the_same_whatever_its_length() -> None:
    short = Cursor.encode_positions({"a": Position("e", 1)})
    long = Cursor.encode_positions({"a" * 200: Position("e", 1)})
    assert len(short) == len(long)


def test_more_channels_than_fit_in_1_kib_are_refused_when_encoding() -> None:
    too_many = {f"c{i}": Position("Z" * 8, MAX_SEQ) for i in range(40)}
    with pytest.raises(ValueError):
        Cursor.encode_positions(too_many)


# -- strictness ------------------------------------------------------------------------------


def test_cursor_error_is_a_400() -> None:
    assert issubclass(CursorError, BadRequest)
    assert CursorError.status == 400


def test_every_truncation_of_a_cursor_is_refused() -> None:
    text = example()
    for end in range(len(text)):
        with pytest.raises(CursorError):
            Cursor.decode(text[:end])


def test_every_single_character_change_is_refused() -> None:
    text = example()
    for i, original in enumerate(text):
        for replacement in B64URL:
            if replacement != original:
                with pytest.raises(CursorError):
                    Cursor.decode(text[:i] + replacement + text[i + 1 :])


def test_a_dropped_character_is_refused() -> None:
    text = example()
    for i in range(len(text)):
        with pytest.raises(CursorError):
            Cursor.decode(text[:i] + text[i + 1 :])


@pytest.mark.parametrize("bad", ["+", "/", "=", " ", ".", "~", "é", "\n", "\x00", "%3D"])
def test_characters_outside_base64url_are_refused(bad: str) -> None:
    text = example()
    for candidate in (text + bad, bad + text, text[:5] + bad + text[6:]):
        with pytest.raises(CursorError):
            Cursor.decode(candidate)


@pytest.mark.parametrize("padding", ["=", "==", "==="])
def test_padding_is_refused(padding: str) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(example() + padding)


def test_the_empty_string_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode("")


def test_text_longer_than_1024_characters_is_refused_before_decoding() -> None:
    with pytest.raises(CursorError):
        Cursor.decode("A" * 1025)


def test_an_impossible_base64_length_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode("AAAAA")


def test_non_canonical_base64_trailing_bits_are_refused() -> None:
    # A cursor whose byte count is not a multiple of 3 leaves unused bits in its last character.
    text = next(
        t
        for seq in range(1, 1000)
        if len(t := Cursor.encode_positions({"a": Position("e", seq)})) % 4
    )
    last = B64URL.index(text[-1])
    # The low bits of the last character carry nothing; setting one decodes to the same bytes.
    twin = text[:-1] + B64URL[last ^ 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(text + "==")
    with pytest.raises(CursorError):
        Cursor.decode(twin)


def test_the_handmade_cursor_agrees_with_the_encoder() -> None:
    # Guards the helpers below: they build exactly what the encoder builds.
    a, b = sorted_by_digest("rooms/lobby", "tasks/42")
    assert handmade(*(entry(c, EXAMPLE[c].epoch.encode(), EXAMPLE[c].seq) for c in (a, b))) == (
        example()
    )


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(CursorError, match="version"):
        Cursor.decode(handmade(entry("a", b"e", 1), version=2))


def test_a_payload_too_short_to_hold_a_version_and_count_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(seal(b"\x01"))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CursorError, match="trailing"):
        Cursor.decode(seal(b"\x01\x01" + entry("a", b"e", 1) + b"\x00"))


def test_fewer_channels_than_counted_are_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", 1), count=b"\x02"))


def test_a_channel_named_twice_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", 1), entry("a", b"e", 2)))


def test_channels_out_of_order_are_refused() -> None:
    # Another order of the same entries would be a second spelling of one cursor.
    first, second = sorted_by_digest("a", "b")
    ordered = handmade(entry(first, b"e", 1), entry(second, b"f", 2))
    assert Cursor.decode(ordered).position(second) == Position("f", 2)
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry(second, b"f", 2), entry(first, b"e", 1)))


def test_an_overlong_sequence_varint_is_refused() -> None:
    assert Cursor.decode(handmade(entry("a", b"e", b"\x05"))).position("a") == Position("e", 5)
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", b"\x85\x00")))


def test_an_overlong_count_varint_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", 1), count=b"\x81\x00"))


def test_a_varint_longer_than_nine_bytes_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", b"\xff" * 9 + b"\x01")))


def test_a_sequence_beyond_the_largest_is_refused() -> None:
    assert Cursor.decode(handmade(entry("a", b"e", MAX_SEQ))).position("a") == Position(
        "e", MAX_SEQ
    )
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", MAX_SEQ + 1)))


def test_a_cut_varint_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"e", b"\x85")))


@pytest.mark.parametrize("epoch", [b"a b", b"a.b", b"\xff", b"a" * 9, b"\x00"])
def test_an_invalid_epoch_is_refused(epoch: bytes) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", epoch, 1)))


def test_an_epoch_length_past_the_end_is_refused() -> None:
    with pytest.raises(CursorError):
        Cursor.decode(handmade(channel_digest("a") + b"\x08abc"))


def test_a_position_without_epoch_past_seq_0_is_refused() -> None:
    assert Cursor.decode(handmade(entry("a", b"", 0))).position("a") == Position("", 0)
    with pytest.raises(CursorError):
        Cursor.decode(handmade(entry("a", b"", 1)))


# -- fuzzing ---------------------------------------------------------------------------------


def decodes_or_refuses(text: str) -> None:
    try:
        cursor = Cursor.decode(text)
    except CursorError:
        return
    assert isinstance(cursor, Cursor)
    assert cursor.encode() == text


@given(st.text())
def test_any_text_decodes_or_is_refused_with_a_cursor_error(text: str) -> None:
    decodes_or_refuses(text)


@given(st.text(alphabet=B64URL, max_size=1100))
def test_any_base64url_text_decodes_or_is_refused_with_a_cursor_error(text: str) -> None:
    decodes_or_refuses(text)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_sealed_payload_decodes_or_is_refused_with_a_cursor_error(payload: bytes) -> None:
    # Sealed with a valid check, so parsing gets past the checksum and into the layout.
    decodes_or_refuses(seal(b"\x01" + payload))


@given(position_maps, st.data())
def test_any_edit_of_a_valid_cursor_is_refused(
    by_channel: Mapping[str, Position], data: st.DataObject
) -> None:
    text = Cursor.encode_positions(by_channel)
    i = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from(B64URL).filter(lambda c: c != text[i]))
    with pytest.raises(CursorError):
        Cursor.decode(text[:i] + replacement + text[i + 1 :])


@settings(max_examples=300)
@given(position_maps, st.data())
def test_any_resealed_edit_of_a_valid_payload_decodes_or_is_refused(
    by_channel: Mapping[str, Position], data: st.DataObject
) -> None:
    text = Cursor.encode_positions(by_channel)
    payload = bytearray(base64.urlsafe_b64decode(text + "==")[:-4])
    at = data.draw(st.integers(0, len(payload) - 1))
    edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if edit == "replace":
        payload[at] = data.draw(st.integers(0, 255))
    elif edit == "insert":
        payload.insert(at, data.draw(st.integers(0, 255)))
    else:
        del payload[at]
    decodes_or_refuses(seal(bytes(payload)))
