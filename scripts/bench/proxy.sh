#!/usr/bin/env bash
# Proxies compared, each pinned to CPU 1: hopline proxy (1 worker; pooled keep-alive
# upstream, the default, and pipelined upstream, depth 8), nginx as a proxy (1 worker,
# upstream keepalive 32, HTTP/1.1) and HAProxy (1 thread, http mode, http-reuse safe), in
# front of an nginx origin (1 worker, `return 200 "Hello, world!"`), wrk -t1 -c50 on CPU 0.
# Two layouts, each run in full:
#   alone   the origin on CPU 0 with wrk: the proxy has CPU 1 to itself (its own cost)
#   shared  the origin on CPU 1 with the proxy (the proxy's cost is diluted by the origin's)
# Three interleaved rounds per layout; medians of requests/s, p99 latency, upstream
# connections opened and the share of upstream requests on reused connections (from the
# origin's stub_status), and the median latency added at one connection (wrk -c1 through the
# proxy minus wrk -c1 direct). With TLS=1 the proxies terminate TLS (an ECDSA P-256
# certificate made for the run; wrk speaks https to them) and talk plain HTTP to the origin.
# Nothing is asserted.
#
# Usage: scripts/bench/proxy.sh       (from the repo root; needs wrk, nginx, haproxy)
#   DURATION=10s ROUNDS=3 LAYOUTS="alone shared" PROXIES="hopline haproxy" scripts/bench/proxy.sh
#   HOPLINE_BEFORE=/tmp/old/hopline PROXIES="hopline hopline-before" scripts/bench/proxy.sh
#   TLS=1 PROXIES="hopline haproxy" scripts/bench/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
DURATION=${DURATION:-10s}
LATENCY_DURATION=${LATENCY_DURATION:-5s}
ROUNDS=${ROUNDS:-3}
LAYOUTS=${LAYOUTS:-alone shared}
PROXIES=${PROXIES:-hopline hopline-pipelined nginx haproxy}
ORIGIN=${ORIGIN:-18601}
PROXY=${PROXY:-18602}
TLS=${TLS:-0}
OUT=${OUT:-target/bench/proxy-$(date +%Y%m%d-%H%M%S).tsv}
for tool in wrk nginx haproxy taskset python3; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install wrk nginx-light haproxy)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
mkdir -p "$work/origin" "$work/nginx-proxy"
make_pki "$work"
cat "$work/site.pem" "$work/site.key" > "$work/site-combined.pem" # HAProxy's crt format
scheme=http listen_tls= bind_tls= hopline_tls=()
if [ "$TLS" = 1 ]; then
    scheme=https listen_tls=ssl bind_tls="ssl crt $work/site-combined.pem"
    hopline_tls=(--tls-cert "$work/site.pem" --tls-key "$work/site.key")
fi
cat > "$work/origin/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/origin/error.log warn;
pid $work/origin/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN;
        location = /status { stub_status; }
        location / { return 200 "Hello, world!"; }
    }
}
NGINX
cat > "$work/nginx-proxy/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx-proxy/error.log warn;
pid $work/nginx-proxy/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 32; keepalive_requests 1000000; }
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:$PROXY $listen_tls;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
cat > "$work/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 5000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse safe
frontend fe
    bind 127.0.0.1:$PROXY $bind_tls
    default_backend be
backend be
    server origin 127.0.0.1:$ORIGIN
HAPROXY

origin_pid=
proxy_pid=
trap 'kill $origin_pid $proxy_pid 2>/dev/null || true; rm -rf "$work"' EXIT
start_origin() { # cpu
    taskset -c "$1" nginx -c "$work/origin/nginx.conf" -p "$work/origin" &
    origin_pid=$!
    wait_ready "http://127.0.0.1:$ORIGIN/"
}
stop_origin() {
    kill "$origin_pid" 2>/dev/null || true
    wait "$origin_pid" 2>/dev/null || true
    origin_pid=
    sleep 1
}

# Origin counters: "accepts requests".
origin_counts() {
    curl -s "http://127.0.0.1:$ORIGIN/status" | awk 'NR==3 {print $1, $3}'
}

start_proxy() {
    case $1 in
        hopline) taskset -c 1 target/release/hopline proxy --listen "127.0.0.1:$PROXY" \
                    --upstream "http://127.0.0.1:$ORIGIN" --workers 1 --log warn "${hopline_tls[@]}" & ;;
        # Another build of hopline (HOPLINE_BEFORE=path), to compare two versions side by side.
        hopline-before) taskset -c 1 "$HOPLINE_BEFORE" proxy --listen "127.0.0.1:$PROXY" \
                    --upstream "http://127.0.0.1:$ORIGIN" --workers 1 --log warn "${hopline_tls[@]}" & ;;
        hopline-pipelined) taskset -c 1 target/release/hopline proxy --listen "127.0.0.1:$PROXY" \
                    --upstream "http://127.0.0.1:$ORIGIN" --workers 1 --log warn \
                    --upstream-mode pipeline --upstream-depth 8 "${hopline_tls[@]}" & ;;
        nginx) taskset -c 1 nginx -c "$work/nginx-proxy/nginx.conf" -p "$work/nginx-proxy" & ;;
        haproxy) taskset -c 1 haproxy -f "$work/haproxy.cfg" -db & ;;
    esac
    proxy_pid=$!
    if [ "$TLS" = 1 ]; then
        wait_ready_tls "https://localhost:$PROXY/" "$work/ca.pem"
    else
        wait_ready "http://127.0.0.1:$PROXY/"
    fi
}

stop_proxy() {
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=
    sleep 1
}

# wrk -> "requests/s p50_us p99_us"
run_wrk() {
    local out
    out=$(taskset -c 0 wrk -t1 -c"$1" -d"$2" --latency "$3")
    python3 -c '
import re, sys
text = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
def us(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1000000}[u]
print(rps, us(50), us(99))
' <<<"$out"
}

printf 'layout\tround\tproxy\trequests_per_s\tp99_us\tupstream_connections\tupstream_requests\tp50_c1_us\tdirect_p50_c1_us\n' > "$OUT"
for layout in $LAYOUTS; do
  if [ "$layout" = alone ]; then start_origin 0; else start_origin 1; fi
  for round in $(seq "$ROUNDS"); do
    read -r _ direct_p50 _ <<<"$(run_wrk 1 "$LATENCY_DURATION" "http://127.0.0.1:$ORIGIN/")"
    for proxy in $PROXIES; do
        start_proxy $proxy
        read -r accepts_before requests_before <<<"$(origin_counts)"
        read -r rps _ p99 <<<"$(run_wrk 50 "$DURATION" "$scheme://127.0.0.1:$PROXY/")"
        read -r accepts_after requests_after <<<"$(origin_counts)"
        read -r _ p50_c1 _ <<<"$(run_wrk 1 "$LATENCY_DURATION" "$scheme://127.0.0.1:$PROXY/")"
        # the status request itself is one origin request on its own connection
        conns=$((accepts_after - accepts_before - 1))
        reqs=$((requests_after - requests_before - 1))
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$layout" "$round" "$proxy" "$rps" "$p99" "$conns" "$reqs" "$p50_c1" "$direct_p50" | tee -a "$OUT"
        stop_proxy
    done
  done
  stop_origin
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
for layout in dict.fromkeys(r['layout'] for r in rows):
    lr = [r for r in rows if r['layout'] == layout]
    proxies = list(dict.fromkeys(r['proxy'] for r in lr))
    def med(p, f):
        return statistics.median(float(r[f]) for r in lr if r['proxy'] == p)
    where = 'proxy alone on CPU 1, origin and wrk on CPU 0' if layout == 'alone' else 'proxy and origin on CPU 1, wrk on CPU 0'
    print(f"\n{layout}: {where}; medians over {len(set(r['round'] for r in lr))} rounds ({sys.argv[1]})")
    print(f"{'proxy':<18} {'req/s':>9} {'p99 us':>8} {'upstream conns':>15} {'reused':>9} {'added p50 @c1':>14}")
    for p in proxies:
        conns, reqs = med(p, 'upstream_connections'), med(p, 'upstream_requests')
        reused = 100.0 * (1 - conns / reqs) if reqs else float('nan')
        added = med(p, 'p50_c1_us') - med(p, 'direct_p50_c1_us')
        print(f"{p:<18} {med(p,'requests_per_s'):>9.0f} {med(p,'p99_us'):>8.0f} {conns:>15.0f} {reused:>8.3f}% {added:>12.0f}us")
    # Ratios per round (the proxies of one round ran back to back), then their median.
    def ratio(a, b):
        by = {(r['round'], r['proxy']): float(r['requests_per_s']) for r in lr}
        return statistics.median(by[(n, a)] / by[(n, b)] for n in sorted(set(r['round'] for r in lr)))
    for h in [p for p in proxies if p.startswith('hopline') and p != 'hopline-before']:
        others = '   '.join(f"{h} / {o}: {ratio(h, o):.2f}x" for o in proxies if o != h and (not o.startswith('hopline') or o == 'hopline-before'))
        print(others)
PY
