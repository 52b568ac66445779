"""A DynamoDB endpoint that fails on purpose: an HTTP proxy in front of moto's server.

boto3 talks to it as it would to AWS (``endpoint_url``); each request is forwarded to the real
endpoint or answered with a fault instead, as a plan decides per operation. The faults are the
ones DynamoDB really returns, in its own wire format, so that botocore's retry logic and the
store's handling of them run unchanged:

- ``throttle``: 400 ``ProvisionedThroughputExceededException``, nothing forwarded;
- ``transaction_throttle``: 400 ``TransactionCanceledException`` with a ``ThrottlingError``
  cancellation reason (how DynamoDB throttles a transaction), nothing forwarded;
- ``error``: 500 ``InternalServerError``, nothing forwarded;
- ``lost_answer``: forwarded (the write lands), then answered 500 as if the answer was lost;
- ``drop``: forwarded (the write lands), then the connection is closed with no answer.

It runs on the test's event loop (``await start()``, ``await aclose()``), on a free loopback
port, and counts what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import httpx

__all__ = ["FAULTS", "DynamoDBFaults", "RandomFaults", "ScriptedFaults"]

FAULTS = ("throttle", "transaction_throttle", "error", "lost_answer", "drop")

Plan = Callable[[str], str | None]
"""The fault for a request of this operation (``PutItem``, ``Query``…), or ``None``."""

_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_CANNED: dict[str, tuple[int, dict[str, object]]] = {
    "throttle": (
        400,
        {
            "__type": _PREFIX + "ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was"
            " exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        },
    ),
    "error": (500, {"__type": _PREFIX + "InternalServerError", "message": "Internal error"}),
}


def _transaction_throttle(items: int) -> tuple[int, dict[str, object]]:
    reasons: list[dict[str, str]] = [{"Code": "None"} for _ in range(items)]
    reasons[0] = {
        "Code": "ThrottlingError",
        "Message": "Throughput exceeds the current capacity of your table or index.",
    }
    codes = ", ".join(r["Code"] for r in reasons)
    return 400, {
        "__type": _PREFIX + "TransactionCanceledException",
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific"
        f" reasons [{codes}]",
        "CancellationReasons": reasons,
    }


class ScriptedFaults:
    """Faults in a fixed order per operation: ``{"TransactWriteItems": ["lost_answer"]}``
    fails the first transaction that way and forwards every later one."""

    def __init__(self, script: Mapping[str, Iterable[str | None]]) -> None:
        self._script = {op: list(faults) for op, faults in script.items()}

    def __call__(self, operation: str) -> str | None:
        queue = self._script.get(operation)
        return queue.pop(0) if queue else None


class RandomFaults:
    """Each request fails with the given probability per fault (seeded, so a run can be
    repeated), for operations in ``rates``. ``first`` is a script played before the draws
    (see :class:`ScriptedFaults`), so that every fault of it happens whatever the draws."""

    def __init__(
        self,
        rates: Mapping[str, Mapping[str, float]],
        *,
        seed: int,
        first: Mapping[str, Iterable[str | None]] | None = None,
    ) -> None:
        self._rates = rates
        self._random = random.Random(seed)
        self._first = {op: list(faults) for op, faults in (first or {}).items()}

    def __call__(self, operation: str) -> str | None:
        script = self._first.get(operation)
        if script:
            return script.pop(0)
        draw = self._random.random()
        for fault, rate in self._rates.get(operation, {}).items():
            if draw < rate:
                return fault
            draw -= rate
        return None


class DynamoDBFaults:
    """The fault-injecting proxy (see the module docstring)."""

    def __init__(self, upstream: str, plan: Plan) -> None:
        self.upstream = upstream
        self.plan = plan
        self.port = 0
        self.injected: Counter[tuple[str, str]] = Counter()
        """(operation, fault) -> how many times it was injected."""
        self.forwarded: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        """Requests that were a botocore retry (``amz-sdk-request: attempt=2`` or later)."""
        self._server: asyncio.Server | None = None
        self._client = httpx.AsyncClient(base_url=upstream, timeout=30)
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DynamoDBFaults:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections.values()):
                writer.close()  # the connection's reader sees its end, and the task returns
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        await self._client.aclose()

    async def __aenter__(self) -> DynamoDBFaults:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; false when the connection is done."""
        request_line = await reader.readline()
        if not request_line.strip():
            return False
        method, target, _ = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        operation = headers.get("x-amz-target", "").rpartition(".")[2]
        if "attempt=1;" not in headers.get("amz-sdk-request", "attempt=1;") + ";":
            self.retried[operation] += 1
        fault = self.plan(operation)
        if fault == "transaction_throttle" and operation != "TransactWriteItems":
            fault = "throttle"
        if fault is not None:
            self.injected[operation, fault] += 1
        if fault in ("throttle", "error"):
            status, payload = _CANNED[fault]
            await _answer(writer, status, {}, json.dumps(payload).encode())
            return True
        if fault == "transaction_throttle":
            items = len(json.loads(body).get("TransactItems", [])) or 1
            status, payload = _transaction_throttle(items)
            await _answer(writer, status, {}, json.dumps(payload).encode())
            return True
        forward = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
        answer = await self._client.request(method, target, headers=forward, content=body)
        self.forwarded[operation] += 1
        if fault == "drop":
            return False  # the write landed; its answer never comes
        if fault == "lost_answer":
            status, payload = _CANNED["error"]
            await _answer(writer, status, {}, json.dumps(payload).encode())
            return True
        keep = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "x-amz-crc32", "x-amzn-requestid")
        }
        await _answer(writer, answer.status_code, keep, answer.content)
        return True


async def _answer(
    writer: asyncio.StreamWriter, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    lines = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-type"]
    lines.append(f"Content-Type: {headers.get('content-type', 'application/x-amz-json-1.0')}")
    lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
