"""Where answers come from and how jobs travel, end to end: an OpenAI-compatible model (a fake
upstream the tests start), an SQS queue (moto's server), a worker in its own process, and no
worker at all. The model, SQS and no-worker servers run on the memory store and on Redis (this
module's database 11); the separate worker shares Redis with the group chat's tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_upstream import API_KEY
from tests.servers import ROOT, UvicornServer, free_port, wait_for_port
from tests.sse import StreamResult, read_stream
from tests.store_urls import REDIS_QUEUE, REDIS_STORE, flush
from tests.stores import flush_redis

pytestmark = pytest.mark.e2e

REDIS_DB = 11  # this module's own database, for the stores of the servers below
STORES = [
    pytest.param("memory://", id="memory"),
    pytest.param(f"redis://127.0.0.1:6379/{REDIS_DB}", id="redis"),
]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def envelopes(result: StreamResult) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in result.events if e.data != "[DONE]"]


def of_type(result: StreamResult, kind: str) -> list[dict[str, Any]]:
    return [d for d in envelopes(result) if d["type"] == kind]


async def group_exchange(base_url: str, message: str, room: str | None = None) -> StreamResult:
    room = room or f"room-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        result = await read_stream(
            http,
            f"/api/chat/rooms/{room}/group-sse",
            method="POST",
            json_body={"message": message, "sender": "user_123", "userName": "Kim"},
            max_seconds=20,
        )
    assert result.status == 200, result.body
    assert result.events[-1].data == "[DONE]"
    return result


async def ask(base_url: str, question: str) -> StreamResult:
    client = f"c-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        stream = asyncio.create_task(
            read_stream(
                http,
                f"/sse/ai?client_id={client}&window=10",
                max_seconds=20,
                stop_when=lambda e: json.loads(e.data)["type"] in ("ai_complete", "ai_error"),
            )
        )
        await asyncio.sleep(0.4)
        answer = await http.post("/api/ai/chat", json={"client_id": client, "question": question})
        assert answer.status_code == 202
        return await stream


# -- an OpenAI-compatible model ------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with UvicornServer(app="tests.fake_upstream:app") as server:
        yield f"{server.url}/v1"


@pytest.fixture(scope="module")
def fresh_redis() -> None:
    """This module's database, emptied once (no answer of an earlier run is cached)."""
    flush_redis(f"redis://127.0.0.1:6379/{REDIS_DB}")


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest, fresh_redis: None) -> str:
    url: str = request.param
    return url


@pytest.fixture(scope="module")
def model_server(upstream: str, store: str) -> Iterator[str]:
    env = {
        "SSE_STORE": store,
        "SSE_RESPONDER": "openai",
        "SSE_OPENAI_BASE_URL": upstream,
        "SSE_OPENAI_MODEL": "script",
        "SSE_OPENAI_API_KEY": API_KEY,
        "SSE_AI_TIMEOUT_SECONDS": "2",
    }
    with UvicornServer(env) as server:
        yield server.url


async def test_personas_answer_with_the_model(model_server: str) -> None:
    result = await group_exchange(model_server, "hello model")
    answers = of_type(result, "ai_response")
    assert len(answers) == 3
    assert {a["content"] for a in answers} == {"Kim: hello model"}  # the fake echoes
    assert envelopes(result)[-1]["type"] == "complete"


async def test_a_failing_model_gives_each_persona_an_error_with_its_reason(
    model_server: str,
) -> None:
    result = await group_exchange(model_server, "please [fail]")
    errors = of_type(result, "error")
    assert len(errors) == 3
    assert {e["reason"] for e in errors} == {"upstream_status"}
    assert all("overloaded" in e["message"] for e in errors)
    assert envelopes(result)[-1]["type"] == "complete"
    assert envelopes(result)[-1]["failed"] == 3


async def test_a_model_stream_that_breaks_off_is_an_error(model_server: str) -> None:
    result = await group_exchange(model_server, "[cut]")
    assert {e["reason"] for e in of_type(result, "error")} == {"upstream_incomplete"}


async def test_a_slow_model_ends_the_exchange_with_timeout(model_server: str) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    result = await group_exchange(model_server, "[slow] take your time", room)
    [timeout] = of_type(result, "timeout")
    assert "2 s" in timeout["message"]
    assert envelopes(result)[-1]["type"] == "timeout"
    # The POST's response may end with its own timeout, a grace period after the deadline,
    # before a loaded worker has logged the exchange's: follow the room until it is there.
    async with httpx.AsyncClient(base_url=model_server, timeout=30) as http:
        await read_stream(
            http,
            f"/channels/rooms/{room}/stream?from=start&window=30",
            max_seconds=20,
            stop_when=lambda e: e.type == "timeout" and "exchangeId" in e.data,
        )
        history = (await http.get(f"/channels/rooms/{room}/events")).json()["events"]
    assert [e["type"] for e in history] == ["user_message", "timeout"]


async def test_an_ai_question_streams_the_model_s_pieces(model_server: str) -> None:
    result = await ask(model_server, "what is streaming")
    pieces = of_type(result, "ai_response")
    assert [p["content"] for p in pieces] == ["what", " is", " streaming"]
    assert of_type(result, "ai_complete")[0]["content"] == "what is streaming"


async def test_a_slow_model_ends_an_ai_answer_with_ai_error(model_server: str) -> None:
    result = await ask(model_server, "[slow] question")
    assert of_type(result, "ai_response")[0]["content"] == "Thinking"
    [error] = of_type(result, "ai_error")
    assert error["reason"] == "timeout"


# -- jobs on SQS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def sqs_server(sqs_endpoint: str, store: str) -> Iterator[str]:
    queue = f"sqs://answers-{uuid.uuid4().hex[:6]}?endpoint_url={sqs_endpoint}&create=true"
    env = {**AWS_ENV, "SSE_STORE": store, "SSE_QUEUE": queue, "SSE_QUEUE_POLL_SECONDS": "1"}
    with UvicornServer(env) as server:
        yield server.url


async def test_group_chat_jobs_travel_through_sqs(sqs_server: str) -> None:
    result = await group_exchange(sqs_server, "via sqs")
    assert len(of_type(result, "ai_response")) == 3
    assert envelopes(result)[-1]["type"] == "complete"


async def test_ai_questions_travel_through_sqs(sqs_server: str) -> None:
    result = await ask(sqs_server, "via sqs?")
    assert len(of_type(result, "ai_complete")) == 1


# -- a worker in its own process, or none ---------------------------------------------------


@pytest.fixture(scope="module")
def no_worker_server(store: str) -> Iterator[str]:
    env = {"SSE_STORE": store, "SSE_WORKER": "off", "SSE_AI_TIMEOUT_SECONDS": "1"}
    with UvicornServer(env) as server:
        yield server.url


async def test_without_any_worker_the_exchange_still_ends_with_timeout(
    no_worker_server: str,
) -> None:
    result = await group_exchange(no_worker_server, "anyone there?")
    assert [e["type"] for e in envelopes(result)] == ["user_message", "timeout"]
    assert "1 s" in envelopes(result)[-1]["message"]


@pytest.fixture(scope="module")
def separate_worker() -> Iterator[str]:
    flush(REDIS_STORE)
    flush(REDIS_QUEUE)
    env = {
        "SSE_STORE": REDIS_STORE,
        "SSE_QUEUE": f"{REDIS_QUEUE}?name=answers",
        "AI_WORKER_CONCURRENCY": "2",
    }
    log = open(f"/tmp/worker-test-{os.getpid()}.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "functions.worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with UvicornServer({**env, "SSE_WORKER": "off"}) as server:
            yield server.url
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()


async def test_a_worker_in_its_own_process_answers_the_exchange(separate_worker: str) -> None:
    result = await group_exchange(separate_worker, "hello from afar")
    assert len(of_type(result, "ai_response")) == 3
    assert envelopes(result)[-1]["type"] == "complete"


async def test_a_worker_in_its_own_process_answers_ai_questions(separate_worker: str) -> None:
    result = await ask(separate_worker, "far away?")
    assert len(of_type(result, "ai_complete")) == 1
