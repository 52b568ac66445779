"""The benchmark, side by side with a peer: one command, figures and a chart.

    .venv/bin/python -m bench.run            # the whole run (about 15 minutes)
    .venv/bin/python -m bench.run --quick    # a smaller run (about a minute)
    make bench / make bench-quick            # the same, setting up what they need

Every scenario runs against each system in turn, each started fresh on free loopback ports
(``bench/loadtool/targets.py``): serverless-sse (one uvicorn process on its own Redis), the
naive peer (``bench/peers/naive_redis.py``: sse-starlette and a Redis pub/sub subscription per
stream, on its own Redis) and, where Debian's nginx and libnginx-mod-nchan are installed,
nginx + Nchan as the fast reference. The load tool (``bench/loadtool``) runs in processes of
its own on the same machine, and reports the CPU it used, to show that it kept up.

Results go to ``bench/results/``: ``<date>-<full|quick>.jsonl`` (the machine, then one record
per scenario and system), ``latest.md`` (the tables) and ``p99-latency.png`` (the chart), with
``-quick`` in their names for a quick run; ``--readme`` also writes the tables and the command
into README.md between its bench markers.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.loadtool import report, scenarios
from bench.loadtool.targets import ROOT, TARGETS, nchan_available

RESULTS = ROOT / "bench" / "results"
IMPORTS = {"project": "functions.channels", "peer": "bench.peers.naive_redis"}

FULL = {
    "fanout": [(100, 10), (1000, 10), (3000, 10), (100, 100), (1000, 100)],
    "seconds": 20.0,
    "missed": 10_000,
    "publishes": 20_000,
    "import_runs": 7,
}
QUICK = {
    "fanout": [(1000, 10), (300, 100)],
    "seconds": 4.0,
    "missed": 10_000,
    "publishes": 5_000,
    "import_runs": 3,
}


def import_time(module: str, runs: int) -> dict[str, Any]:
    """How long a fresh interpreter takes to import ``module`` (median of ``runs``)."""
    probe = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - t)"
    )
    seconds = [
        float(subprocess.run([sys.executable, "-c", probe, str(ROOT)], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout)
        for _ in range(runs)
    ]  # fmt: skip
    return {"import_ms": round(1000 * statistics.median(seconds), 1), "module": module}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the ~1 minute run")
    parser.add_argument("--targets", default="project,peer,nchan", help="systems to measure")
    parser.add_argument("--readme", action="store_true", help="write the tables into README.md")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    targets = [t for t in args.targets.split(",") if t]
    if "nchan" in targets and not nchan_available():
        print("nginx with the Nchan module is not installed: measuring without it", flush=True)
        targets.remove("nchan")

    started = time.monotonic()
    records: list[dict[str, Any]] = []

    def record(result: dict[str, Any]) -> None:
        records.append(result)
        print(json.dumps(result), flush=True)

    for subscribers, rate in plan["fanout"]:
        for name in targets:
            with TARGETS[name]() as target:
                record(scenarios.fanout(
                    target, subscribers=subscribers, rate=rate, seconds=plan["seconds"]
                ))  # fmt: skip
    for name in targets:
        with TARGETS[name]() as target:
            record(scenarios.catch_up(target, missed=plan["missed"]))
        with TARGETS[name]() as target:
            record(scenarios.publish_throughput(target, connections=32, count=plan["publishes"]))
        if name in IMPORTS:
            record({"scenario": "import", "target": name,
                    **import_time(IMPORTS[name], plan["import_runs"])})  # fmt: skip

    kind = "quick" if args.quick else "full"
    today = datetime.date.today().isoformat()
    command = "make bench-quick" if args.quick else "make bench"
    header = {"date": today, "kind": kind, "command": command, "machine": report.machine(),
              "seconds": round(time.monotonic() - started)}  # fmt: skip
    report.write_jsonl(RESULTS / f"{today}-{kind}.jsonl", [header, *records])
    table = report.markdown(records)
    suffix = "-quick" if args.quick else ""  # a quick run never replaces the full run's
    (RESULTS / f"latest{suffix}.md").write_text(table)
    report.chart(records, RESULTS / f"p99-latency{suffix}.png")
    print()
    print(table)
    print(f"{kind} run: {header['seconds']} s; results in {RESULTS.relative_to(ROOT)}/")
    if args.readme:
        _write_readme(header, table)


def _write_readme(header: dict[str, Any], table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    machine = header["machine"]
    about = (
        f"Measured on {header['date']} with `{header['command']}` ({header['seconds']} s): "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['versions']['python']}, Redis "
        f"{machine['versions']['redis-server']}.\n"
    )
    readme.write_text(f"{head}{start}\n{about}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    main()
