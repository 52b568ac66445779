"""Cursors: the value of the SSE ``id:`` field and of ``Last-Event-ID``.

A cursor holds, for each channel of a stream, the position a reader has reached: the channel
log's epoch and the last sequence number read. One format serves single-channel and
multiplexed streams, so a reader can move between the two.

Layout (then base64url without padding)::

    version:u8  count:varint
    { channel_digest:6B  epoch_len:u8  epoch:ascii  seq:varint } * count
    check:4B

- ``channel_digest`` is a BLAKE2b digest of the channel name: fixed size, so a channel costs the
  same whatever its name (48 bits make a collision among one stream's channels ~1e-12).
- Size: a channel costs at most 6 + 1 + 8 (epoch) + 8 (seq varint) = 23 bytes, so 32 channels
  (the most a stream may follow) take at most 742 bytes, 990 characters: within 1 KiB for every
  valid position. That bound is why an epoch is at most 8 characters (the stores make 8) and a
  sequence at most 2**53 - 1 (sequences also go out as JSON numbers, which JavaScript reads
  exactly only up to there); with 32-character epochs even 16 channels would not fit.
- ``check`` is a BLAKE2b digest of everything before it: a cursor that was cut, edited or
  corrupted on its way is refused, not read as some other position. It is not a signature:
  a cursor grants nothing that the stream's own access rules do not already allow.
- Parsing is strict: one canonical encoding per value (no overlong varints, no trailing bytes,
  channels in ascending digest order without repeats), so ``encode(decode(s)) == s`` for every
  accepted ``s``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import CursorError

__all__ = ["MAX_CURSOR_LENGTH", "Cursor", "Position", "channel_digest"]

MAX_CURSOR_LENGTH = 1024
_VERSION = 1
_DIGEST_SIZE = 6
_CHECK_SIZE = 4
_MAX_SEQ = (1 << 53) - 1
_EPOCH = re.compile(rb"[A-Za-z0-9_-]{0,8}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a reader stands in one channel: after ``seq`` in the log with this ``epoch``.

    ``seq`` 0 means before the first event, and is at most 2**53 - 1. ``epoch`` is empty when
    the channel had no log yet when the position was taken; such a position is valid against
    whatever log appears later.
    """

    epoch: str
    seq: int

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= _MAX_SEQ:
            raise ValueError("seq out of range")
        if not _EPOCH.fullmatch(self.epoch.encode()):
            raise ValueError("an epoch is 0-8 characters of [A-Za-z0-9_-]")
        if not self.epoch and self.seq:
            raise ValueError("a position without epoch must be at seq 0")


@functools.lru_cache(maxsize=65536)
def channel_digest(channel: str) -> bytes:
    return hashlib.blake2b(channel.encode(), digest_size=_DIGEST_SIZE, person=b"sse-chan").digest()


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_SIZE, person=b"sse-cursor").digest()


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    start = at
    while True:
        if at >= len(data) or at - start >= 9:
            raise CursorError("cursor is truncated or has an invalid number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and at - start > 1:
                raise CursorError("cursor has a non-canonical number")
            return value, at


class Cursor:
    """Positions by channel. Build one with :meth:`of`, read one with :meth:`decode`."""

    __slots__ = ("_by_digest",)

    def __init__(self, by_digest: dict[bytes, Position]) -> None:
        self._by_digest = by_digest

    @classmethod
    def of(cls, positions: Mapping[str, Position]) -> Cursor:
        return cls({channel_digest(c): p for c, p in positions.items()})

    def position(self, channel: str) -> Position | None:
        """This cursor's position in ``channel``, or ``None`` if it holds none."""
        return self._by_digest.get(channel_digest(channel))

    def covers_any(self, channels: Iterable[str]) -> bool:
        return any(channel_digest(c) in self._by_digest for c in channels)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cursor) and other._by_digest == self._by_digest

    def __hash__(self) -> int:
        return hash(frozenset(self._by_digest.items()))

    def __repr__(self) -> str:
        return f"Cursor({len(self._by_digest)} channels)"

    def encode(self) -> str:
        return _encode(self._by_digest)

    @staticmethod
    def encode_positions(positions: Mapping[str, Position]) -> str:
        """Encode without building a :class:`Cursor` (the hot path: one call per event)."""
        return _encode({channel_digest(c): p for c, p in positions.items()})

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor; raises :class:`CursorError` (400) for anything that is not one."""
        if not text or len(text) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(text):
            raise CursorError("cursor is not a URL-safe token of at most 1024 characters")
        if len(text) % 4 == 1:
            raise CursorError("cursor has an impossible length")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("cursor is not base64url") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
            raise CursorError("cursor is not in canonical form")
        if len(raw) < 2 + _CHECK_SIZE:
            raise CursorError("cursor is too short")
        payload, check = raw[:-_CHECK_SIZE], raw[-_CHECK_SIZE:]
        if _check(payload) != check:
            raise CursorError("cursor checksum does not match: it was cut or altered")
        if payload[0] != _VERSION:
            raise CursorError(f"unknown cursor version {payload[0]}")
        count, at = _get_varint(payload, 1)
        positions: dict[bytes, Position] = {}
        previous = b""
        for _ in range(count):
            digest = payload[at : at + _DIGEST_SIZE]
            at += _DIGEST_SIZE
            if at >= len(payload):
                raise CursorError("cursor is truncated")
            epoch_len = payload[at]
            epoch = payload[at + 1 : at + 1 + epoch_len]
            at += 1 + epoch_len
            if len(epoch) != epoch_len or not _EPOCH.fullmatch(epoch):
                raise CursorError("cursor has an invalid epoch")
            seq, at = _get_varint(payload, at)
            # encode() sorts: any other order (or a repeat) is a second spelling of a cursor.
            if digest <= previous:
                raise CursorError("cursor's channels are repeated or out of order")
            previous = digest
            try:
                positions[digest] = Position(epoch.decode(), seq)
            except ValueError as exc:
                raise CursorError(f"cursor has an invalid position: {exc}") from None
        if at != len(payload):
            raise CursorError("cursor has trailing bytes")
        return cls(positions)


def _encode(by_digest: Mapping[bytes, Position]) -> str:
    out = bytearray((_VERSION,))
    _put_varint(out, len(by_digest))
    # Sorted so that equal position sets give equal cursors whatever the insertion order.
    for digest in sorted(by_digest):
        position = by_digest[digest]
        epoch = position.epoch.encode()
        out += digest
        out.append(len(epoch))
        out += epoch
        _put_varint(out, position.seq)
    out += _check(bytes(out))
    text = base64.urlsafe_b64encode(out).rstrip(b"=").decode()
    if len(text) > MAX_CURSOR_LENGTH:
        raise ValueError(f"{len(by_digest)} channels do not fit in one cursor")
    return text
