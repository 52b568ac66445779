#!/usr/bin/env bash
# The whole test suite, from a fresh clone: environment, services, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
scripts/ensure-redis.sh
scripts/ensure-chromium.sh   # browser interoperability tests (tests/interop)
scripts/ensure-node-deps.sh  # the npm eventsource package (tests/interop/node)
.venv/bin/ruff check lib functions tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
