"""The Lambda handler behind API Gateway (Mangum): the app starts once per container, and a
stream answers as a long-poll there. In process; tests/deploy runs the real handlers in
containers of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from functions import channels
from serverless_sse.lambda_handler import LambdaHandler
from serverless_sse.service import Service, create_app
from serverless_sse.settings import Settings
from serverless_sse.stores.memory import MemoryStore
from tests.lambda_container import HttpApiResponse, http_api_event
from tests.servers import ROOT


def invoke(handler: LambdaHandler, method: str, path: str, **options: object) -> HttpApiResponse:
    return HttpApiResponse.from_lambda(handler(http_api_event(method, path, **options), None), 0)


@pytest.fixture
def handler() -> Iterator[LambdaHandler]:
    settings = Settings(buffered_wait_seconds=0.2)
    lambda_handler = LambdaHandler(create_app(channels.routes, settings=settings))
    yield lambda_handler
    lambda_handler.close()


def test_invocations_of_one_container_share_one_service(handler: LambdaHandler) -> None:
    published = invoke(handler, "POST", "/channels/c/events", body='{"data": 1}')
    assert published.status == 201
    service = handler.app.state.service  # type: ignore[attr-defined]
    history = invoke(handler, "GET", "/channels/c/events")
    assert handler.app.state.service is service  # type: ignore[attr-defined]
    # The memory store lives in the service: a service made again would have lost the event.
    assert [e["data"] for e in history.json()["events"]] == [1]


def test_the_app_starts_on_the_first_invocation_not_before(handler: LambdaHandler) -> None:
    assert not handler.started
    invoke(handler, "GET", "/healthz")
    assert handler.started


def test_a_failed_startup_fails_its_invocation_and_the_next_one_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    def from_settings(settings: Settings) -> Service:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("the store is not there yet")
        return Service(settings, MemoryStore())

    monkeypatch.setattr(Service, "from_settings", staticmethod(from_settings))
    handler = LambdaHandler(create_app(channels.routes, settings=Settings()))
    try:
        with pytest.raises(Exception, match="the store is not there yet"):
            invoke(handler, "GET", "/healthz")
        assert invoke(handler, "GET", "/healthz").status == 200
        assert len(attempts) == 2
    finally:
        handler.close()


def test_a_stream_answers_as_a_long_poll(handler: LambdaHandler) -> None:
    invoke(handler, "POST", "/channels/c/events", body='{"data": 1}')
    response = invoke(handler, "GET", "/channels/c/stream", query={"from": "start"})
    events, _, decoder = response.decode()
    assert [e.type for e in events] == ["message", "timeout"]
    assert json.loads(events[-1].data) == {"reason": "long_poll", "retry_ms": 100}
    assert decoder.retry == 100
    assert "connection" not in response.headers
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"


@pytest.mark.parametrize(
    ("mode", "under_mangum", "buffered"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("stream", True, False),
        ("buffered", False, True),
    ],
)
def test_the_response_mode_follows_the_setting_and_the_platform(
    mode: str, under_mangum: bool, buffered: bool
) -> None:
    service = Service(Settings(mode=mode), MemoryStore())
    scope = {"type": "http", **({"aws.event": {}} if under_mangum else {})}
    assert service.buffered(scope) is buffered


def test_importing_a_function_starts_nothing_and_imports_no_sdk() -> None:
    """A cold start pays only for what a function uses: no event loop, no service, no
    Mangum and no boto3 at import (boto3 comes with a DynamoDB store or an SQS queue)."""
    script = """
import sys
import functions.channels, functions.metrics, functions.tasks, functions.realtime
import functions.groupchat, functions.dashboard, functions.worker
modules = [functions.channels, functions.metrics, functions.tasks, functions.realtime,
           functions.groupchat, functions.dashboard]
assert not any(m.handler.started for m in modules)
assert "mangum" not in sys.modules, "mangum"
assert "boto3" not in sys.modules and "botocore" not in sys.modules, "boto3"
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
