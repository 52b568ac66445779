#!/usr/bin/env bash
# The chaos suite at full length (README "Reliability"; tests/chaos/README.md): processes
# SIGKILLed and restarted, clients hanging up anywhere, Redis killed with and without
# persistence, DynamoDB throttling and failing, a 10-minute soak of 1,000 streams, a rolling
# restart. Prints the figures of every scenario at the end (and writes them, one JSON line per
# scenario, to $SSE_CHAOS_REPORT, build/chaos-report.jsonl by default).
#
#   SSE_CHAOS_LONG=0             the short versions (those of `make test`) instead
#   SSE_CHAOS_SOAK_SECONDS=600   the soak's length; likewise SSE_CHAOS_KILL_SECONDS (180),
#                                SSE_CHAOS_CHURN_SECONDS (120), SSE_CHAOS_DYNAMODB_SECONDS (90),
#                                SSE_CHAOS_OUTAGE_SECONDS (10), SSE_CHAOS_RESTART_ROUNDS (5),
#                                SSE_CHAOS_SUBSCRIBERS (200), SSE_CHAOS_SOAK_STREAMS (1000)
#   extra arguments go to pytest (e.g. -k soak)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
scripts/ensure-redis.sh # the redis-server binary (the suite starts Redis servers of its own)
export SSE_CHAOS_LONG="${SSE_CHAOS_LONG:-1}"
export SSE_CHAOS_REPORT="${SSE_CHAOS_REPORT:-build/chaos-report.jsonl}"
mkdir -p "$(dirname "$SSE_CHAOS_REPORT")"
: >"$SSE_CHAOS_REPORT"
exec .venv/bin/pytest -n 0 tests/chaos -m chaos "$@"
