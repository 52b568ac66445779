"""The load tool's reading of responses: chunked bodies, frames, and what it counts.

The bench's figures are only as good as this: a byte lost or counted twice here would show
as loss or duplicates that the server never caused.
"""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from bench.loadtool.subscribers import Subscriber, Tally
from bench.loadtool.wire import BodyReader, ResponseHead, complete_frames, payload


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        piece = body[pos : pos + size]
        if not piece:
            break
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += size
    if pos < len(body):
        out += b"%x\r\n" % (len(body) - pos) + body[pos:] + b"\r\n"
    return out + b"0\r\n\r\n"


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(
    body=st.binary(min_size=1, max_size=2000),
    sizes=st.lists(st.integers(1, 300), max_size=20),
    cuts=st.lists(st.integers(0, 3000), max_size=30),
)
def test_a_chunked_body_is_read_whole_however_it_is_split(
    body: bytes, sizes: list[int], cuts: list[int]
) -> None:
    reader = BodyReader(chunked=True)
    out = b"".join(reader.feed(piece) for piece in splits(chunked(body, sizes), cuts))
    assert out == body
    assert reader.ended


def test_a_response_head_gives_status_and_coding() -> None:
    head = ResponseHead()
    assert head.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n") is None
    assert head.feed(b"\r\nabc") == b"abc"
    assert (head.status, head.chunked) == (200, True)


def test_frames_end_with_a_blank_line_of_lf_or_crlf() -> None:
    assert complete_frames(b"data: 1\n\ndata: 2\n") == len(b"data: 1\n\n")
    assert complete_frames(b"data: 1\r\n\r\ndata") == len(b"data: 1\r\n\r\n")
    assert complete_frames(b"data: 1\n") == 0


def frames(*numbers: int, sent: int = 1_000) -> bytes:
    return b"".join(b"id: x\ndata: " + payload(n, sent) + b"\n\n" for n in numbers)


def subscriber(expect: int) -> Subscriber:
    sub = Subscriber(b"", Tally(), expect=expect)
    assert sub.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 999999\r\n\r\n", 0)
    return sub


def test_each_event_counts_once_with_its_latency() -> None:
    sub = subscriber(expect=3)
    sub.feed(frames(1, 2), arrived_us=1_500)
    sub.feed(frames(3, sent=2_000), arrived_us=2_250)
    assert (sub.unique, sub.complete) == (3, True)
    assert sub.tally.latencies_us == array("q", [500, 500, 250])
    assert (sub.tally.duplicates, sub.tally.out_of_order) == (0, 0)


def test_repeats_and_reordering_are_counted_not_hidden() -> None:
    sub = subscriber(expect=4)
    sub.feed(frames(1, 3, 2, 3), arrived_us=2_000)
    assert sub.unique == 3 and not sub.complete, "event 4 is lost"
    assert sub.tally.duplicates == 1
    assert sub.tally.out_of_order == 1


def test_an_event_split_across_reads_counts_when_it_is_whole() -> None:
    sub = subscriber(expect=1)
    data = frames(1)
    sub.feed(data[:7], arrived_us=1_100)
    assert sub.unique == 0
    sub.feed(data[7:], arrived_us=1_200)
    assert sub.unique == 1
    assert sub.tally.latencies_us == array("q", [200]), "timed by the read that completed it"


def test_a_refused_stream_is_not_counted_as_open() -> None:
    sub = Subscriber(b"", Tally(), expect=1)
    assert not sub.feed(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n{}", 5)
    assert sub.status == 429
