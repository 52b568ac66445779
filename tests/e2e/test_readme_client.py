"""The README's "Python client" and "Command line" examples, run as written against a real
server (only its address is swapped in), so that they stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from serverless_sse.auth import hash_key
from tests.servers import ROOT, MotoServer, UvicornServer

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
LOCAL = "http://127.0.0.1:8000"
LOCAL_DYNAMODB = "http://127.0.0.1:8001"  # moto's server, as README "Stores" starts it


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def code_blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(title), flags=re.DOTALL)


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer({"SSE_RETRY_MS": "100"}) as running:
        yield running


def run_python(code: str, server: UvicornServer) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code.replace(LOCAL, server.url)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_blocking_example_publishes_then_reads_the_event(server: UvicornServer) -> None:
    blocking, _ = code_blocks("Python client", "python")
    out = run_python(blocking, server)
    assert "chat {'text': 'hello'}" in out


def test_the_async_example_follows_a_task_until_it_is_closed(server: UvicornServer) -> None:
    _, follow_task = code_blocks("Python client", "python")
    with httpx.Client(base_url=server.url) as http:
        events = [{"type": "log", "data": {"line": f"step {n}"}} for n in (1, 2)]
        assert http.post("/channels/tasks/42/events", json=events).status_code == 201
        assert http.post("/channels/tasks/42/close").status_code == 200
    out = run_python(follow_task, server)
    assert out.splitlines() == [
        "connection: connecting",
        "connection: open",
        "step 1",
        "step 2",
        "connection: connecting",
        "connection: closed",
    ]


def test_the_command_line_examples_run(server: UvicornServer, moto_server: MotoServer) -> None:
    [block] = code_blocks("Command line", "sh")
    env = {
        **os.environ,
        "SSE_SERVER": server.url,
        "SSE_JWT_SECRET": "readme-example-secret-" + "x" * 16,
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    script = []
    for line in block.splitlines():
        if line.startswith("serverless-sse serve"):
            continue  # a server is already running
        line = re.sub(r"\s+# .*$", "", line)  # the comments
        if line.startswith("serverless-sse tail"):
            # They follow until stopped: give each a moment, and show what it printed.
            line = f"timeout -s INT 2 {line} || [ $? -eq 124 ]"
        line = line.replace(LOCAL_DYNAMODB, moto_server.endpoint_url)
        script.append(line.replace(LOCAL, server.url))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert 'chat {"text":"hello"}' in out  # tail --from-start
    assert '{"id":' in result.stdout and '"data": "hi there"' in result.stdout  # --json
    assert "published 5000 events to rooms/lobby" in result.stderr
    assert hash_key("my-api-key") in out  # hash-key
    assert any(line.count(".") == 2 and line.startswith("eyJ") for line in out)  # token
    # create-table: the URL of a store on the table it made
    store_url = f"dynamodb://sse-events?region=us-east-1&endpoint_url={moto_server.endpoint_url}"
    assert store_url in out
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_server.endpoint_url
    )
    table = dynamodb.describe_table(TableName="sse-events")["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"channel", "seq"}
