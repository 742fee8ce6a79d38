#!/usr/bin/env bash
# The load generator: `hopline bench` against `wrk`, back to back against the same nginx
# (1 worker, pinned to CPU 1; the load generator pinned to CPU 0, one thread each), for
# keep-alive (-c 50) and pipelined (-c 50, 16 deep; wrk with scripts/bench/pipeline.lua).
# Three interleaved rounds; medians of requests/s and of latency percentiles, and ratios.
# Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/client.sh         (from the repo root; needs wrk and nginx)
#   DURATION=10s ROUNDS=3 scripts/bench/client.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18280}
OUT=${OUT:-target/bench/client-$(date +%Y%m%d-%H%M%S).tsv}
for tool in wrk nginx taskset python3; do
    command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$PORT; location / { return 200 "Hello, world!"; } }
}
NGINX
taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "http://127.0.0.1:$PORT/"
url="http://127.0.0.1:$PORT/"

# wrk's "Latency Distribution" lines (50/90/99%) in microseconds.
wrk_latency() {
    awk '/^ +(50|90|99)%/ {v=$2; u=1; if (v ~ /us$/) {u=1} else if (v ~ /ms$/) {u=1000} else if (v ~ /s$/) {u=1000000}; gsub(/[a-z]+$/, "", v); printf "%s ", v*u}'
}

printf 'round\ttool\tworkload\trequests_per_s\tp50_us\tp90_us\tp99_us\n' > "$OUT"
for round in $(seq "$ROUNDS"); do
    for workload in keepalive pipeline; do
        for tool in hopline wrk; do
            if [ $tool = wrk ]; then
                extra=()
                [ $workload = pipeline ] && extra=(-s scripts/bench/pipeline.lua)
                out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" --latency "${extra[@]}" "$url" -- 16 /)
                rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
                read -r p50 p90 p99 <<<"$(wrk_latency <<<"$out")"
            else
                mode=(--mode keepalive)
                [ $workload = pipeline ] && mode=(--mode pipeline --depth 16)
                out=$(taskset -c 0 target/release/hopline bench -t 1 -c 50 -d "$DURATION" "${mode[@]}" --json "$url")
                read -r rps p50 p90 p99 <<<"$(python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_us"]; print(r["requests_per_second"], l["p50"], l["p90"], l["p99"])' <<<"$out")"
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$tool" "$workload" "$rps" "$p50" "$p90" "$p99" | tee -a "$OUT"
        done
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def med(tool, workload, field):
    return statistics.median(float(r[field]) for r in rows if r['tool'] == tool and r['workload'] == workload)
print(f"\nmedians over {len(set(r['round'] for r in rows))} rounds against nginx (1 worker) ({sys.argv[1]})")
print(f"{'workload':<10} {'tool':<8} {'req/s':>10} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8}")
for w in ('keepalive', 'pipeline'):
    for t in ('hopline', 'wrk'):
        print(f"{w:<10} {t:<8} {med(t,w,'requests_per_s'):>10.0f} {med(t,w,'p50_us'):>8.0f} {med(t,w,'p90_us'):>8.0f} {med(t,w,'p99_us'):>8.0f}")
    # wrk reports 0 for a percentile it did not record (short pipelined runs): no ratio.
    ratio = lambda f, width: f"{med('hopline', w, f) / med('wrk', w, f):.2f}x".rjust(width) if med('wrk', w, f) else "n/a".rjust(width)
    print(f"{w:<10} {'ratio':<8} {ratio('requests_per_s', 10)} {ratio('p50_us', 8)} {ratio('p90_us', 8)} {ratio('p99_us', 8)}")
PY
