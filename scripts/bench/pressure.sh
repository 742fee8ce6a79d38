#!/usr/bin/env bash
# The idle timeout under pressure, with the release binary: hopline serve with
# --max-connections LIMIT (default 1,000), IDLE idle keep-alive connections (default 900,
# 90% of the limit) opened one after another, then NEW clients (default 300) at once, each
# one GET /. Reported: new clients served and the slowest, idle connections closed and
# whether longest idle first, and the server's closes by reason `pressure` (from
# /metrics). Two scenarios: the new clients arrive at once (SETTLE=0.2 s: slots are freed by
# taking the place of the longest idle) and after 3 s (the idle timeout had shrunk to its
# floor, 1 s, and idle connections were closed by time). Benchmarks are not tests: nothing
# is asserted.
#
# Usage: scripts/bench/pressure.sh     (from the repo root; needs python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
LIMIT=${LIMIT:-1000}
IDLE=${IDLE:-900}
NEW=${NEW:-300}
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
base=$(free_ports 2)
port=$base admin=$((base + 1))
for settle in 0.2 3; do
    taskset -c 1 target/release/hopline serve --listen "127.0.0.1:$port" --workers 1 --log warn \
        --max-connections "$LIMIT" --keepalive-timeout 60s --keepalive-timeout-min 1s \
        --admin "127.0.0.1:$admin" &
    pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
    echo "new clients after ${settle} s:"
    taskset -c 0 python3 scripts/bench/pressure.py 127.0.0.1 "$port" "$IDLE" "$NEW" "$settle"
    curl -s "http://127.0.0.1:$admin/metrics" |
        grep -E '^hopline_connections_closed_total\{side="downstream",reason="(pressure|idle_timeout)"\}|^hopline_idle_timeout_seconds' || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
