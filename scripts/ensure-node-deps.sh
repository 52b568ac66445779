#!/usr/bin/env bash
# The Node interoperability test runs the npm package `eventsource` from tests/interop/node.
# Install it from the committed package-lock.json (`npm ci`) when node_modules is missing or
# older than the lock file (and Node.js first, when it is missing); quiet and idempotent
# otherwise.
set -euo pipefail
"$(dirname "$0")/ensure-node.sh"
cd "$(dirname "$0")/../tests/interop/node"
stamp="node_modules/.installed-$(sha1sum package-lock.json | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "installing the Node interop test's packages (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
