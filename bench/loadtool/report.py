"""The bench's results: JSON lines, the Markdown tables, and the p99 chart."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TARGET_ROWS", "chart", "machine", "markdown", "write_jsonl"]

LABELS = {"project": "serverless-sse", "peer": "naive peer", "nchan": "nginx + Nchan"}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    versions = {"python": platform.python_version()}
    for package in ("uvicorn", "starlette", "redis", "sse_starlette"):
        with contextlib.suppress(ImportError, AttributeError):
            versions[package] = __import__(package).__version__
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    versions["redis-server"] = redis.stdout.split("v=")[-1].split()[0] if redis.stdout else ""
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20),
        "kernel": platform.release(),
        "versions": versions,
    }


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def _find(records: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for record in records:
        if all(record.get(k) == v for k, v in match.items()):
            return record
    return None


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _fanout_cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "not run"
    lost = record["lost"]
    loss = "no loss" if lost == 0 else f"{record['loss_pct']:.1f} % lost"
    return f"p99 {_ms(record['p99_ms'])}, {loss}"


def _ratio(ours: float | None, theirs: float | None, *, lower_is_better: bool) -> str:
    if not ours or not theirs:
        return "—"
    factor = theirs / ours if lower_is_better else ours / theirs
    if factor >= 1:
        return f"{factor:,.1f}× {'lower' if lower_is_better else 'higher'}"
    return f"{1 / factor:,.1f}× {'higher' if lower_is_better else 'lower'}"


# (label, target, what met means, how to read a record)
TARGET_ROWS: list[tuple[str, str]] = [
    ("1,000 subscribers × 10 events/s", "no loss, p99 ≤ 25 ms"),
    ("1,000 subscribers × 100 events/s", "no loss, p99 ≤ 50 ms"),
    ("3,000 subscribers × 10 events/s", "no loss, p99 ≤ 60 ms"),
    ("memory per idle connection", "≤ 20 KiB"),
    ("catch-up of 10,000 missed events", "≥ 50,000 events/s"),
    ("publish, one channel, 32 publishers", "≥ 5,000 events/s"),
    ("import of the stream handler", "≤ 150 ms"),
]


def _target_row(
    records: Sequence[dict[str, Any]], label: str, target: str
) -> tuple[list[str], bool | None]:
    """The cells of one target row (serverless-sse, peer, ratio, Nchan) and whether the
    project met the target (None: not measured)."""
    cells: dict[str, str] = {}
    met: bool | None = None
    ratio = "—"
    if "subscribers ×" in label:
        subscribers = int(label.split()[0].replace(",", ""))
        rate = float(label.split("×")[1].split()[0])
        found = {t: _find(records, scenario="fanout", target=t, subscribers=subscribers, rate=rate)
                 for t in LABELS}  # fmt: skip
        cells = {t: _fanout_cell(r) for t, r in found.items()}
        ours, peer = found["project"], found["peer"]
        if ours is not None:
            limit = float(target.split("≤")[1].split()[0])
            met = ours["lost"] == 0 and ours["p99_ms"] <= limit
        if ours is not None and peer is not None:
            ratio = _ratio(ours["p99_ms"], peer["p99_ms"], lower_is_better=True) + " p99"
    elif label.startswith("memory"):
        found = {t: _largest_fanout(records, t) for t in LABELS}
        cells = {
            t: f"{r['rss_per_conn_kib']:.1f} KiB" if r else "not run" for t, r in found.items()
        }
        ours, peer = found["project"], found["peer"]
        if ours is not None:
            met = ours["rss_per_conn_kib"] <= 20
        if ours is not None and peer is not None:
            ratio = _ratio(ours["rss_per_conn_kib"], peer["rss_per_conn_kib"], lower_is_better=True)
    elif label.startswith("catch-up"):
        found = {t: _find(records, scenario="catch_up", target=t) for t in LABELS}
        for t, r in found.items():
            if r is None:
                cells[t] = "not run"
            elif r["lost"]:
                cells[t] = f"{r['lost']:,} of {r['missed']:,} lost (no history)"
            else:
                cells[t] = f"{r['events_per_s']:,} events/s, none lost"
        ours = found["project"]
        if ours is not None:
            met = ours["lost"] == 0 and (ours["events_per_s"] or 0) >= 50_000
        peer = found["peer"]
        if peer is not None and peer["lost"]:
            ratio = "the peer cannot resume"
    elif label.startswith("publish"):
        found = {t: _find(records, scenario="publish", target=t) for t in LABELS}
        cells = {t: f"{r['events_per_s']:,} events/s" if r else "not run" for t, r in found.items()}
        ours, peer = found["project"], found["peer"]
        if ours is not None:
            met = ours["events_per_s"] >= 5_000 and ours["gap_free"] is not False
        if ours is not None and peer is not None:
            ratio = _ratio(ours["events_per_s"], peer["events_per_s"], lower_is_better=False)
    elif label.startswith("import"):
        found = {t: _find(records, scenario="import", target=t) for t in LABELS}
        cells = {t: _ms(r["import_ms"]) if r else "—" for t, r in found.items()}
        ours, peer = found["project"], found["peer"]
        if ours is not None:
            met = ours["import_ms"] <= 150
        if ours is not None and peer is not None:
            ratio = _ratio(ours["import_ms"], peer["import_ms"], lower_is_better=True)
    return [cells.get("project", "—"), cells.get("peer", "—"), ratio, cells.get("nchan", "—")], met


def _largest_fanout(records: Sequence[dict[str, Any]], target: str) -> dict[str, Any] | None:
    runs = [r for r in records if r["scenario"] == "fanout" and r["target"] == target]
    return max(runs, key=lambda r: r["connected"]) if runs else None


def markdown(records: Sequence[dict[str, Any]]) -> str:
    """The targets table, then every fan-out run in detail."""
    lines = [
        "| scenario | target | serverless-sse | met | naive peer | vs peer | nginx + Nchan |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, target in TARGET_ROWS:
        (ours, peer, ratio, nchan), met = _target_row(records, label, target)
        mark = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {target} | {ours} | {mark} | {peer} | {ratio} | {nchan} |")
    lines += [
        "",
        "| target | subscribers × events/s | p50 | p90 | p99 | max | lost | dup | out of order"
        " | deliveries/s | connect p99 | server CPU | store CPU | tool CPU | memory/conn |",
        "|" + " --- |" * 15,
    ]
    fanouts = [r for r in records if r["scenario"] == "fanout"]
    for r in sorted(
        fanouts, key=lambda r: (r["rate"], r["subscribers"], list(LABELS).index(r["target"]))
    ):
        lines.append(
            f"| {LABELS[r['target']]} | {r['subscribers']:,} × {r['rate']:g}"
            f" | {_ms(r['p50_ms'])} | {_ms(r['p90_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['max_ms'])}"
            f" | {r['loss_pct']:g} % | {r['duplicates']} | {r['out_of_order']}"
            f" | {r['deliveries_per_s']:,} | {_ms(r['connect_p99_ms'])}"
            f" | {r['server_cpu_pct']:g} % | {r['store_cpu_pct']:g} % | {r['tool_cpu_pct_max']:g} %"
            f" | {r['rss_per_conn_kib']:g} KiB |"
        )
    return "\n".join(lines) + "\n"


def chart(records: Sequence[dict[str, Any]], path: Path) -> None:
    """p99 latency against deliveries a second (subscribers × rate), one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    styles = {"project": ("#1f6feb", "o"), "peer": ("#d1242f", "s"), "nchan": ("#6e7781", "^")}
    for target, label in LABELS.items():
        for rate, dash in ((10.0, "-"), (100.0, "--")):
            runs = sorted(
                (r for r in records
                 if r["scenario"] == "fanout" and r["target"] == target and r["rate"] == rate),
                key=lambda r: r["subscribers"],
            )  # fmt: skip
            if not runs:
                continue
            color, marker = styles[target]
            ax.plot(
                [r["subscribers"] * r["rate"] for r in runs],
                [r["p99_ms"] for r in runs],
                dash, color=color, marker=marker, label=f"{label}, {rate:g} events/s",
            )  # fmt: skip
            for r in runs:
                if r["lost"]:
                    ax.annotate(f"{r['loss_pct']:.0f} % lost", (r["subscribers"] * r["rate"],
                                r["p99_ms"]), textcoords="offset points", xytext=(4, 4),
                                fontsize=7, color=color)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries per second (subscribers × events/s)")
    ax.set_ylabel("p99 publish → receive latency (ms)")
    ax.set_title("Fan-out on one process, one channel (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":  # re-render a saved run: python -m bench.loadtool.report FILE.jsonl
    saved = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines()]
    print(markdown([r for r in saved if "scenario" in r]))
