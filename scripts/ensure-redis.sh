#!/usr/bin/env bash
# The test suite needs Redis on 127.0.0.1:6379, and redis-server and redis-cli to start
# Redis servers of its own (a cluster, a Redis to stop). Install them when they are missing,
# and start the shared one (memory only) when nothing answers there; quiet otherwise.
set -euo pipefail
here=$(dirname "$0")
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  "$here/apt-install.sh" "Redis (the test suite's store)" redis-server redis-tools
fi
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  exit 0
fi
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "redis did not start on 127.0.0.1:6379" >&2
exit 1
