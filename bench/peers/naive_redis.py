"""The peer: SSE over Redis the way Python developers usually write it.

Starlette + sse-starlette; every stream opens its own Redis pub/sub subscription and relays
what it hears; publishing is one Redis ``PUBLISH``. No history, no ids, no resume: an event
published while a client reconnects is gone for it. This is the baseline the bench measures
serverless-sse against (``bench/run.py``); it is not part of the project.

    PEER_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.peers.naive_redis:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import redis.asyncio as redis
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Every stream holds a pool connection for its subscription: redis-py's default cap of 100
# would refuse the 101st stream, so it is raised, as anyone running this at scale must.
client = redis.from_url(
    os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=20_000
)


async def stream(request: Request) -> Response:
    channel = request.path_params["channel"]

    async def events() -> AsyncIterator[dict[str, str]]:
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        try:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield {"data": message["data"].decode()}
        finally:
            await pubsub.unsubscribe(channel)
            await pubsub.aclose()

    return EventSourceResponse(events())


async def publish(request: Request) -> Response:
    receivers = await client.publish(request.path_params["channel"], await request.body())
    return JSONResponse({"receivers": receivers})


app = Starlette(
    routes=[
        Route("/stream/{channel}", stream),
        Route("/publish/{channel}", publish, methods=["POST"]),
    ]
)
