#!/usr/bin/env bash
# The whole test suite, from a fresh clone: environment, services, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
scripts/ensure-redis.sh
scripts/ensure-chromium.sh   # browser interoperability tests (tests/interop)
scripts/ensure-node-deps.sh  # the npm eventsource package (tests/interop/node)
scripts/ensure-serverless.sh # the pinned Serverless Framework (tests/deploy packages the service)
scripts/ensure-nchan.sh      # nginx + Nchan, the benchmark's reference (tests/bench)
.venv/bin/ruff check lib functions tests bench
.venv/bin/ruff check infra
.venv/bin/mypy
# Most tests wait on servers, windows and timers rather than the CPU: three workers cut the
# wall time by more than half. Test modules that share a Redis database run on one worker
# (tests/conftest.py groups them). PYTEST_WORKERS=0 runs everything in this process.
.venv/bin/pytest -n "${PYTEST_WORKERS:-3}" --dist loadgroup "$@"
