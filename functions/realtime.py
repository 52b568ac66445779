"""Votes, chat and AI answers over SSE (SEEDS 003): ``/sse/*`` streams and ``/api`` posts."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serverless_sse.auth import authenticate, require_publish, require_subscribe
from serverless_sse.cursor import Cursor, Position
from serverless_sse.errors import ValidationFailed
from serverless_sse.events import iso_time, parse_model, validate_name, validate_text
from serverless_sse.http import (
    event_format,
    from_start,
    idempotency_key,
    last_event_id,
    query_float,
    read_body,
)
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.polls import VOTES_CHANNEL, Polls
from serverless_sse.realtime import (
    CHAT_CHANNEL,
    STREAMS,
    Assistant,
    ai_channel,
    post_chat_message,
    request_id,
    stream_channels,
)
from serverless_sse.responses import StreamEndpoint
from serverless_sse.service import create_app, service_of
from serverless_sse.window import plan_stream

_Key = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str
    poll_id: str
    option: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str
    text: str
    message_id: _Key | None = None


class QuestionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str
    question: str


def _client_id(request: Request, *, required: bool) -> str | None:
    client_id = request.query_params.get("client_id")
    if client_id is None:
        if required:
            raise ValidationFailed("?client_id= is required")
        return None
    return validate_name(client_id, "client_id")


async def _stream(request: Request, names: list[str], client_id: str | None) -> Response:
    """A stream of ``names`` (``votes``, ``chat``, ``ai``) opening with ``connection_ack``."""
    service = service_of(request)
    if "ai" in names and client_id is None:
        raise ValidationFailed("?client_id= is required for the ai channel")
    channels = stream_channels(names, client_id or "")
    require_subscribe(await authenticate(request), channels)
    fmt = event_format(request, "envelope")
    window = query_float(request, "window")
    plan = await plan_stream(
        service.store,
        channels,
        cursor=last_event_id(request),
        from_start=from_start(request),
        multiplexed=True,
    )
    ack = {"client_id": client_id, "channels": names, "server_time": iso_time(time.time())}
    return service.stream(  # type: ignore[return-value]
        plan, fmt=fmt, window=window, prelude=[("connection_ack", ack)]
    )


async def sse_events(request: Request) -> Response:
    raw = request.query_params.get("channels")
    names = list(STREAMS) if raw is None else list(dict.fromkeys(n for n in raw.split(",") if n))
    if not names:
        raise ValidationFailed(f"?channels= names some of {list(STREAMS)}")
    return await _stream(request, names, _client_id(request, required=True))


async def sse_votes(request: Request) -> Response:
    return await _stream(request, ["votes"], _client_id(request, required=False))


async def sse_chat(request: Request) -> Response:
    return await _stream(request, ["chat"], _client_id(request, required=False))


async def sse_ai(request: Request) -> Response:
    return await _stream(request, ["ai"], _client_id(request, required=True))


async def vote(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    require_publish(await authenticate(request), VOTES_CHANNEL)
    body = parse_model(await read_body(request, limit=settings.max_body_bytes), VoteBody)
    client_id = validate_name(body.client_id, "client_id")
    poll_id = validate_name(body.poll_id, "poll_id")
    await service.charge_publish(request)
    polls = Polls(service.store, max_options=settings.max_poll_options)
    result = await polls.vote(poll_id, client_id, body.option)
    answer = {
        "poll_id": poll_id,
        "option": result.option,
        "tallies": result.tallies,
        "total": result.total,
        "repeated": result.repeated,
    }
    return JSONResponse(answer, status_code=200 if result.repeated else 201)


async def poll(request: Request) -> Response:
    service = service_of(request)
    poll_id = validate_name(request.path_params["poll_id"], "poll_id")
    require_subscribe(await authenticate(request), [VOTES_CHANNEL])
    polls = Polls(service.store, max_options=service.settings.max_poll_options)
    tallies = await polls.tallies(poll_id)
    answer: dict[str, object] = {
        "poll_id": poll_id,
        "tallies": tallies,
        "total": sum(tallies.values()),
    }
    client_id = _client_id(request, required=False)
    if client_id is not None:
        answer["your_vote"] = await polls.choice(poll_id, client_id)
    return JSONResponse(answer)


async def chat_message(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    require_publish(await authenticate(request), CHAT_CHANNEL)
    body = parse_model(await read_body(request, limit=settings.max_body_bytes), ChatBody)
    client_id = validate_name(body.client_id, "client_id")
    text = validate_text(body.text, "text", settings.max_text_chars)
    message_id = body.message_id or uuid.uuid4().hex
    await service.charge_publish(request)
    message, seq, epoch, repeated = await post_chat_message(
        service.store, client_id, text, message_id
    )
    cursor = Cursor.encode_positions({CHAT_CHANNEL: Position(epoch, seq)})
    answer = {"message": message, "id": cursor, "seq": seq, "repeated": repeated}
    return JSONResponse(answer, status_code=200 if repeated else 201)


async def ask(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    body = parse_model(await read_body(request, limit=settings.max_body_bytes), QuestionBody)
    client_id = validate_name(body.client_id, "client_id")
    channel = ai_channel(client_id)
    require_publish(await authenticate(request), channel)
    question = validate_text(body.question, "question", settings.max_text_chars)
    request_key = request_id(f"ai/{client_id}", idempotency_key(request))
    await service.charge_publish(request)
    assistant = Assistant.from_settings(service.store, settings)
    deadline = await assistant.ask(service.queue, client_id, question, request_key)
    answer = {"request_id": request_key, "channel": channel, "deadline": iso_time(deadline)}
    return JSONResponse(answer, status_code=202)


routes = [
    Route("/sse/events", StreamEndpoint(sse_events), methods=["GET"]),
    Route("/sse/votes", StreamEndpoint(sse_votes), methods=["GET"]),
    Route("/sse/chat", StreamEndpoint(sse_chat), methods=["GET"]),
    Route("/sse/ai", StreamEndpoint(sse_ai), methods=["GET"]),
    Route("/api/votes", vote, methods=["POST"]),
    Route("/api/votes/{poll_id}", poll, methods=["GET"]),
    Route("/api/chat/messages", chat_message, methods=["POST"]),
    Route("/api/ai/chat", ask, methods=["POST"]),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
