#!/usr/bin/env bash
# A proxy speaking HTTP/2 to its clients and HTTP/1.1 to a pooled upstream: hopline proxy
# (1 worker, h2c downstream, keep-alive upstream) against HAProxy 2.6 (1 thread,
# `bind ... proto h2`, `http-reuse safe`), in front of an nginx origin (1 worker,
# `return 200 "Hello, world!"`), h2load -c50 -m16 pinned to CPU 0. Two layouts:
#   alone   the origin on CPU 0 with h2load: the proxy has CPU 1 to itself (its own cost)
#   shared  the origin on CPU 1 with the proxy
# And two amounts of header work (WORKS):
#   defaults  each proxy as it comes: hopline adds Via both ways, X-Forwarded-For,
#             Forwarded and X-Forwarded-Proto; HAProxy adds none of them
#   equal     HAProxy told to add the same fields (option forwardfor, add-header)
# The proxies (PROXIES): hopline with a keep-alive upstream (one request per upstream
# connection at a time, as HAProxy), hopline-pipelined (`--upstream-mode pipeline
# --upstream-depth 16`: the streams' requests pipelined onto the upstream connections, a
# per-hop choice HAProxy does not offer), haproxy.
# Three interleaved rounds per layout; medians of requests/s and the ratio. Nothing is
# asserted.
#
# Usage: scripts/bench/proxy_h2.sh     (from the repo root; needs h2load, nginx, haproxy)
#   DURATION=10 ROUNDS=3 LAYOUTS="alone shared" WORKS="defaults equal" scripts/bench/proxy_h2.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
LAYOUTS=${LAYOUTS:-alone shared}
WORKS=${WORKS:-defaults equal}
PROXIES=${PROXIES:-hopline hopline-pipelined haproxy}
ORIGIN=${ORIGIN:-18701}
PROXY=${PROXY:-18702}
OUT=${OUT:-target/bench/proxy-h2-$(date +%Y%m%d-%H%M%S).tsv}
for tool in h2load nginx haproxy taskset python3; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install nghttp2-client nginx-light haproxy)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
nginx_hello_conf "$work" "$ORIGIN"
haproxy_h2_conf "$PROXY" "$ORIGIN" > "$work/haproxy-defaults.cfg"
# The fields hopline adds by default, added by HAProxy too.
sed 's/^    default_backend be$/    option forwardfor\
    http-request set-header X-Forwarded-Proto http\
    http-request add-header Forwarded "for=%[src];proto=http;host=%[req.hdr(host)]"\
    http-request add-header Via "2 haproxy"\
    http-response add-header Via "1.1 haproxy"\
    default_backend be/' "$work/haproxy-defaults.cfg" > "$work/haproxy-equal.cfg"


printf 'work\tlayout\tround\tproxy\trequests_per_s\n' > "$OUT"
for layout in $LAYOUTS; do
    origin_cpu=0
    [ "$layout" = shared ] && origin_cpu=1
    taskset -c "$origin_cpu" nginx -c "$work/nginx.conf" -p "$work" &
    wait_ready "http://127.0.0.1:$ORIGIN/"
    for round in $(seq "$ROUNDS"); do
      for work_mode in $WORKS; do
        for proxy in $PROXIES; do
            start_h2_proxy "$proxy" "$PROXY" "$ORIGIN" "$work/haproxy-$work_mode.cfg"
            pid=$!
            h2c_ready "$PROXY"
            rps=$(taskset -c 0 h2load -c50 -m16 -D "$DURATION" --warm-up-time=1 "http://127.0.0.1:$PROXY/" 2>/dev/null \
                | awk '/^finished in/ {gsub(",", "", $4); print $4}')
            kill "$pid"; wait "$pid" 2>/dev/null || true
            sleep 0.3
            printf '%s\t%s\t%s\t%s\t%s\n' "$work_mode" "$layout" "$round" "$proxy" "$rps" | tee -a "$OUT"
        done
      done
    done
    kill "$(cat "$work/nginx.pid")"; sleep 0.5
done
python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nh2load -c50 -m16 through the proxy (HTTP/2 downstream, pooled HTTP/1.1 upstream): median requests/s")
for work in dict.fromkeys(r["work"] for r in rows):
    for layout in dict.fromkeys(r["layout"] for r in rows):
        rps = lambda p: statistics.median(float(r["requests_per_s"]) for r in rows
                                          if (r["work"], r["layout"], r["proxy"]) == (work, layout, p))
        a = rps("haproxy")
        for proxy in (p for p in dict.fromkeys(r["proxy"] for r in rows) if p != "haproxy"):
            h = rps(proxy)
            print(f"{work:<9} {layout:<7} {proxy:<18} {h:>9.0f}  haproxy {a:>9.0f}  ({h/a:.2f}x)")
PY
