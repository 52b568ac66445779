"""What a cold start costs each Lambda handler, and how big the package is.

    .venv/bin/python bench/cold_start.py [--runs 9]

For every handler that serverless.yml deploys, each figure the median of ``--runs`` fresh
processes:

- import: ``import functions.<family>`` (what Lambda's init phase runs), timed inside the
  process, wall clock and CPU time (the CPU time moves less when the machine is busy); and
  which SDKs (boto3, Mangum) the import pulled in, and which the first call did;
- first invocation: the handler's first call after the import (the app's startup: settings,
  the store and queue clients, Mangum), for a request that touches no store (``GET
  /__cold_start__``, a 404; for the worker, an empty SQS batch), configured as deployed:
  ``SSE_STORE=dynamodb://…``, ``SSE_QUEUE=sqs://…`` (clients are made, nothing is called).

Three setups: this checkout (the dev venv's Python); the package (``build/package``, made by
``infra/package.py``) extracted and run on Python 3.13 in isolated mode, as Lambda runs it,
with the bytecode it carries; and the same without bytecode and unable to write any
(``-B``), as a package without it runs on Lambda, whose code directory is read-only. The
package setups need a Python 3.13 (the runtime's); without one they are skipped.

Never part of the test run; local figures, not Lambda's (whose CPU share follows the memory
size), but the differences between handlers and setups carry over.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

HANDLERS = ("channels", "metrics", "tasks", "realtime", "groupchat", "dashboard", "worker")

# One cold start, in a fresh process: import, then the first invocation.
PROBE = """
import json, sys, time
root = sys.argv[1]
if root:
    sys.path.insert(0, root)
module_name = "functions." + sys.argv[2]
import importlib
clocks = (time.perf_counter, time.process_time)
started = [clock() for clock in clocks]
module = importlib.import_module(module_name)
imported = [clock() for clock in clocks]
at_import = sorted(m for m in ("boto3", "mangum") if m in sys.modules)
if sys.argv[2] == "worker":
    event = {"Records": []}
else:
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": "/__cold_start__",
        "rawQueryString": "", "headers": {"host": "bench"}, "isBase64Encoded": False,
        "requestContext": {"http": {"method": "GET", "path": "/__cold_start__",
                                    "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
    }
module.handler(event, None)
invoked = [clock() for clock in clocks]
at_first_call = sorted(m for m in ("boto3", "mangum") if m in sys.modules)
print(json.dumps({
    "import": [b - a for a, b in zip(started, imported)],
    "first": [b - a for a, b in zip(imported, invoked)],
    "at_import": at_import,
    "at_first_call": at_first_call,
}))
"""

DEPLOYED_ENV = {
    "SSE_STORE": "dynamodb://sse-events?region=us-east-1",
    "SSE_QUEUE": "sqs://sse-jobs?region=us-east-1",
    "SSE_WORKER": "off",
    "SSE_LOG_LEVEL": "ERROR",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def cold_start(python: list[str], root: str, handler: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [*python, "-c", PROBE, root, handler],
        capture_output=True,
        text=True,
        env=env,
        cwd=root or ROOT,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def measure(python: list[str], root: str, env: dict[str, str], runs: int) -> None:
    print(
        f"{'handler':<10} {'import ms':>14} {'first call ms':>14}"
        "  SDKs imported at import / by the first call"
    )
    print(f"{'':<10} {'wall (CPU)':>14} {'wall (CPU)':>14}")
    for handler in HANDLERS:
        own = dict(env)
        if handler == "dashboard":  # as deployed: no store, no queue
            own.update(SSE_STORE="memory://", SSE_QUEUE="memory://")
        samples = [cold_start(python, root, handler, own) for _ in range(runs)]
        figures = []
        for phase in ("import", "first"):
            wall = statistics.median(s[phase][0] for s in samples) * 1000
            cpu = statistics.median(s[phase][1] for s in samples) * 1000
            figures.append(f"{wall:.0f} ({cpu:.0f})")
        sdks = f"{', '.join(samples[0]['at_import']) or '-'} / "
        sdks += ", ".join(samples[0]["at_first_call"]) or "-"
        print(f"{handler:<10} {figures[0]:>14} {figures[1]:>14}  {sdks}")


def load_packager() -> Any:
    spec = importlib.util.spec_from_file_location("infra_package", ROOT / "infra" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def package_size(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as archive:
        infos = archive.infolist()
    unzipped = Counter[str]()
    for info in infos:
        top = info.filename.split("/", 1)[0]
        top = top.split(".")[0].split("-")[0] if "/" in info.filename else "(files at the root)"
        unzipped[top] += info.file_size
    total = sum(unzipped.values())
    print(
        f"{artifact.relative_to(ROOT)}: {artifact.stat().st_size / 1e6:.1f} MB zipped, "
        f"{total / 1e6:.1f} MB unzipped, {len(infos)} files "
        f"(Lambda's limit: 250 MB unzipped, with layers)"
    )
    ours = unzipped["serverless_sse"] + unzipped["functions"] + unzipped["infra"]
    print(f"  the service's own code: {ours / 1e6:.2f} MB; largest dependencies:")
    for name, size in unzipped.most_common():
        if name in ("serverless_sse", "functions", "infra"):
            continue
        if size < 1e6:
            break
        print(f"    {name:<20} {size / 1e6:5.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **DEPLOYED_ENV}

    print(f"== this checkout: {sys.executable} ({sys.version.split()[0]})")
    checkout_env = {**base_env, "PYTHONPATH": f"{ROOT / 'lib'}:{ROOT}"}
    measure([sys.executable], "", checkout_env, args.runs)

    packager = load_packager()
    subprocess.run([sys.executable, str(ROOT / "infra" / "package.py"), "--step", "artifact"])
    artifact: Path = packager.ARTIFACT
    print()
    package_size(artifact)
    python = packager.lambda_python()
    if python is None:
        print("\nno Python 3.13 here: the package's cold starts are not measured")
        return
    with tempfile.TemporaryDirectory() as task:
        with zipfile.ZipFile(artifact) as archive:
            archive.extractall(task)
        print(f"\n== the package on {python} (-I), with its bytecode")
        measure([python, "-I"], task, base_env, args.runs)
        for cache in Path(task).rglob("__pycache__"):
            shutil.rmtree(cache)
        print(f"\n== the package on {python} (-I -B), without bytecode (compiled at each start)")
        measure([python, "-I", "-B"], task, base_env, args.runs)


if __name__ == "__main__":
    main()
