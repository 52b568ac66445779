"""A fake OpenAI-compatible chat-completions server for tests: ``tests.fake_upstream:app``.

The request's ``model`` picks what it does:

- ``ok``: a role chunk, five content pieces, a finish chunk, ``[DONE]``; CRLF line endings and
  chunks cut in the middle of lines, to exercise the decoder;
- ``echo``: the user's message back, word by word, then ``[DONE]``;
- ``status-error``: ``500`` with an OpenAI-style JSON error;
- ``stream-error``: one piece, then an error chunk;
- ``truncated``: two pieces, then the connection ends without ``[DONE]``;
- ``slow``: a first piece at once, then one piece a second;
- ``script``: by the user's message: ``[fail]`` in it is ``status-error``, ``[slow]`` is
  ``slow``, ``[cut]`` is ``truncated``, anything else is ``echo`` (one server for a service
  test that needs every behaviour).

Every request needs ``Authorization: Bearer test-key`` (``401`` otherwise). ``GET /requests``
lists the bodies received so far.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "test-key"
OK_PIECES = ["Hello", " from", " the", " fake", " model."]

received: list[dict[str, Any]] = []


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> str:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return json.dumps(body)


def event(data: str, newline: str = "\n") -> bytes:
    return f"data: {data}{newline}{newline}".encode()


async def ok() -> AsyncIterator[bytes]:
    wire = event(chunk(role="assistant"), "\r\n")
    wire += b"".join(event(chunk(p), "\r\n") for p in OK_PIECES)
    wire += event(chunk(finish="stop"), "\r\n") + event("[DONE]", "\r\n")
    # Cut everywhere, including between CR and LF, as a real network may.
    for start in range(0, len(wire), 7):
        yield wire[start : start + 7]
        await asyncio.sleep(0)


async def echo(message: str) -> AsyncIterator[bytes]:
    for index, word in enumerate(message.split()):
        yield event(chunk(word if index == 0 else " " + word))
    yield event("[DONE]")


async def stream_error() -> AsyncIterator[bytes]:
    yield event(chunk("Partial"))
    yield event(json.dumps({"error": {"message": "the model crashed", "type": "server_error"}}))


async def truncated() -> AsyncIterator[bytes]:
    yield event(chunk("Cut"))
    yield event(chunk(" short"))


async def slow() -> AsyncIterator[bytes]:
    yield event(chunk("Thinking"))
    for _ in range(60):
        await asyncio.sleep(1)
        yield event(chunk("."))
    yield event("[DONE]")


async def completions(request: Request) -> Response:
    body = await request.json()
    received.append(body)
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}}
        return JSONResponse(error, status_code=401)
    model = body.get("model")
    said = body["messages"][-1]["content"]
    if model == "script":
        markers = {"[fail]": "status-error", "[slow]": "slow", "[cut]": "truncated"}
        model = next((m for marker, m in markers.items() if marker in said), "echo")
    if model == "status-error":
        error = {"error": {"message": "The server is overloaded", "type": "server_error"}}
        return JSONResponse(error, status_code=500)
    streams = {
        "ok": ok,
        "stream-error": stream_error,
        "truncated": truncated,
        "slow": slow,
        "echo": lambda: echo(said),
    }
    if model not in streams:
        return JSONResponse({"error": {"message": f"unknown model {model}"}}, status_code=404)
    return StreamingResponse(streams[model](), media_type="text/event-stream")


async def requests(request: Request) -> Response:
    return JSONResponse(received)


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/requests", requests),
    ]
)
