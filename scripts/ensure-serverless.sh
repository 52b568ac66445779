#!/usr/bin/env bash
# Packaging runs the Serverless Framework pinned in package.json (v3, which packages offline
# and needs no login). Install it from the committed package-lock.json (`npm ci`, into
# node_modules/ here) when node_modules is missing or older than the lock file (and Node.js
# first, when it is missing); quiet and idempotent otherwise, so `make package` and
# `make test` can always call it.
set -euo pipefail
"$(dirname "$0")/ensure-node.sh"
cd "$(dirname "$0")/.."
stamp="node_modules/.installed-$(sha1sum package-lock.json | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "installing the Serverless Framework (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
