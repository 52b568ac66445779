"""A Lambda container for tests, and the API Gateway HTTP API (payload 2.0) events it takes.

A :class:`LambdaContainer` is a process that imports one handler (``functions.channels.handler``)
and runs the invocations it is sent one at a time, as a Lambda execution environment does: its
environment is fixed when it starts, and whatever the handler keeps between invocations it
keeps. Events go in as JSON lines on the process's stdin, answers come back on its stdout
(the handler's own output goes to a log file). Two containers are two Lambda instances.

Run as ``python -m tests.lambda_container functions.channels.handler`` (what the class does).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from serverless_sse.protocol import Comment, EventStreamDecoder, ServerSentEvent

ROOT = Path(__file__).resolve().parent.parent


def http_api_event(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    cookies: list[str] | None = None,
    source_ip: str = "198.51.100.7",
) -> dict[str, Any]:
    """The event API Gateway sends for an HTTP API request (payload format 2.0).

    Headers are lower-cased; cookies come apart from them, as API Gateway sends them; a body
    is base64-encoded unless it is text (API Gateway does the same for binary bodies)."""
    raw_query = urlencode(query or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "x-forwarded-proto": "https",
            "x-forwarded-for": source_ip,
            **{k.lower(): v for k, v in (headers or {}).items()},
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "tests",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        if isinstance(body, bytes):
            try:
                event["body"] = body.decode()
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = body
    return event


@dataclass
class HttpApiResponse:
    """What a handler answered API Gateway: status, headers and the (decoded) body."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    """How long the invocation took."""

    @classmethod
    def from_lambda(cls, answer: Mapping[str, Any], seconds: float) -> HttpApiResponse:
        body = answer.get("body", "")
        raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
        return cls(int(answer["statusCode"]), dict(answer.get("headers") or {}), raw, seconds)

    def json(self) -> Any:
        return json.loads(self.body)

    def decode(self) -> tuple[list[ServerSentEvent], list[Comment], EventStreamDecoder]:
        """The body read as an event stream: events, comments, and the decoder's end state
        (``retry``, ``last_event_id``: what an EventSource keeps for its reconnect)."""
        decoder = EventStreamDecoder()
        items = decoder.feed(self.body)
        events = [i for i in items if isinstance(i, ServerSentEvent)]
        comments = [i for i in items if isinstance(i, Comment)]
        return events, comments, decoder


class LambdaContainer:
    """One Lambda instance of ``handler`` (a dotted path), with ``env`` as its environment."""

    def __init__(self, handler: str, env: Mapping[str, str] | None = None) -> None:
        self.handler = handler
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(f"/tmp/lambda-container-{uuid.uuid4().hex[:8]}.log")
        self._lock = threading.Lock()

    def start(self) -> LambdaContainer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lambda_container", self.handler],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("wb"),
        )
        return self

    def invoke(self, event: Mapping[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
        """Run one invocation and return the handler's answer (one at a time, as Lambda)."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        with self._lock:
            proc.stdin.write(json.dumps(event).encode() + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no answer after {timeout}s:\n{self.log()}")
            line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the container exited:\n{self.log()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the handler raised {answer['error']}:\n{self.log()}")
        result: dict[str, Any] = answer["result"]
        return result

    def request(
        self, method: str, path: str, *, timeout: float = 60.0, **options: Any
    ) -> HttpApiResponse:
        """An HTTP request through API Gateway's HTTP API (see :func:`http_api_event`)."""
        started = time.monotonic()
        answer = self.invoke(http_api_event(method, path, **options), timeout=timeout)
        return HttpApiResponse.from_lambda(answer, time.monotonic() - started)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LambdaContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Context:
    """The parts of Lambda's context object that handlers may read."""

    function_name = "tests"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tests"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/tests"
    log_stream_name = "tests"
    identity = None
    client_context = None

    def __init__(self) -> None:
        self.aws_request_id = uuid.uuid4().hex
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def main(target: str) -> None:
    """Import ``target``, then answer the events on stdin one by one, until stdin closes."""
    answers = sys.stdout
    sys.stdout = sys.stderr  # the handler's own output must not mix with the answers
    module_name, _, name = target.rpartition(".")
    handler = getattr(importlib.import_module(module_name), name)
    for line in sys.stdin:
        try:
            answer = {"result": handler(json.loads(line), _Context())}
        except Exception as exc:
            answer = {"error": repr(exc)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    close = getattr(handler, "close", None)
    if close is not None:
        close()


if __name__ == "__main__":
    main(sys.argv[1])


@contextlib.contextmanager
def two_instances(
    handler: str, env: Mapping[str, str]
) -> Iterator[tuple[LambdaContainer, LambdaContainer]]:
    """Two instances of one function, as Lambda runs them side by side; stopped by pid."""
    first = LambdaContainer(handler, env).start()
    try:
        second = LambdaContainer(handler, env).start()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
