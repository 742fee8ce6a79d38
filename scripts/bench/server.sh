#!/usr/bin/env bash
# Server throughput: hopline serve vs nginx vs a minimal hyper server, each pinned to CPU 1
# with wrk pinned to CPU 0, for three connection types:
#   keepalive  wrk -t1 -c50 (persistent connections)
#   close      wrk -t1 -c50 -H 'Connection: close' (one request per connection)
#   pipeline   wrk -t1 -c50 with 16 requests per write (scripts/bench/pipeline.lua)
# Three interleaved rounds; prints the median requests/s per server and workload and the
# ratios hopline/nginx and hopline/hyper. Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/server.sh            (from the repo root; needs wrk and nginx)
#   DURATION=10s ROUNDS=3 CONNECTIONS=50 scripts/bench/server.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT=${PORT:-18180}
OUT=${OUT:-target/bench/server-$(date +%Y%m%d-%H%M%S).tsv}

for tool in wrk nginx taskset; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
cargo build --release --quiet --example hyper_hello
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 200 "Hello, world!"; }
    }
}
NGINX

start_server() {
    case $1 in
        hopline) taskset -c "$SERVER_CPU" target/release/hopline serve --listen "127.0.0.1:$PORT" --workers 1 --log warn & ;;
        nginx) taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -p "$work" & ;;
        hyper) taskset -c "$SERVER_CPU" target/release/examples/hyper_hello "127.0.0.1:$PORT" 2>/dev/null & ;;
    esac
    server_pid=$!
    wait_ready "http://127.0.0.1:$PORT/"
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    # let TIME_WAIT sockets from the short-lived run not starve the next one of ports
    sleep 1
}

run_wrk() { # workload -> requests/s
    local args=(-t1 -c"$CONNECTIONS" -d"$DURATION" --latency)
    case $1 in
        keepalive) ;;
        close) args+=(-H 'Connection: close') ;;
        pipeline) args+=(-s scripts/bench/pipeline.lua) ;;
    esac
    local url="http://127.0.0.1:$PORT/"
    local out
    if [ "$1" = pipeline ]; then
        out=$(taskset -c "$CLIENT_CPU" wrk "${args[@]}" "$url" -- 16 /)
    else
        out=$(taskset -c "$CLIENT_CPU" wrk "${args[@]}" "$url")
    fi
    local errors
    errors=$(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)
    [ -n "$errors" ] && echo "    ($1 $errors)" >&2
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

printf 'round\tserver\tworkload\trequests_per_s\n' > "$OUT"
for round in $(seq "$ROUNDS"); do
    for server in hopline nginx hyper; do
        start_server $server
        for workload in keepalive close pipeline; do
            rps=$(run_wrk $workload)
            printf '%s\t%s\t%s\t%s\n' "$round" "$server" "$workload" "$rps" | tee -a "$OUT"
        done
        stop_server
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
med = {}
for w in ('keepalive', 'close', 'pipeline'):
    for s in ('hopline', 'nginx', 'hyper'):
        vals = [float(r['requests_per_s']) for r in rows if r['server'] == s and r['workload'] == w]
        med[s, w] = statistics.median(vals) if vals else float('nan')
def round_ratio(w, other):
    """Median over rounds of hopline/other within the same round: rounds are interleaved,
    so a noisy stretch of the machine hits both sides of each ratio."""
    by = {(r['round'], r['server']): float(r['requests_per_s']) for r in rows if r['workload'] == w}
    return statistics.median(by[k, 'hopline'] / by[k, other] for k in {k for k, _ in by})
print(f"\nmedian requests/s over {len(set(r['round'] for r in rows))} rounds ({sys.argv[1]})")
print(f"{'workload':<10} {'hopline':>10} {'nginx':>10} {'hyper':>10} {'vs nginx':>9} {'vs hyper':>9}   (median of per-round ratios)")
for w in ('keepalive', 'close', 'pipeline'):
    h, n, y = med['hopline', w], med['nginx', w], med['hyper', w]
    print(f"{w:<10} {h:>10.0f} {n:>10.0f} {y:>10.0f} {h/n:>8.2f}x {h/y:>8.2f}x   ({round_ratio(w, 'nginx'):.2f}x, {round_ratio(w, 'hyper'):.2f}x)")
PY
