#!/usr/bin/env bash
# HTTP/2 server throughput: hopline serve vs nginx (http2, 1 worker) vs hyper's HTTP/2
# server, each pinned to CPU 1, h2load pinned to CPU 0: `h2load -c50 -m16` (50 connections,
# 16 streams each) over h2c (prior knowledge), then over TLS (ALPN h2; ECDSA P-256
# certificate made for the run). Three interleaved rounds; medians and ratios. (Memory per
# idle HTTP/2 connection: H2=1 scripts/bench/idle_memory.sh.) Benchmarks are not tests:
# nothing is asserted.
#
# Usage: scripts/bench/h2.sh            (from the repo root; needs h2load, nginx, openssl)
#   DURATION=10 ROUNDS=3 CONNECTIONS=50 STREAMS=16 scripts/bench/h2.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
STREAMS=${STREAMS:-16}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT=${PORT:-18280}
OUT=${OUT:-target/bench/h2-$(date +%Y%m%d-%H%M%S).tsv}

for tool in h2load nginx taskset openssl; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install nghttp2-client nginx-light)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
cargo build --release --quiet --example hyper_hello
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
make_pki "$work"

nginx_conf() { # $1: listen parameters
    cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 128;
    server {
        listen 127.0.0.1:$PORT $1;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        location / { return 200 "Hello, world!"; }
    }
}
NGINX
}

start_server() { # $1: server, $2: h2c | tls
    local tls=()
    [ "$2" = tls ] && tls=(--tls-cert "$work/site.pem" --tls-key "$work/site.key")
    case $1 in
        hopline) taskset -c "$SERVER_CPU" target/release/hopline serve --listen "127.0.0.1:$PORT" \
            --workers 1 --log warn "${tls[@]}" & ;;
        nginx)
            if [ "$2" = tls ]; then nginx_conf "ssl http2"; else nginx_conf "http2"; fi
            taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -p "$work" & ;;
        hyper) taskset -c "$SERVER_CPU" target/release/examples/hyper_hello "127.0.0.1:$PORT" h2 2>/dev/null & ;;
    esac
    server_pid=$!
    if [ "$2" = tls ]; then wait_ready_tls "https://localhost:$PORT/" "$work/ca.pem"
    else for _ in $(seq 100); do h2load -n1 "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.05; done; fi
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    sleep 0.3
}

load() { # $1: url; prints requests/s
    taskset -c "$CLIENT_CPU" h2load -c "$CONNECTIONS" -m "$STREAMS" -D "$DURATION" --warm-up-time=1 "$1" 2>/dev/null \
        | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}

printf 'round\tserver\ttransport\trequests_per_s\n' > "$OUT"
for round in $(seq "$ROUNDS"); do
    for transport in h2c tls; do
        for server in hopline nginx hyper; do
            [ "$server/$transport" = hyper/tls ] && continue # the example speaks h2c only
            start_server "$server" "$transport"
            url="http://127.0.0.1:$PORT/"
            [ "$transport" = tls ] && url="https://localhost:$PORT/"
            rps=$(load "$url")
            stop_server
            printf '%s\t%s\t%s\t%s\n' "$round" "$server" "$transport" "$rps" | tee -a "$OUT"
        done
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rps = {}
for r in rows:
    rps.setdefault((r["server"], r["transport"]), []).append(float(r["requests_per_s"]))
print(f"\nh2load -c{__import__('os').environ.get('CONNECTIONS', '50')} -m{__import__('os').environ.get('STREAMS', '16')}: median requests/s")
for transport in ("h2c", "tls"):
    h = statistics.median(rps[("hopline", transport)])
    n = statistics.median(rps[("nginx", transport)])
    line = f"{transport:<4} hopline {h:>9.0f}  nginx {n:>9.0f} ({h/n:.2f}x)"
    if ("hyper", transport) in rps:
        y = statistics.median(rps[("hyper", transport)])
        line += f"  hyper {y:>9.0f} ({h/y:.2f}x)"
    print(line)
PY

echo
echo "idle memory per HTTP/2 connection: H2=1 scripts/bench/idle_memory.sh"
