"""Fleet metrics (the source system of seeds/000): snapshots, live updates, control."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serverless_sse.auth import authenticate, require_publish, require_subscribe
from serverless_sse.errors import Forbidden, Unauthorized, ValidationFailed
from serverless_sse.events import parse_model
from serverless_sse.fleet import ControlRequest, Fleet, FleetTicker, ServerSpec, server_channel
from serverless_sse.http import event_format, last_event_id, query_float, read_body
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.responses import StreamEndpoint
from serverless_sse.service import create_app, service_of
from serverless_sse.window import plan_stream


def fleet_of(request: Request) -> Fleet:
    """This process's fleet, made on first use and kept by the app (it caches each tick)."""
    state = request.app.state
    fleet: Fleet | None = getattr(state, "fleet", None)
    if fleet is None:
        service = service_of(request)
        fleet = state.fleet = Fleet.from_settings(service.store, service.settings)
    return fleet


async def _visible(request: Request) -> list[ServerSpec]:
    principal = await authenticate(request)
    servers = fleet_of(request).visible(principal)
    if not servers:
        if principal.anonymous:
            raise Unauthorized("seeing the fleet needs a credential")
        raise Forbidden("no server of this fleet is visible to you")
    return servers


async def _one(request: Request) -> ServerSpec:
    server_id = request.path_params["server_id"]
    # The grant first, then whether the server exists: a client learns nothing of the fleet
    # that it may not see (an unknown id is 401/403 to it, like a hidden one).
    require_subscribe(await authenticate(request), [server_channel(server_id)])
    return fleet_of(request).spec(server_id)


def _deltas(request: Request) -> bool:
    updates = request.query_params.get("updates", "delta")
    if updates not in ("delta", "full"):
        raise ValidationFailed("?updates= is 'delta' (the default) or 'full'")
    return updates == "delta"


async def list_servers(request: Request) -> Response:
    fleet = fleet_of(request)
    ids = [s.id for s in await _visible(request)]
    snapshot = await fleet.snapshot()
    return JSONResponse(
        {
            "servers": snapshot.of(ids),
            "cursor": await fleet.cursor(ids),
            "tick": snapshot.tick,
            "timestamp": round(snapshot.timestamp * 1000),
            "interval": fleet.interval,
        }
    )


async def get_server(request: Request) -> Response:
    fleet = fleet_of(request)
    server = await _one(request)
    snapshot = await fleet.snapshot()
    return JSONResponse(
        {
            "server": snapshot.servers[server.id],
            "cursor": await fleet.cursor([server.id]),
            "tick": snapshot.tick,
            "timestamp": round(snapshot.timestamp * 1000),
        }
    )


async def _stream(request: Request, servers: list[ServerSpec], *, multiplexed: bool) -> Response:
    service, fleet = service_of(request), fleet_of(request)
    ids = [s.id for s in servers]
    fmt = event_format(request, "envelope")
    window = query_float(request, "window")
    deltas = _deltas(request)
    cursor = last_event_id(request)
    plan = await plan_stream(
        service.store, [server_channel(i) for i in ids], cursor=cursor, multiplexed=multiplexed
    )
    ticker = FleetTicker(fleet, ids, await fleet.snapshot(), deltas=deltas, cursor=cursor)
    response = service.stream(plan, fmt=fmt, window=window, prelude=ticker.prelude, ticker=ticker)
    return response  # type: ignore[return-value]


async def fleet_stream(request: Request) -> Response:
    return await _stream(request, await _visible(request), multiplexed=True)


async def server_stream(request: Request) -> Response:
    return await _stream(request, [await _one(request)], multiplexed=False)


async def control(request: Request) -> Response:
    service, fleet = service_of(request), fleet_of(request)
    body = parse_model(
        await read_body(request, limit=service.settings.max_body_bytes), ControlRequest
    )
    require_publish(await authenticate(request), server_channel(body.server_id))
    server = fleet.spec(body.server_id)
    await service.charge_publish(request)
    result = await fleet.control(server.id, body.action)
    return JSONResponse({"id": result.cursor, "seq": result.seq, **result.data}, status_code=202)


routes = [
    Route("/api/servers", list_servers, methods=["GET"]),
    Route("/api/servers/control", control, methods=["POST"]),
    Route("/api/servers/{server_id}", get_server, methods=["GET"]),
    Route("/api/servers/{server_id}/stream", StreamEndpoint(server_stream), methods=["GET"]),
    Route("/api/stream", StreamEndpoint(fleet_stream), methods=["GET"]),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
