#!/usr/bin/env bash
# TLS servers compared: hopline serve (1 worker) and nginx (1 worker, OpenSSL,
# ssl_session_cache and tickets on), each pinned to CPU 1 with the load on CPU 0, the same
# ECDSA P-256 certificate (made for the run), three interleaved rounds:
#   keepalive  wrk -t1 -c50 over https (TLS records on warm connections)
#   keepalive-hopline-bench  the same with hopline bench -c50 as the client (rustls: a
#              cheaper client than wrk's OpenSSL one, so the server is more likely the limit)
#   full       hopline bench --mode close --no-tls-resumption -c50: a full TLS 1.3
#              handshake per request
#   resumed    hopline bench --mode close -c4: every connection resumes a session (4
#              connections: a client holds a few single-use tickets per server)
# For each: requests (or handshakes) per second, and the server's CPU time per request
# (utime+stime from /proc over the run). A handshake costs the client more than the server
# (it verifies two signatures, the server makes one), so on two cores the handshake
# workloads are bound by the client: their per-second figures are the same for both
# servers, and the server's CPU per handshake is the comparison that means something
# (its inverse is the rate one core could sustain). Then the upstream side: hopline proxy
# in front of a TLS origin, and how many upstream handshakes 10,000 requests cost.
# Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/tls.sh           (from the repo root; needs wrk, nginx, openssl)
#   DURATION=10s ROUNDS=3 scripts/bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18443}
OUT=${OUT:-target/bench/tls-$(date +%Y%m%d-%H%M%S).tsv}
for tool in wrk nginx taskset openssl python3; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light openssl)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
server_pid=
trap 'kill $server_pid $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
make_pki "$work"
ca=$work/ca.pem
bin=target/release/hopline
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        location / { return 200 "Hello, world!"; }
    }
}
NGINX

start_server() {
    case $1 in
        hopline) taskset -c 1 "$bin" serve --listen "127.0.0.1:$PORT" --workers 1 --log warn \
                    --tls-cert "$work/site.pem" --tls-key "$work/site.key" & server_pid=$! ;;
        nginx) taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" & server_pid=$! ;;
    esac
    wait_ready_tls "https://localhost:$PORT/" "$ca"
    measured=$server_pid
    [ "$1" = nginx ] && measured=$(pgrep -P "$server_pid" | head -1)
    return 0
}
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    sleep 1 # TIME_WAIT from the handshake runs
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$measured/stat"; }

# workload -> "per_second count": requests/s and requests (keepalive), or handshakes/s and
# handshakes (full, resumed).
run_load() {
    local url="https://localhost:$PORT/" out
    case $1 in
        keepalive)
            out=$(taskset -c 0 wrk -t1 -c50 -d"$DURATION" "$url")
            python3 -c '
import re, sys
t = sys.stdin.read()
print(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1), re.search(r"(\d+) requests in", t).group(1))' <<<"$out" ;;
        keepalive-hopline-bench)
            out=$(taskset -c 0 "$bin" bench -c50 -t 1 -d "$DURATION" --cacert "$ca" --json "$url")
            python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["requests_per_second"], r["requests"])' <<<"$out" ;;
        full|resumed)
            local flags=(-c50 --no-tls-resumption)
            [ "$1" = resumed ] && flags=(-c4)
            out=$(taskset -c 0 "$bin" bench --mode close "${flags[@]}" -t 1 -d "$DURATION" \
                --cacert "$ca" --json "$url")
            python3 -c '
import json, sys
r = json.load(sys.stdin)
t = r["tls"]
if t["failures"] or r["errors"]:
    print("errors:", r["errors"], file=sys.stderr)
print(t["handshakes_per_second"], t["handshakes"], t["resumed"], file=sys.stdout)' <<<"$out" ;;
    esac
}

printf 'round\tserver\tworkload\tper_second\tcount\tresumed\tserver_cpu_us_each\n' > "$OUT"
hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    for server in hopline nginx; do
        start_server $server
        for workload in keepalive keepalive-hopline-bench full resumed; do
            before=$(cpu_ticks)
            read -r per_second count resumed <<<"$(run_load $workload)"
            after=$(cpu_ticks)
            cpu_us=$(python3 -c "print(f'{($after - $before) * 1e6 / $hz / max($count, 1):.1f}')")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$workload" "$per_second" \
                "$count" "${resumed:--}" "$cpu_us" | tee -a "$OUT"
        done
        stop_server
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def med(s, w, f):
    return statistics.median(float(r[f]) for r in rows if r['server'] == s and r['workload'] == w)
def ratio(w, f, invert=False):
    by = {(r['round'], r['server']): float(r[f]) for r in rows if r['workload'] == w}
    rounds = sorted({k for k, _ in by})
    vals = [(by[k, 'nginx'] / by[k, 'hopline']) if invert else (by[k, 'hopline'] / by[k, 'nginx']) for k in rounds]
    return statistics.median(vals)
print(f"\nmedians over {len(set(r['round'] for r in rows))} rounds ({sys.argv[1]})")
print(f"{'workload':<24} {'hopline /s':>11} {'nginx /s':>10} {'ratio':>7}   {'hopline cpu':>12} {'nginx cpu':>10} {'capacity ratio':>15}")
for w in ('keepalive', 'keepalive-hopline-bench', 'full', 'resumed'):
    print(f"{w:<24} {med('hopline', w, 'per_second'):>11.0f} {med('nginx', w, 'per_second'):>10.0f} "
          f"{ratio(w, 'per_second'):>6.2f}x   {med('hopline', w, 'server_cpu_us_each'):>10.1f}us "
          f"{med('nginx', w, 'server_cpu_us_each'):>8.1f}us {ratio(w, 'server_cpu_us_each', invert=True):>14.2f}x")
print("capacity ratio: nginx's server CPU per request / hopline's (per round, then the median):")
print("how many more requests one core of hopline serves than one core of nginx.")
PY

# The upstream side: hopline proxy (pooled) in front of a TLS origin (hopline serve, its
# handshakes counted by its metrics): 10,000 requests over 50 client connections.
origin=$((PORT + 1)) admin=$((PORT + 2)) proxy=$((PORT + 3))
taskset -c 1 "$bin" serve --listen "127.0.0.1:$origin" --admin "127.0.0.1:$admin" --workers 1 --log warn \
    --tls-cert "$work/site.pem" --tls-key "$work/site.key" & server_pid=$!
taskset -c 1 "$bin" proxy --listen "127.0.0.1:$proxy" --upstream "https://localhost:$origin" \
    --upstream-cacert "$ca" --workers 1 --log warn &
wait_ready "http://127.0.0.1:$proxy/"
handshakes() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^hopline_tls_handshakes_total\{side="downstream"/ {n += $2} END {print n + 0}'; }
before=$(handshakes)
taskset -c 0 "$bin" bench -c 50 -n 10000 -t 1 "http://127.0.0.1:$proxy/" | sed -n 2p
after=$(handshakes)
# (The readiness check went through the proxy before `before`: its connection is pooled.)
echo "upstream TLS handshakes for 10,000 proxied requests over 50 client connections: $((after - before))"
