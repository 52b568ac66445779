"""The streaming functions' start script (infra/lambda/run.sh), run the way the Lambda Web
Adapter runs it: with the adapter's environment, on the port it names. The adapter forwards
each function URL request to that port and streams the response back, so what this process
streams is what a client of the function URL gets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.polling import wait_until
from tests.servers import ROOT, free_port, wait_for_port
from tests.sse import read_stream
from tests.stores import flush_redis

pytestmark = pytest.mark.deploy

SCRIPT = ROOT / "infra" / "lambda" / "run.sh"


class StartScript:
    """``run.sh`` in its own process, stopped by process id."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(f"/tmp/run-sh-{self.port}.log")
        self.env = {
            **os.environ,
            # What the function's configuration sets (serverless.yml), on a free port here.
            "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
            "AWS_LWA_INVOKE_MODE": "response_stream",
            "AWS_LWA_PORT": str(self.port),
            "AWS_LWA_READINESS_CHECK_PROTOCOL": "tcp",
            # The function's interpreter: this checkout's, with its dependencies.
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StartScript:
        self.proc = subprocess.Popen(
            [str(SCRIPT)],
            cwd="/",  # the script finds the code from where it lies, as on Lambda
            env=self.env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=30, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(self.log_path.read_text(errors="replace")) from None
        return self

    def stop(self) -> str:
        """Stop it as Lambda does (SIGTERM); what it logged."""
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log = self.log_path.read_text(errors="replace")
        self.log_path.unlink(missing_ok=True)
        return log


STORE = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def function() -> Iterator[StartScript]:
    flush_redis(STORE)
    script = StartScript(
        {
            "SSE_APP": "functions.channels:app",
            "SSE_STORE": STORE,
            "SSE_WINDOW_SECONDS": "3",
            "SSE_HEARTBEAT_SECONDS": "0.5",
            "SSE_LOG_LEVEL": "WARNING",
        }
    ).start()
    try:
        yield script
    finally:
        script.stop()


@pytest.fixture
async def http(function: StartScript) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=function.url, timeout=30) as client:
        yield client


async def test_the_start_script_streams_events_as_they_are_published(
    http: httpx.AsyncClient,
) -> None:
    channel = f"rooms/{os.urandom(5).hex()}"
    started = time.monotonic()

    async def publish_later() -> None:
        await asyncio.sleep(1.5)
        answer = await http.post(f"/channels/{channel}/events", json={"data": {"n": 1}})
        assert answer.status_code == 201

    publisher = asyncio.create_task(publish_later())
    result = await read_stream(http, f"/channels/{channel}/stream", max_seconds=20)
    await publisher
    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["connection"] == "keep-alive"  # streamed, not a long-poll
    # The stream opened at once, long before the event existed: nothing waits for the end.
    assert result.first_byte_after is not None and result.first_byte_after < 1.5
    assert result.data("message") == [{"n": 1}]
    assert result.ended_with == "timeout"
    assert json.loads(result.events[-1].data)["reason"] == "window_elapsed"
    assert result.retry == 1000
    # Heartbeats kept the quiet stream alive, and it lasted its whole window.
    assert any(comment.text == "hb" for _, comment in result.comments)
    assert time.monotonic() - started >= 2.7  # the 3 s window, jittered by up to -10 %


async def test_the_start_script_serves_only_its_familys_routes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "store": "redis"}
    missing = await http.get("/api/tasks/x")  # another function's route
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_the_start_script_shuts_the_app_down_on_sigterm() -> None:
    script = StartScript({"SSE_APP": "functions.metrics:app"})
    script.start()
    assert httpx.get(f"{script.url}/api/servers", timeout=10).status_code == 200
    # uvicorn runs the app's shutdown (the service closes its store), then exits.
    assert "Application shutdown complete." in script.stop()


async def test_sigterm_ends_open_streams_with_timeout_at_once_through_the_start_script() -> None:
    """Lambda sends SIGTERM before it stops an environment: the streams end with ``timeout``
    and their cursor (clients reconnect to another environment), not cut when it is killed."""
    script = StartScript({"SSE_APP": "functions.channels:app", "SSE_WINDOW_SECONDS": "300"})
    script.start()
    try:
        async with httpx.AsyncClient(base_url=script.url, timeout=30) as http:
            answer = await http.post("/channels/news/events", json={"data": {"n": 1}})
            assert answer.status_code == 201
            stream = asyncio.create_task(
                read_stream(http, "/channels/news/stream?from=start", max_seconds=120)
            )

            async def open_() -> bool:
                return "sse_open_streams 1.0" in (await http.get("/metrics")).text

            await wait_until(open_, "the stream is open")
            assert script.proc is not None
            script.proc.send_signal(signal.SIGTERM)
            result = await stream
    finally:
        log = script.stop()
    assert result.data("message") == [{"n": 1}]
    assert result.ended_with == "timeout"
    assert json.loads(result.events[-1].data)["reason"] == "server_shutdown"
    assert result.last_event_id == result.events[0].last_event_id
    assert "Application shutdown complete." in log
