"""The dashboard's JavaScript SSE parser (``functions/static/js/sse.js``, which reads the group
chat's POST answer) reads every stream exactly as the project's Python decoder does.

Both follow the WHATWG rules; each case is fed to both in the same chunks (cut anywhere: inside
a CRLF, inside a UTF-8 character), and what they dispatch must be the same. The JavaScript runs
in Node (a module with no browser API but TextDecoder, which Node has too).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from typing import Any

import pytest

from serverless_sse.protocol import EventStreamDecoder, ServerSentEvent
from tests.servers import ROOT

PARSER = ROOT / "functions" / "static" / "js" / "sse.js"

RUN = """
import { EventStreamParser } from %s;
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((chunks) => {
  const parser = new EventStreamParser();
  const events = [];
  for (const chunk of chunks) events.push(...parser.feed(Buffer.from(chunk, "base64")));
  parser.end();
  return { events: events.map((e) => [e.type, e.data, e.lastEventId]),
           lastEventId: parser.lastEventId, retry: parser.retry };
});
process.stdout.write(JSON.stringify(results));
"""

STREAMS = [
    b"data: one\n\n",
    b"data: one\ndata: two\n\n",
    b'event: vote_update\nid: 7\ndata: {"a": 1}\n\n',
    b"data:no space\ndata:  two spaces\n\n",
    b"data\n\ndata:\n\n",  # a field without a colon, and an empty value
    b"data: crlf\r\n\r\ndata: cr\r\rdata: lf\n\n",
    b"\xef\xbb\xbfdata: after a BOM\n\n",
    b": a comment\n: ok\ndata: x\n\n",
    b"id: 1\ndata: a\n\nid\ndata: b\n\n",  # an empty id resets the last event id
    b"id: a\x00b\ndata: NUL in an id is ignored\n\n",
    b"retry: 1500\nretry: 15x\ndata: r\n\n",
    b"retry: 99999999999999999999\ndata: too long to be a time\n\n",
    b"event: only type\n\nid: 5\n\n",  # no data: nothing dispatched, the id still counts
    b"unknown: field\ndata: kept\n\n",
    "data: ünïcödé ✓ 日本\n\n".encode(),
    b"data: [DONE]\n\n",
    b"data: unfinished at the end",
    b"data: \xff\xfe bad bytes\n\n",
    b"data: a\r\n" * 50 + b"\r\n",
]


def python_reading(chunks: list[bytes]) -> dict[str, Any]:
    decoder = EventStreamDecoder()
    events: list[list[str]] = []
    for chunk in chunks:
        events += [
            [e.type, e.data, e.last_event_id]
            for e in decoder.feed(chunk)
            if isinstance(e, ServerSentEvent)
        ]
    decoder.close()
    return {"events": events, "lastEventId": decoder.last_event_id, "retry": decoder.retry}


def cuts(stream: bytes, rng: random.Random) -> list[list[bytes]]:
    """The stream whole, byte by byte, and cut at a few random places."""
    ways = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    for _ in range(3):
        points = sorted(rng.sample(range(1, len(stream)), min(4, len(stream) - 1)))
        ways.append(
            [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
        )
    return ways


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (make test has it)")
def test_the_pages_parser_reads_every_stream_as_the_python_decoder_does() -> None:
    rng = random.Random(5)
    cases = [chunks for stream in STREAMS for chunks in cuts(stream, rng)]
    encoded = [[base64.b64encode(c).decode() for c in chunks] for chunks in cases]
    done = subprocess.run(
        ["node", "--input-type=module", "-e", RUN % json.dumps(PARSER.as_uri())],
        input=json.dumps(encoded),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    readings = json.loads(done.stdout)
    assert len(readings) == len(cases)
    for chunks, reading in zip(cases, readings, strict=True):
        assert reading == python_reading(chunks), chunks
