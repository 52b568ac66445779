#!/usr/bin/env bash
# Node.js and npm, for the Node interop test (scripts/ensure-node-deps.sh) and packaging
# (scripts/ensure-serverless.sh). Installs Debian's `nodejs` and `npm` when either command is
# missing; quiet and idempotent otherwise. The npm packages ask for Node 20 or later (Debian
# 13's nodejs; Debian 12's is 18): an older Node is used, with a warning.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  ./apt-install.sh "Node.js (the Node interop test and packaging)" "${missing[@]}"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "warning: Node.js $(node --version) is older than the 20 the npm packages ask for" >&2
fi
