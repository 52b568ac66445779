#!/usr/bin/env bash
# The Node interoperability test runs the npm package `eventsource` from tests/interop/node.
# Install it from the committed package-lock.json (`npm ci`) when node_modules is missing or
# older than the lock file; quiet and idempotent otherwise.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop/node"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: install Node.js 20 or later (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
stamp="node_modules/.installed-$(sha1sum package-lock.json | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "installing the Node interop test's packages (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
