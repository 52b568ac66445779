#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (headless). Install it when it is missing;
# non-interactive, so it runs in CI (as root, no terminal) as well as on a laptop.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  exit 0
fi
./apt-install.sh "Chromium (the browser tests)" chromium
