"""A uvicorn process told to stop (SIGTERM, as every platform does) ends its open streams at
once with ``timeout`` and the cursor, so that clients resume elsewhere, and exits; it does not
hold them, and itself, until their windows end."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serverless_sse.cursor import Cursor
from tests.polling import wait_until
from tests.servers import UvicornServer
from tests.sse import read_stream

pytestmark = pytest.mark.e2e


async def gauge(http: httpx.AsyncClient, base: str, name: str) -> float:
    text = (await http.get(f"{base}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def test_sigterm_ends_every_open_stream_with_timeout_and_its_cursor_then_exits() -> None:
    # Windows of 300 s: a stream that waited for its window would outlast every bound below.
    server = UvicornServer(
        {"SSE_WINDOW_SECONDS": "300", "SSE_HEARTBEAT_SECONDS": "30"},
        extra_args=("--log-level", "info"),
    ).start()
    try:
        base = server.url
        async with httpx.AsyncClient(timeout=30) as http:
            for channel in ("a", "b"):
                answer = await http.post(f"{base}/channels/{channel}/events", json=[{"data": 1}])
                assert answer.status_code == 201
            urls = [
                f"{base}/channels/a/stream?from=start",
                f"{base}/stream?channels=a,b&from=start",
                f"{base}/sse/events?client_id=c1&channels=votes,chat",
            ]
            streams = [asyncio.create_task(read_stream(http, url, max_seconds=120)) for url in urls]

            async def all_open() -> bool:
                return await gauge(http, base, "sse_open_streams") == len(urls)

            await wait_until(all_open, "every stream is open")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            single, multiplexed, seeds = await asyncio.gather(*streams)
            exit_code = await asyncio.to_thread(server.proc.wait, 60)
        # uvicorn ran the app's shutdown, then ends by the signal it was sent (it re-raises it).
        assert exit_code in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in server.log()
        for result in (single, multiplexed):
            assert result.data() == [1] * (len(result.data()))
            assert result.ended_with == "timeout"
            assert json.loads(result.events[-1].data)["reason"] == "server_shutdown"
        assert Cursor.decode(single.last_event_id).position("a").seq == 1  # type: ignore[union-attr]
        cursor = Cursor.decode(multiplexed.last_event_id)
        assert [cursor.position(c).seq for c in ("a", "b")] == [1, 1]  # type: ignore[union-attr]
        # The seed endpoints' envelope format: the type inside the data.
        ending = json.loads(seeds.events[-1].data)
        assert (ending["type"], ending["reason"]) == ("timeout", "server_shutdown")
    finally:
        server.stop()
