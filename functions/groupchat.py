"""Group chat with AI personas (SEEDS 004): rooms, the ``group-sse`` exchange, the room stream."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serverless_sse.auth import authenticate, require_publish, require_subscribe
from serverless_sse.cursor import Position
from serverless_sse.errors import ValidationFailed
from serverless_sse.events import parse_model, validate_name, validate_text
from serverless_sse.groupchat import GroupChat, ends_exchange, exchange_id, of_exchange
from serverless_sse.http import (
    event_format,
    from_start,
    idempotency_key,
    last_event_id,
    query_float,
    read_body,
)
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.personas import DEFAULT_PERSONAS, Persona, Style
from serverless_sse.protocol import encode_event
from serverless_sse.responses import StreamEndpoint
from serverless_sse.rooms import Rooms, new_room_id, room_channel
from serverless_sse.service import create_app, service_of
from serverless_sse.window import StreamPlan, plan_stream

DONE = encode_event("[DONE]")
"""The seeds' end of an exchange: ``data: [DONE]``."""

# After the exchange's deadline, the POST waits this much longer for the worker's own
# ``timeout`` to arrive through the store before it ends the response itself.
GRACE_SECONDS = 2.0

_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class PersonaBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    style: Style = "cheerful"
    prompt: Annotated[str, StringConstraints(max_length=4000)] = ""
    personaId: int | None = Field(None, ge=1, le=1_000_000)


class RoomBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    personas: list[PersonaBody | _Name] | None = None
    id: str | None = None


class GroupMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str
    sender: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    userName: Annotated[str, StringConstraints(max_length=64)] = ""


def _personas(body: RoomBody) -> list[Persona]:
    if body.personas is None:
        return list(DEFAULT_PERSONAS)
    if not body.personas:
        raise ValidationFailed("a room needs at least one persona")
    personas = []
    for number, item in enumerate(body.personas, start=1):
        if isinstance(item, str):
            personas.append(Persona(number, item))
        else:
            personas.append(Persona(item.personaId or number, item.name, item.style, item.prompt))
    return personas


def _room_id(request: Request) -> str:
    return validate_name(request.path_params["room_id"], "room id")


async def create_room(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    body = parse_model(await read_body(request, limit=settings.max_body_bytes), RoomBody)
    room_id = validate_name(body.id, "room id") if body.id is not None else new_room_id()
    # Creating a room writes to the store: it needs the grant of the room's channel.
    require_publish(await authenticate(request), room_channel(room_id))
    personas = _personas(body)
    await service.charge_publish(request)
    rooms = Rooms(service.store, max_personas=settings.max_personas_per_room)
    room = await rooms.create(body.name, personas, room_id=room_id)
    return JSONResponse(room.to_json(), status_code=201)


async def get_room(request: Request) -> Response:
    service = service_of(request)
    room_id = _room_id(request)
    require_subscribe(await authenticate(request), [room_channel(room_id)])
    rooms = Rooms(service.store, max_personas=service.settings.max_personas_per_room)
    room = await rooms.get_or_default(room_id)
    answer = room.to_json()
    user_id = request.query_params.get("userId")
    if user_id:
        chat = GroupChat.from_settings(service.store, service.settings)
        answer["friendships"] = await chat.friendship(room, user_id)
    return JSONResponse(answer)


async def group_sse(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    room_id = _room_id(request)
    channel = room_channel(room_id)
    principal = await authenticate(request)
    require_publish(principal, channel)
    require_subscribe(principal, [channel])
    body = parse_model(await read_body(request, limit=settings.max_body_bytes), GroupMessage)
    message = validate_text(body.message, "message", settings.max_text_chars)
    key = idempotency_key(request)
    await service.charge_publish(request)
    rooms = Rooms(service.store, max_personas=settings.max_personas_per_room)
    room = await rooms.get_or_create(room_id)
    chat = GroupChat.from_settings(service.store, settings)
    exchange = await chat.start(
        service.queue,
        room,
        message=message,
        sender=body.sender,
        user_name=body.userName or body.sender,
        exchange=exchange_id(room_id, key),
    )
    # The response is the room's log from the user's message on, this exchange's events only,
    # until its end: read through the store, so the worker may run anywhere.
    start = Position(exchange.epoch, exchange.user_seq - 1)
    plan = StreamPlan({channel: start}, {channel: await service.store.state(channel)})
    timed_out = {
        "message": f"The AI answers took longer than {settings.ai_timeout_seconds:g} s.",
        "exchangeId": exchange.id,
    }
    return service.stream(  # type: ignore[return-value]
        plan,
        fmt="envelope",
        select=of_exchange(exchange.id),
        until=ends_exchange(exchange.id),
        epilogue=DONE,
        timeout_payload=timed_out,
        duration=max(1.0, exchange.deadline - time.time() + GRACE_SECONDS),
    )


async def room_stream(request: Request) -> Response:
    service = service_of(request)
    channel = room_channel(_room_id(request))
    require_subscribe(await authenticate(request), [channel])
    fmt = event_format(request, "envelope")
    window = query_float(request, "window")
    plan = await plan_stream(
        service.store, [channel], cursor=last_event_id(request), from_start=from_start(request)
    )
    if plan.finished:
        return Response(status_code=204)
    return service.stream(plan, fmt=fmt, window=window)  # type: ignore[return-value]


routes = [
    Route("/api/chat/rooms", create_room, methods=["POST"]),
    Route("/api/chat/rooms/{room_id}", get_room, methods=["GET"]),
    Route("/api/chat/rooms/{room_id}/group-sse", StreamEndpoint(group_sse), methods=["POST"]),
    Route("/api/chat/rooms/{room_id}/stream", StreamEndpoint(room_stream), methods=["GET"]),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
