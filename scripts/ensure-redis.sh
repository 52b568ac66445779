#!/usr/bin/env bash
# The test suite needs Redis on 127.0.0.1:6379. Start it (memory only) when it is not answering.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
fi
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "redis did not start on 127.0.0.1:6379" >&2
exit 1
