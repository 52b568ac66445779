"""Coding-agent tasks (the source system of seeds/001): raw output in, typed events out."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serverless_sse.auth import authenticate, require_publish, require_subscribe
from serverless_sse.errors import BadRequest, NotFound, UnsupportedMediaType
from serverless_sse.events import parse_model
from serverless_sse.http import event_format, last_event_id, query_float, read_body
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.responses import StreamEndpoint
from serverless_sse.service import create_app, service_of
from serverless_sse.tasks import (
    TASK_ID,
    AgentTasks,
    CompleteRequest,
    CreateRequest,
    OutputRequest,
    new_task_id,
    task_channel,
)
from serverless_sse.window import plan_stream


def tasks_of(request: Request) -> AgentTasks:
    state = request.app.state
    tasks: AgentTasks | None = getattr(state, "tasks", None)
    if tasks is None:
        service = service_of(request)
        tasks = state.tasks = AgentTasks.from_settings(service.store, service.settings)
    return tasks


def _task_id(request: Request) -> str:
    task_id: str = request.path_params["task_id"]
    if not TASK_ID.fullmatch(task_id):
        raise NotFound(f"no task {task_id!r}")
    return task_id


async def _body(request: Request) -> bytes:
    return await read_body(request, limit=service_of(request).settings.max_body_bytes)


async def create_task(request: Request) -> Response:
    body = parse_model(await _body(request), CreateRequest)
    principal = await authenticate(request)
    task_id = body.id or new_task_id()
    require_publish(principal, task_channel(task_id))
    await service_of(request).charge_publish(request)
    record = await tasks_of(request).create(task_id, body.title)
    return JSONResponse(record.view(), status_code=201)


async def get_task(request: Request) -> Response:
    task_id = _task_id(request)
    require_subscribe(await authenticate(request), [task_channel(task_id)])
    return JSONResponse((await tasks_of(request).get(task_id)).view())


async def _plain_text(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise BadRequest("the client went away before sending the whole body") from None


async def _text(text: str) -> AsyncIterator[str]:
    yield text


def _is_plain_text(request: Request) -> bool:
    """``text/plain`` (UTF-8) output is read as it streams in; anything else is JSON."""
    media, *params = request.headers.get("content-type", "").split(";")
    if media.strip().lower() != "text/plain":
        return False
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8", "us-ascii"):
            raise UnsupportedMediaType("text/plain output must be UTF-8")
    return True


async def post_output(request: Request) -> Response:
    service, tasks = service_of(request), tasks_of(request)
    task_id = _task_id(request)
    principal = await authenticate(request)
    require_publish(principal, task_channel(task_id))
    if _is_plain_text(request):
        # A streamed upload of unknown length slows down to the publish rate, batch by batch.
        async def throttle(events: int) -> None:
            await service.publish_rate.throttle(principal.subject, events)

        result = await tasks.write_output(task_id, _plain_text(request), before_write=throttle)
    else:
        text = parse_model(await _body(request), OutputRequest).output
        # Counted before anything is stored: a line makes at least one event.
        await service.charge_publish(request, max(1, text.count("\n")))
        result = await tasks.write_output(task_id, _text(text))
    record = result.record
    return JSONResponse({"id": record.id, "status": record.status, "events": result.events})


async def complete_task(request: Request) -> Response:
    task_id = _task_id(request)
    body = parse_model(await _body(request), CompleteRequest)
    require_publish(await authenticate(request), task_channel(task_id))
    await service_of(request).charge_publish(request)
    record = await tasks_of(request).complete(task_id, body.status, body.summary)
    return JSONResponse(record.view())


async def task_stream(request: Request) -> Response:
    service = service_of(request)
    task_id = _task_id(request)
    channel = task_channel(task_id)
    require_subscribe(await authenticate(request), [channel])
    await tasks_of(request).get(task_id)  # 404 for an unknown task
    fmt = event_format(request, "envelope")
    window = query_float(request, "window")
    # Without a cursor a task's stream starts at the beginning of its log.
    plan = await plan_stream(
        service.store, [channel], cursor=last_event_id(request), from_start=True
    )
    if plan.finished:
        return Response(status_code=204)
    return service.stream(plan, fmt=fmt, window=window)  # type: ignore[return-value]


routes = [
    Route("/api/tasks", create_task, methods=["POST"]),
    Route("/api/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/tasks/{task_id}/output", post_output, methods=["POST"]),
    Route("/api/tasks/{task_id}/complete", complete_task, methods=["POST"]),
    Route("/api/tasks/{task_id}/stream", StreamEndpoint(task_stream), methods=["GET"]),
]

app = create_app(routes)
# On AWS Lambda behind API Gateway (through Mangum); streams answer there as long-polls.
handler = LambdaHandler(app)
