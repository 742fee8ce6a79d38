#!/usr/bin/env bash
# Server memory per idle keep-alive connection: open N connections (default 10,000), one
# request each, hold them idle, and report the server's RSS growth per connection, for
# hopline serve, nginx (1 worker) and the minimal hyper server. Three interleaved rounds,
# medians. Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/idle_memory.sh     (from the repo root; needs nginx and python3)
#   CONNECTIONS=10000 ROUNDS=3 scripts/bench/idle_memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
CONNECTIONS=${CONNECTIONS:-10000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18190}
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
cargo build --release --quiet --example hyper_hello
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_timeout 300s;
    server { listen 127.0.0.1:$PORT; location / { return 200 "Hello, world!"; } }
}
NGINX

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

measure() { # server -> KiB per connection
    local pid measured
    case $1 in
        hopline) taskset -c 1 target/release/hopline serve --listen "127.0.0.1:$PORT" --workers 1 --log warn --max-connections 20000 --keepalive-timeout 300s & pid=$! ;;
        nginx) taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" & pid=$! ;;
        hyper) taskset -c 1 target/release/examples/hyper_hello "127.0.0.1:$PORT" 2>/dev/null & pid=$! ;;
    esac
    wait_ready "http://127.0.0.1:$PORT/"
    measured=$pid
    [ "$1" = nginx ] && measured=$(pgrep -P "$pid" | head -1)
    # warm up: a few connections' worth of buffers and allocator arenas
    for _ in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$PORT/"; done
    local before after
    before=$(rss_kib "$measured")
    coproc CLIENT { taskset -c 0 python3 scripts/bench/idle_clients.py 127.0.0.1 "$PORT" "$CONNECTIONS"; }
    read -r ready count <&"${CLIENT[0]}"
    sleep 1
    after=$(rss_kib "$measured")
    echo >&"${CLIENT[1]}"
    wait "$CLIENT_PID" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c "print(f'{($after - $before) / $count:.3f}')"
    echo "    $1: RSS $before KiB -> $after KiB with $count idle connections" >&2
}

printf 'round\tserver\tkib_per_connection\n' > "$work/results.tsv"
for round in $(seq "$ROUNDS"); do
    for server in hopline nginx hyper; do
        kib=$(measure $server)
        printf '%s\t%s\t%s\n' "$round" "$server" "$kib" | tee -a "$work/results.tsv"
        sleep 1
    done
done
python3 - "$work/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
print("\nmedian RSS growth per idle keep-alive connection")
for s in ('hopline', 'nginx', 'hyper'):
    vals = [float(r['kib_per_connection']) for r in rows if r['server'] == s]
    print(f"{s:<8} {statistics.median(vals):6.2f} KiB")
PY
