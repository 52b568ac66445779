"""Figures for the fleet and the agent tasks: what a tick costs, how fast output parses, how
many store calls a post makes. Run: ``.venv/bin/python bench/bench_seeds.py``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from serverless_sse.agent_output import AgentOutputParser
from serverless_sse.fleet.simulation import SimulatedFleet
from serverless_sse.stores.memory import MemoryStore
from serverless_sse.tasks import AgentTasks


def best_of(runs: int, work: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def fleet_ticks() -> None:
    tick = int(time.time() // 3)

    def first() -> None:
        sim = SimulatedFleet(seed=42, size=8, interval=3.0)
        for server in sim.server_ids():
            sim.state(server, tick)

    sim = SimulatedFleet(seed=42, size=8, interval=3.0)
    counter = iter(range(tick, tick + 10**9))

    def following() -> None:
        t = next(counter)
        for server in sim.server_ids():
            sim.state(server, t)

    for _ in range(50):
        following()  # warm the draw cache, as a running process has it
    print(f"fleet: a cold tick of 8 servers  {best_of(20, first) * 1e3:7.2f} ms")
    print(f"fleet: each next tick            {best_of(200, following) * 1e3:7.2f} ms")


SAMPLE = (
    "Starting Phase 1: Setup\n"
    "Step 1/3: Install dependencies\n"
    "npm WARN deprecated inflight@1.0.6: This module is not supported\n"
    "added 1312 packages in 14s\n"
    "[2/3] Configure\n"
    "Error: ENOENT: no such file or directory, open 'config.json'\n"
    "[DEPENDENCY_REQUEST]\nname: OPENAI_API_KEY\ntype: api_key\n[/DEPENDENCY_REQUEST]\n"
    "\x1b[32m✓ 218 tests passed\x1b[0m\n"
)


def parser_throughput() -> None:
    text = SAMPLE * 2000
    size = len(text.encode())

    def whole() -> None:
        AgentOutputParser().feed(text)

    def pieces() -> None:
        parser = AgentOutputParser()
        for start in range(0, len(text), 100):
            parser.feed(text[start : start + 100])

    for name, work in (("one piece", whole), ("100-char pieces", pieces)):
        seconds = best_of(5, work)
        print(f"parser: {name:<16} {size / seconds / 1e6:7.1f} MB/s  ({size / 1e6:.2f} MB)")


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in {
            "append",
            "close",
            "read",
            "state",
            "get_value",
            "put_value",
            "acquire_lease",
            "release_lease",
        }:
            super().__getattribute__("calls")[name] += 1
        return value


async def store_calls() -> None:
    for lines in (1, 10, 100):
        store = CountingStore()
        tasks = AgentTasks(store)
        await tasks.create("t")
        store.calls.clear()

        async def body(n: int = lines) -> AsyncIterator[str]:
            yield "".join(f"line {i}\n" for i in range(n))

        await tasks.write_output("t", body())
        calls = dict(sorted(store.calls.items()))
        print(f"tasks: a post of {lines:>3} lines -> {sum(calls.values()):>3} store calls {calls}")


if __name__ == "__main__":
    fleet_ticks()
    parser_throughput()
    asyncio.run(store_calls())
