"""Store calls per published event and per idle stream-minute, for Redis and DynamoDB.

    .venv/bin/python bench/store_calls.py [--backend redis|dynamodb|all] [--events 500]
                                          [--idle-seconds 60] [--steady-seconds 60]

The whole service runs in this process (uvicorn on a free loopback port, real HTTP clients),
on a Redis server and a DynamoDB emulator (moto, ``infra/dynamodb_local.py``) that the bench
starts on free ports and stops when done. Every call that reaches the backend is counted where
it leaves the client library:

- Redis: each command sent (``Redis.execute_command``; a pipeline counts as one round trip),
  scripts named by what they do;
- DynamoDB: each API call (``BaseClient._make_api_call``, i.e. each HTTP request botocore
  makes), with the request units DynamoDB bills for it: items of at most 1 KB (4 KB for
  reads), strongly consistent reads 1 unit, a write 1 unit whether its condition holds or not,
  a transaction 2 units per item.

Scenarios: (0) one subscriber follows a channel that gets 1 event a second, for
``--steady-seconds`` (what a live channel costs a minute); (1) one subscriber follows a channel
while one publisher sends ``--events`` single events, one after the other; (2) the same with 8
concurrent publishers; (3) streams stay connected to a quiet channel for ``--idle-seconds`` (1
stream, then 10 streams on the same channel, which share one reader). Never part of the test
run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadtool.processes import Process, free_port  # noqa: E402
from functions.app import routes  # noqa: E402
from serverless_sse.service import create_app  # noqa: E402
from serverless_sse.settings import Settings  # noqa: E402


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    server = Process(args, port).start()
    try:
        yield
    finally:
        server.stop()


# -- counting calls --------------------------------------------------------------------------


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)  # "read" / "write" request units

    def reset(self) -> None:
        self.calls.clear()
        self.units.clear()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


TALLY = Tally()
EVENTS = 500


def count_redis_calls() -> None:
    from redis.asyncio.client import Pipeline, Redis

    from serverless_sse.stores.redis import _lua

    names = {_lua(n).sha: n for n in ("append", "read", "lease", "increment")}
    execute_command = Redis.execute_command
    execute = Pipeline.execute

    async def counted(self: Any, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name == "EVALSHA":
            name = f"EVALSHA {names.get(str(args[1]), '?')}"
        TALLY.calls[name] += 1
        return await execute_command(self, *args, **options)

    async def counted_pipeline(self: Any, *args: Any, **options: Any) -> Any:
        TALLY.calls[f"pipeline of {len(self.command_stack)}"] += 1
        return await execute(self, *args, **options)

    Redis.execute_command = counted  # type: ignore[method-assign]
    Pipeline.execute = counted_pipeline  # type: ignore[method-assign]


def count_dynamodb_calls() -> None:
    from botocore.client import BaseClient

    make_api_call = BaseClient._make_api_call

    def counted(self: Any, operation: str, params: dict[str, Any]) -> Any:
        TALLY.calls[operation] += 1
        if operation in ("Query", "GetItem"):
            TALLY.units["read"] += 1 if params.get("ConsistentRead") else 0.5
        elif operation == "BatchGetItem":
            TALLY.units["read"] += sum(len(t["Keys"]) for t in params["RequestItems"].values())
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            TALLY.units["write"] += 1
        elif operation == "TransactWriteItems":
            TALLY.units["write"] += 2 * len(params["TransactItems"])
        return make_api_call(self, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[method-assign]


# -- the service in this process -------------------------------------------------------------


@contextlib.asynccontextmanager
async def service(store: str) -> AsyncIterator[str]:
    port = free_port()
    settings = Settings(store=store, log_level="WARNING")
    config = uvicorn.Config(
        create_app(routes, settings=settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(600):  # uvicorn offers no event for this
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def follow(
    http: httpx.AsyncClient, url: str, received: list[str], everything: asyncio.Event | None = None
) -> None:
    """Stream ``url``, collecting the data lines; set ``everything`` at ``--events`` lines."""
    async with http.stream("GET", url) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                received.append(line)
                if everything is not None and len(received) >= EVENTS:
                    everything.set()


async def publish_scenario(base: str, events: int, publishers: int) -> float:
    channel = f"bench/{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=60) as http:
        received: list[str] = []
        everything = asyncio.Event()
        reader = asyncio.create_task(
            follow(http, f"{base}/channels/{channel}/stream", received, everything)
        )
        await asyncio.sleep(1.0)  # connected, its channel's shared reader started
        TALLY.reset()

        async def publisher(p: int) -> None:
            for i in range(p, events, publishers):
                response = await http.post(
                    f"{base}/channels/{channel}/events", json={"data": {"i": i}}
                )
                response.raise_for_status()

        await asyncio.gather(*(publisher(p) for p in range(publishers)))
        await everything.wait()
        calls = TALLY.total
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return calls / events


async def idle_scenario(base: str, streams: int, seconds: float) -> float:
    channel = f"bench/{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=None) as http:
        await http.post(f"{base}/channels/{channel}/events", json={"data": "first"})
        readers = [
            asyncio.create_task(follow(http, f"{base}/channels/{channel}/stream", []))
            for _ in range(streams)
        ]
        await asyncio.sleep(3.0)  # connected; the reader settled into its idle pace
        TALLY.reset()
        await asyncio.sleep(seconds)
        calls = TALLY.total
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return calls * 60 / seconds


async def steady_scenario(base: str, rate: float, seconds: float) -> float:
    """One stream follows a channel that gets ``rate`` events a second, one publisher."""
    channel = f"bench/{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=None) as http:
        await http.post(f"{base}/channels/{channel}/events", json={"data": "first"})
        received: list[str] = []
        reader = asyncio.create_task(follow(http, f"{base}/channels/{channel}/stream", received))
        await asyncio.sleep(3.0)
        loop = asyncio.get_running_loop()
        TALLY.reset()
        started = loop.time()
        for i in range(round(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - loop.time()))
            response = await http.post(f"{base}/channels/{channel}/events", json={"data": i})
            response.raise_for_status()
        await asyncio.sleep(max(0.0, started + seconds - loop.time()))
        calls = TALLY.total
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return calls * 60 / seconds


def report(title: str, value: float, unit: str) -> None:
    detail = ", ".join(f"{name} {count}" for name, count in TALLY.calls.most_common())
    print(f"  {title}: {value:.2f} {unit}  [{detail}]")
    if TALLY.units:
        read, write = TALLY.units["read"], TALLY.units["write"]
        print(f"    request units in that window: {read:g} read, {write:g} write")


async def run(store: str, events: int, idle_seconds: float, steady_seconds: float) -> None:
    async with service(store) as base:
        if steady_seconds:
            per_minute = await steady_scenario(base, 1.0, steady_seconds)
            report("per minute of a stream on a channel with 1 event/s", per_minute, "calls")
        per_event = await publish_scenario(base, events, 1)
        report("per published event, 1 publisher, 1 subscriber", per_event, "calls")
        per_event = await publish_scenario(base, events, 8)
        report("per published event, 8 publishers, 1 subscriber", per_event, "calls")
        per_minute = await idle_scenario(base, 1, idle_seconds)
        report("per idle stream-minute, 1 stream", per_minute, "calls")
        per_minute = await idle_scenario(base, 10, idle_seconds)
        report("per idle minute of 10 streams on one channel", per_minute, "calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["redis", "dynamodb", "all"], default="all")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    args = parser.parse_args()
    global EVENTS
    EVENTS = args.events
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    if args.backend in ("redis", "all"):
        count_redis_calls()
        port = free_port()
        with (
            tempfile.TemporaryDirectory() as data,
            process(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    data,
                ],
                port,
            ),
        ):
            print(f"Redis (redis-server on 127.0.0.1:{port})")
            url = f"redis://127.0.0.1:{port}/0"
            asyncio.run(run(url, args.events, args.idle_seconds, args.steady_seconds))
    if args.backend in ("dynamodb", "all"):
        count_dynamodb_calls()
        port = free_port()
        script = str(ROOT / "infra" / "dynamodb_local.py")
        with process([sys.executable, script, "--port", str(port), "--no-table"], port):
            endpoint = f"http://127.0.0.1:{port}"
            from serverless_sse.stores.dynamodb import create_table

            create_table("sse-bench", region="us-east-1", endpoint_url=endpoint)
            print(f"DynamoDB (moto on {endpoint})")
            store = f"dynamodb://sse-bench?region=us-east-1&endpoint_url={endpoint}"
            asyncio.run(run(store, args.events, args.idle_seconds, args.steady_seconds))


if __name__ == "__main__":
    main()
