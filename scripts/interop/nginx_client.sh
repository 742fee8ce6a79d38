#!/usr/bin/env bash
# The pooled client against nginx: nginx logs `$connection $connection_requests` for each
# request, so the log shows exactly how hopline's client used connections.
#   keepalive: 20 URLs -> one nginx connection serving requests 1..20
#   close:      5 URLs -> five connections, one request each
#   pipeline:  20 URLs -> one connection (max 1 per host), requests 1..20
# Usage: scripts/interop/nginx_client.sh [path/to/hopline]   (needs nginx)
set -euo pipefail
bin=${1:-target/release/hopline}
work=$(mktemp -d)
. "$(dirname "$0")/../lib.sh"
port=$(free_ports 1)
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    log_format conn '\$connection \$connection_requests \$request_uri';
    access_log $work/access.log conn;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "hello from nginx\n"; }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "http://127.0.0.1:$port/"
: > "$work/access.log"

fail() { echo "FAIL: $*" >&2; echo "--- access log:" >&2; cat "$work/access.log" >&2; exit 1; }
urls() { for i in $(seq "$1"); do echo "http://127.0.0.1:$port/$2$i"; done; }
settle() { sleep 0.3; } # nginx writes its log line after the response

# The bodies go to standard output, the table (with its summary) to standard error.
"$bin" get $(urls 20 k) 2> "$work/get.out" > /dev/null
settle
grep -q "20 requests over 1 connection (19 reused" "$work/get.out" || fail "hopline get summary: $(tail -1 "$work/get.out")"
[ "$(grep -c '/k' "$work/access.log")" = 20 ] || fail "nginx did not log 20 requests"
[ "$(grep '/k' "$work/access.log" | awk '{print $1}' | sort -u | wc -l)" = 1 ] || fail "keepalive used more than one nginx connection"
[ "$(grep '/k' "$work/access.log" | awk '{print $2}' | tr '\n' ' ')" = "$(seq -s ' ' 20) " ] || fail "connection_requests should count 1..20"
echo "ok: hopline get (keepalive): 20 URLs, one nginx connection serving requests 1..20"

"$bin" get --mode close $(urls 5 c) 2> "$work/get.out" > /dev/null
settle
[ "$(grep '/c' "$work/access.log" | awk '{print $1}' | sort -u | wc -l)" = 5 ] || fail "close mode should use 5 connections"
[ "$(grep '/c' "$work/access.log" | awk '{print $2}' | sort -u)" = 1 ] || fail "close mode: one request per connection"
echo "ok: hopline get --mode close: 5 URLs, 5 nginx connections with one request each"

"$bin" get --mode pipeline --max-per-host 1 $(urls 20 p) 2> "$work/get.out" > /dev/null
settle
[ "$(grep '/p' "$work/access.log" | awk '{print $1}' | sort -u | wc -l)" = 1 ] || fail "pipeline used more than one connection"
[ "$(grep '/p' "$work/access.log" | awk '{print $2}' | tr '\n' ' ')" = "$(seq -s ' ' 20) " ] || fail "pipeline: requests 1..20 on one connection"
echo "ok: hopline get --mode pipeline: 20 URLs on one nginx connection, answered in order"

"$bin" bench -c 4 -n 2000 -t 1 "http://127.0.0.1:$port/b" > "$work/bench.out"
grep -q "2000 requests" "$work/bench.out" || fail "bench: $(cat "$work/bench.out")"
grep -q "responses  2xx 2000" "$work/bench.out" || fail "bench statuses: $(cat "$work/bench.out")"
grep -q "connections opened  4" "$work/bench.out" || fail "bench connections: $(cat "$work/bench.out")"
echo "ok: hopline bench -c 4 -n 2000 against nginx: 2000 x 2xx over 4 connections"
