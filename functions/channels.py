"""Core endpoints: publish, history, stream, close, multiplexed stream, health."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serverless_sse.auth import authenticate, require_publish, require_subscribe
from serverless_sse.cursor import Cursor, Position
from serverless_sse.errors import CursorError, StoreUnavailable, ValidationFailed
from serverless_sse.events import (
    iso_time,
    parse_close_body,
    parse_publish_body,
    validate_channel,
)
from serverless_sse.http import (
    event_format,
    from_start,
    last_event_id,
    query_float,
    query_int,
    read_body,
)
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.responses import StreamEndpoint
from serverless_sse.service import create_app, service_of
from serverless_sse.window import plan_stream, read_after


def _channel(request: Request) -> str:
    return validate_channel(request.path_params["channel"])


def _cursor(channel: str, epoch: str, seq: int) -> str:
    return Cursor.encode_positions({channel: Position(epoch, seq)})


async def publish(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    channel = _channel(request)
    require_publish(await authenticate(request), channel)
    body = await read_body(request, limit=settings.max_body_bytes)
    events = parse_publish_body(
        body, max_event_bytes=settings.max_event_bytes, max_batch=settings.max_batch_events
    )
    await service.charge_publish(request, len(events))
    appended = await service.store.append(channel, events)
    items = []
    for result in appended:
        item: dict[str, object] = {
            "id": _cursor(channel, result.epoch, result.seq),
            "seq": result.seq,
        }
        if result.duplicate:
            item["duplicate"] = True
        items.append(item)
    return JSONResponse({"events": items}, status_code=201)


async def history(request: Request) -> Response:
    service = service_of(request)
    channel = _channel(request)
    require_subscribe(await authenticate(request), [channel])
    limit = query_int(request, "limit", default=100, low=1, high=service.settings.history_page_max)
    after = request.query_params.get("after")
    store = service.store
    if after:
        position = Cursor.decode(after).position(channel)
        if position is None:
            raise CursorError("the cursor belongs to another channel")
    else:
        state = await store.state(channel)
        position = Position(state.epoch, state.first_seq - 1)
    found = await read_after(store, channel, position, limit)
    epoch = found.state.epoch
    events = [
        {
            "id": _cursor(channel, epoch, e.seq),
            "seq": e.seq,
            "type": e.type,
            "data": e.payload(),
            "created_at": iso_time(e.created_at),
        }
        for e in found.events
    ]
    last = found.events[-1].seq if found.events else found.start.seq
    body: dict[str, object] = {
        "events": events,
        "cursor": Cursor.encode_positions({channel: Position(epoch, last)}),
        "closed": found.state.closed,
    }
    if found.gap is not None:
        body["missed"] = found.gap.payload()
    return JSONResponse(body)


async def stream(request: Request) -> Response:
    service = service_of(request)
    channel = _channel(request)
    require_subscribe(await authenticate(request), [channel])
    fmt = event_format(request, "named")
    window = query_float(request, "window")
    plan = await plan_stream(
        service.store, [channel], cursor=last_event_id(request), from_start=from_start(request)
    )
    if plan.finished:
        return Response(status_code=204)
    return service.stream(plan, fmt=fmt, window=window)  # type: ignore[return-value]


async def stream_many(request: Request) -> Response:
    service = service_of(request)
    raw = request.query_params.get("channels", "")
    channels = list(dict.fromkeys(c for c in raw.split(",") if c))
    if not channels:
        raise ValidationFailed("?channels= names one or more channels, comma-separated")
    limit = service.settings.max_channels_per_stream
    if len(channels) > limit:
        raise ValidationFailed(f"{len(channels)} channels; one stream follows at most {limit}")
    for channel in channels:
        validate_channel(channel)
    require_subscribe(await authenticate(request), channels)
    fmt = event_format(request, "named")
    window = query_float(request, "window")
    plan = await plan_stream(
        service.store,
        channels,
        cursor=last_event_id(request),
        from_start=from_start(request),
        multiplexed=True,
    )
    if plan.finished:
        return Response(status_code=204)
    return service.stream(plan, fmt=fmt, window=window)  # type: ignore[return-value]


async def close(request: Request) -> Response:
    service = service_of(request)
    settings = service.settings
    channel = _channel(request)
    require_publish(await authenticate(request), channel)
    body = await read_body(request, limit=settings.max_body_bytes)
    final = parse_close_body(body, max_event_bytes=settings.max_event_bytes)
    await service.charge_publish(request)
    appended = await service.store.close(channel, final)
    return JSONResponse(
        {"id": _cursor(channel, appended.epoch, appended.seq), "seq": appended.seq, "closed": True}
    )


async def healthz(request: Request) -> Response:
    service = service_of(request)
    try:
        await service.store.ping()
    except StoreUnavailable as exc:
        return JSONResponse(
            {"status": "unavailable", "store": service.store.scheme, "detail": exc.detail},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "store": service.store.scheme})


async def metrics(request: Request) -> Response:
    return Response(service_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/channels/{channel:path}/events", publish, methods=["POST"]),
    Route("/channels/{channel:path}/events", history, methods=["GET"]),
    Route("/channels/{channel:path}/stream", StreamEndpoint(stream), methods=["GET"]),
    Route("/channels/{channel:path}/close", close, methods=["POST"]),
    Route("/stream", StreamEndpoint(stream_many), methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
