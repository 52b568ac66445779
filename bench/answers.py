"""AI answers and group-chat exchanges, measured through a real server.

    .venv/bin/python -m bench.answers [--store memory://] [--queue memory://] [--rounds 20]

Starts ``uvicorn functions.app:app`` (the in-process worker, the built-in responder with its
default pacing) and prints, over ``--rounds`` questions and exchanges run one after another:
the time from ``POST /api/ai/chat`` to the first ``ai_response`` on the client's stream and to
``ai_complete``; the time from the ``group-sse`` POST to its ``complete`` and to
``data: [DONE]``. Every question and message is new (nothing comes from the answer cache).
Percentiles are of those rounds (no warm-up is dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import httpx

from serverless_sse.protocol import EventStreamDecoder, ServerSentEvent
from tests.servers import UvicornServer


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    median = statistics.median(ms)
    return f"{name:<34} median {median:7.1f} ms   p90 {p90:7.1f} ms   max {ms[-1]:7.1f} ms"


async def question(http: httpx.AsyncClient) -> tuple[float, float]:
    client = f"bench-{uuid.uuid4().hex[:8]}"
    first = done = 0.0
    opened = asyncio.Event()

    async def listen() -> None:
        nonlocal first, done
        async with http.stream("GET", f"/sse/ai?client_id={client}&window=30") as response:
            decoder = EventStreamDecoder()
            async for chunk in response.aiter_raw():
                for item in decoder.feed(chunk):
                    if not isinstance(item, ServerSentEvent):
                        continue
                    kind = json.loads(item.data)["type"]
                    if kind == "connection_ack":
                        opened.set()
                    elif kind == "ai_response" and not first:
                        first = time.perf_counter()
                    elif kind in ("ai_complete", "ai_error"):
                        done = time.perf_counter()
                        return

    task = asyncio.create_task(listen())
    await opened.wait()
    asked = time.perf_counter()
    # A new question each round: an answer given before would come from the cache.
    ask = {"client_id": client, "question": f"What is SSE, {uuid.uuid4().hex[:6]}?"}
    await http.post("/api/ai/chat", json=ask)
    await task
    return first - asked, done - asked


async def exchange(http: httpx.AsyncClient) -> tuple[float, float]:
    room = f"bench-{uuid.uuid4().hex[:8]}"
    body = {"message": f"hello {uuid.uuid4().hex[:6]}", "sender": "u1", "userName": "Kim"}
    started = time.perf_counter()
    complete = 0.0
    async with http.stream("POST", f"/api/chat/rooms/{room}/group-sse", json=body) as response:
        decoder = EventStreamDecoder()
        async for chunk in response.aiter_raw():
            for item in decoder.feed(chunk):
                if isinstance(item, ServerSentEvent) and item.data != "[DONE]":
                    if json.loads(item.data)["type"] == "complete":
                        complete = time.perf_counter()
                elif isinstance(item, ServerSentEvent):
                    return complete - started, time.perf_counter() - started
    raise RuntimeError("the exchange ended without [DONE]")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--queue", default="memory://")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    env = {"SSE_STORE": args.store, "SSE_QUEUE": args.queue, "SSE_LOG_LEVEL": "WARNING"}
    with UvicornServer(env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            answers = [await question(http) for _ in range(args.rounds)]
            exchanges = [await exchange(http) for _ in range(args.rounds)]
    print(f"store {args.store}, queue {args.queue}, {args.rounds} rounds each")
    print(summary("AI question -> first ai_response", [a[0] for a in answers]))
    print(summary("AI question -> ai_complete", [a[1] for a in answers]))
    print(summary("group-sse POST -> complete", [e[0] for e in exchanges]))
    print(summary("group-sse POST -> [DONE]", [e[1] for e in exchanges]))


if __name__ == "__main__":
    asyncio.run(main())
