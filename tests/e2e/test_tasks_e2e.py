"""Agent tasks end to end: raw output posted in pieces over HTTP, typed events streamed back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from serverless_sse.auth import mint_token
from tests.servers import UvicornServer
from tests.sse import StreamResult, read_stream
from tests.stores import STORE_URLS, flush_redis

pytestmark = pytest.mark.e2e


def tasks_env(store_url: str) -> dict[str, str]:
    return {"SSE_STORE": store_url, "SSE_HEARTBEAT_SECONDS": "0.3", "SSE_MAX_BODY_BYTES": "65536"}


REDIS_DB = 4  # this module's own database


@pytest.fixture(scope="module", params=sorted(STORE_URLS))
def store_url(request: pytest.FixtureRequest) -> str:
    url = STORE_URLS[request.param](REDIS_DB)
    flush_redis(url)
    return url


def shared(url: str) -> bool:
    """Whether two server processes on ``url`` share their events (not the memory store)."""
    return not url.startswith("memory:")


@pytest.fixture(scope="module")
def server(store_url: str) -> Iterator[UvicornServer]:
    with UvicornServer(tasks_env(store_url)) as running:
        yield running


@pytest.fixture
async def http(server: UvicornServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
async def task(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/tasks", json={"title": "e2e"})
    assert response.status_code == 201
    task_id: str = response.json()["id"]
    return task_id


async def output(http: httpx.AsyncClient, task_id: str, text: str) -> httpx.Response:
    return await http.post(f"/api/tasks/{task_id}/output", json={"output": text})


async def plain(http: httpx.AsyncClient, task_id: str, text: str) -> httpx.Response:
    return await http.post(
        f"/api/tasks/{task_id}/output",
        content=text.encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


def envelopes(result: StreamResult) -> list[dict[str, Any]]:
    assert all(e.type == "message" for e in result.events), "the envelope format"
    return [json.loads(e.data) for e in result.events]


# -- the task's life -----------------------------------------------------------------------


async def test_creating_a_task_answers_its_id_and_status(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/tasks")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "in_progress" and len(body["id"]) == 16
    assert (await http.get(f"/api/tasks/{body['id']}")).json()["status"] == "in_progress"


async def test_a_chosen_id_is_used_and_taken_once(http: httpx.AsyncClient) -> None:
    chosen = f"nightly-{uuid.uuid4().hex[:8]}"
    first = await http.post("/api/tasks", json={"id": chosen})
    assert (first.status_code, first.json()["id"]) == (201, chosen)
    again = await http.post("/api/tasks", json={"id": chosen})
    assert (again.status_code, again.json()["error"]) == (409, "conflict")


async def test_output_cut_anywhere_streams_as_the_seed_events(
    http: httpx.AsyncClient, task: str
) -> None:
    text = (
        "Starting Phase 1: Setup\nStep 1/2: Install\n[2/2] Configure\n"
        "[DEPENDENCY_REQUEST]\nname: OPENAI_API_KEY\ntype: api_key\n[/DEPENDENCY_REQUEST]\n"
        "Starting Phase 2: Build\nWarning: slow disk\nError: flaky test\n"
        "[USER_QUESTION]Retry the flaky test?[/USER_QUESTION]\n"
        "[REVIEW_REQUIRED]\nsummary: Migration ready\nfiles: db/001.sql, db/002.sql\n"
        "[/REVIEW_REQUIRED]\n"
    )
    cuts = [5, 31, 32, 60, 97, 140, 141, 200, 260, 300, len(text)]
    start = 0
    for n, cut in enumerate(cuts):
        send = plain if n % 2 else output
        assert (await send(http, task, text[start:cut])).status_code == 200
        start = cut
    assert (
        await http.post(f"/api/tasks/{task}/complete", json={"summary": "ok"})
    ).status_code == 200
    result = await read_stream(http, f"/api/tasks/{task}/stream", max_seconds=10)
    events = envelopes(result)
    assert [e["type"] for e in events if e["type"] != "log"] == [
        "phase_update",
        "phase_update",
        "step_update",
        "step_update",
        "dependency_request",
        "phase_update",
        "phase_update",
        "error",
        "user_question",
        "review_required",
        "phase_update",
        "complete",
    ]
    by_type = {e["type"]: e["data"] for e in events}
    # seeds/001's client reads event.data.message, event.data.phase and event.data.name.
    assert {"message", "level", "timestamp"} <= by_type["log"].keys()
    phases = [
        (e["data"]["phase"], e["data"]["status"]) for e in events if e["type"] == "phase_update"
    ]
    assert phases == [
        (1, "started"),
        (1, "in_progress"),
        (1, "completed"),
        (2, "started"),
        (2, "completed"),
    ]
    assert by_type["step_update"] | {"timestamp": None} == {
        "step": "Configure",
        "progress": 2,
        "total": 2,
        "timestamp": None,
    }
    assert by_type["dependency_request"]["name"] == "OPENAI_API_KEY"
    assert by_type["user_question"]["question"] == "Retry the flaky test?"
    assert by_type["review_required"]["files"] == ["db/001.sql", "db/002.sql"]
    assert by_type["complete"]["status"] == "succeeded"
    logs = [e["data"]["message"] for e in events if e["type"] == "log"]
    assert logs == [
        "Starting Phase 1: Setup",
        "Step 1/2: Install",
        "[2/2] Configure",
        "Starting Phase 2: Build",
        "Warning: slow disk",
        "Error: flaky test",
    ]


async def test_a_finished_task_replays_its_log_then_answers_204(
    http: httpx.AsyncClient, task: str
) -> None:
    await output(http, task, "one\ntwo\n")
    await http.post(f"/api/tasks/{task}/complete")
    replay = await read_stream(http, f"/api/tasks/{task}/stream", max_seconds=10)
    types = [e["type"] for e in envelopes(replay)]
    assert types == ["log", "log", "complete"], "no timeout: the stream ends at complete"
    again = await read_stream(
        http, f"/api/tasks/{task}/stream", last_event_id=replay.last_event_id, max_seconds=10
    )
    assert again.status == 204


async def test_a_live_subscriber_sees_output_as_it_is_posted(
    http: httpx.AsyncClient, task: str
) -> None:
    stream = asyncio.create_task(read_stream(http, f"/api/tasks/{task}/stream", max_seconds=10))
    await asyncio.sleep(0.2)
    await output(http, task, "Starting Phase 1: Live\n")
    await output(http, task, "[TASK_COMPLETE] finished by the agent\n")
    result = await stream
    events = envelopes(result)
    assert [e["type"] for e in events] == ["log", "phase_update", "log", "phase_update", "complete"]
    assert events[-1]["data"]["summary"] == "finished by the agent"
    assert (await http.get(f"/api/tasks/{task}")).json()["status"] == "succeeded"


async def test_a_streamed_upload_is_parsed_while_it_arrives(
    http: httpx.AsyncClient, task: str
) -> None:
    release = asyncio.Event()

    async def agent() -> AsyncIterator[bytes]:
        yield b"compiling\nlinking"
        await release.wait()
        yield b" done\n"

    upload = asyncio.create_task(
        http.post(
            f"/api/tasks/{task}/output",
            content=agent(),
            headers={"Content-Type": "text/plain"},
        )
    )
    early = await read_stream(
        http, f"/api/tasks/{task}/stream", max_seconds=10, stop_after_events=1
    )
    assert envelopes(early)[0]["data"]["message"] == "compiling"
    release.set()
    response = await upload
    assert response.json() == {"id": task, "status": "in_progress", "events": 2}


async def test_a_failed_task_sends_error_then_complete(http: httpx.AsyncClient, task: str) -> None:
    response = await http.post(
        f"/api/tasks/{task}/complete", json={"status": "failed", "summary": "out of memory"}
    )
    assert response.json()["status"] == "failed"
    result = await read_stream(http, f"/api/tasks/{task}/stream", max_seconds=10)
    assert [(e["type"], e["data"].get("message")) for e in envelopes(result)] == [
        ("error", "out of memory"),
        ("complete", None),
    ]


async def test_a_quiet_task_stream_keeps_alive_with_comments(
    http: httpx.AsyncClient, task: str
) -> None:
    result = await read_stream(http, f"/api/tasks/{task}/stream?window=1", max_seconds=10)
    assert len([c for _, c in result.comments if c.text == "hb"]) >= 2
    assert envelopes(result)[-1]["type"] == "timeout"


async def test_concurrent_posts_keep_each_line_whole(http: httpx.AsyncClient, task: str) -> None:
    async def agent(name: str) -> None:
        for n in range(5):
            await output(http, task, f"{name} line {n}\n")

    await asyncio.gather(*(agent(name) for name in ("alpha", "beta", "gamma")))
    await http.post(f"/api/tasks/{task}/complete")
    result = await read_stream(http, f"/api/tasks/{task}/stream", max_seconds=10)
    logs = [e["data"]["message"] for e in envelopes(result) if e["type"] == "log"]
    assert sorted(logs) == sorted(
        f"{a} line {n}" for a in ("alpha", "beta", "gamma") for n in range(5)
    )


# -- refusals ------------------------------------------------------------------------------


async def test_an_unknown_task_is_404_everywhere(http: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("GET", "/api/tasks/nope", None),
        ("GET", "/api/tasks/nope/stream", None),
        ("POST", "/api/tasks/nope/output", {"output": "x\n"}),
        ("POST", "/api/tasks/nope/complete", {}),
        ("GET", "/api/tasks/not..valid/stream", None),
    ]:
        response = await http.request(method, path, json=body)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_a_finished_task_refuses_output_and_a_second_completion(
    http: httpx.AsyncClient, task: str
) -> None:
    await http.post(f"/api/tasks/{task}/complete")
    late = await output(http, task, "too late\n")
    assert (late.status_code, late.json()["error"]) == (409, "conflict")
    twice = await http.post(f"/api/tasks/{task}/complete")
    assert twice.status_code == 409


@pytest.mark.parametrize(
    ("path", "content", "content_type", "status"),
    [
        ("output", b'{"output": 42}', "application/json", 422),
        ("output", b'{"text": "x"}', "application/json", 422),
        ("output", b"{not json", "application/json", 400),
        ("output", b"hello\n", "text/plain; charset=latin-1", 415),
        ("complete", b'{"status": "exploded"}', "application/json", 422),
    ],
)
async def test_bad_bodies_are_refused_and_store_nothing(
    http: httpx.AsyncClient,
    task: str,
    path: str,
    content: bytes,
    content_type: str,
    status: int,
) -> None:
    response = await http.post(
        f"/api/tasks/{task}/{path}", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert "error" in response.json()
    record = (await http.get(f"/api/tasks/{task}")).json()
    assert (record["status"], record["events"]) == ("in_progress", 0)


async def test_a_bad_task_id_to_create_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/tasks", json={"id": "no spaces/please"})
    assert response.status_code == 422


# -- many instances ------------------------------------------------------------------------


async def test_a_line_split_between_two_instances_is_reassembled(
    store_url: str, server: UvicornServer
) -> None:
    if not shared(store_url):
        pytest.skip("each process has its own memory store")
    with UvicornServer(tasks_env(store_url)) as other:
        async with httpx.AsyncClient(timeout=10) as http:
            task_id = (await http.post(f"{server.url}/api/tasks")).json()["id"]
            await http.post(
                f"{server.url}/api/tasks/{task_id}/output", json={"output": "half a li"}
            )
            await http.post(f"{other.url}/api/tasks/{task_id}/output", json={"output": "ne\n"})
            await http.post(f"{other.url}/api/tasks/{task_id}/complete")
            result = await read_stream(http, f"{server.url}/api/tasks/{task_id}/stream")
    logs = [e["data"]["message"] for e in envelopes(result) if e["type"] == "log"]
    assert logs == ["half a line"]


# -- credentials and the publish rate ------------------------------------------------------

SECRET = "tasks-e2e-secret-" + "x" * 32


def bearer(publish: list[str], subscribe: list[str]) -> dict[str, str]:
    token = mint_token(SECRET, "runner", publish=publish, subscribe=subscribe, ttl=300)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secured() -> Iterator[UvicornServer]:
    env = {"SSE_JWT_SECRET": SECRET, "SSE_PUBLISH_RATE_PER_CLIENT": "5"}
    with UvicornServer(env) as running:
        yield running


async def test_a_runner_writes_and_a_viewer_reads_with_their_grants(
    secured: UvicornServer,
) -> None:
    task_id = f"sec-{uuid.uuid4().hex[:8]}"
    runner = bearer([f"tasks/{task_id}"], [])
    viewer = bearer([], ["tasks/*"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as http:
        assert (await http.post("/api/tasks", json={"id": task_id})).status_code == 401
        created = await http.post("/api/tasks", json={"id": task_id}, headers=runner)
        assert created.status_code == 201
        written = await http.post(
            f"/api/tasks/{task_id}/output", json={"output": "hello\n"}, headers=runner
        )
        assert written.status_code == 200
        assert (await http.get(f"/api/tasks/{task_id}", headers=runner)).status_code == 403
        refused = await http.post(f"/api/tasks/{task_id}/complete", headers=viewer)
        assert refused.status_code == 403
        await http.post(f"/api/tasks/{task_id}/complete", headers=runner)
        result = await read_stream(http, f"/api/tasks/{task_id}/stream", headers=viewer)
    assert [e["type"] for e in envelopes(result)] == ["log", "complete"]


async def test_a_post_of_more_lines_than_the_rate_is_refused_and_stores_nothing(
    secured: UvicornServer,
) -> None:
    runner = bearer(["tasks/**"], ["tasks/**"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, headers=runner) as http:
        task_id = (await http.post("/api/tasks")).json()["id"]
        flood = "".join(f"line {n}\n" for n in range(8))
        refused = await http.post(f"/api/tasks/{task_id}/output", json={"output": flood})
        assert (refused.status_code, refused.json()["error"]) == (413, "payload_too_large")
        assert (await http.get(f"/api/tasks/{task_id}")).json()["events"] == 0


async def test_a_streamed_upload_slows_down_to_the_publish_rate(
    secured: UvicornServer,
) -> None:
    runner = bearer(["tasks/**"], ["tasks/**"])
    async with httpx.AsyncClient(base_url=secured.url, timeout=20, headers=runner) as http:
        task_id = (await http.post("/api/tasks")).json()["id"]
        lines = "".join(f"line {n}\n" for n in range(8)).encode()
        written = await http.post(
            f"/api/tasks/{task_id}/output", content=lines, headers={"Content-Type": "text/plain"}
        )
        assert (written.status_code, written.json()["events"]) == (200, 8)
        assert (await http.get(f"/api/tasks/{task_id}")).json()["events"] == 8
