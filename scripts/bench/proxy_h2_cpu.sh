#!/usr/bin/env bash
# Where a proxied request's CPU goes: user and system time per request of each proxy, read
# from /proc/PID/stat around a fixed number of requests. The same set-up as proxy_h2.sh
# (HTTP/2 clients, h2load -c50 -m16 on CPU 0; the proxy alone on CPU 1; an nginx origin on
# CPU 0; HAProxy 2.6 with 1 thread, `http-reuse safe`), each proxy with its default header
# work. A proxy that takes less system time per request makes fewer or cheaper system calls;
# less user time, less work of its own. Three interleaved rounds; medians. Nothing is
# asserted.
#
# Usage: scripts/bench/proxy_h2_cpu.sh     (from the repo root; needs h2load, nginx, haproxy)
#   REQUESTS=300000 ROUNDS=3 PROXIES="hopline hopline-pipelined haproxy" scripts/bench/proxy_h2_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
REQUESTS=${REQUESTS:-300000}
ROUNDS=${ROUNDS:-3}
PROXIES=${PROXIES:-hopline hopline-pipelined haproxy}
base=$(free_ports 2)
ORIGIN=${ORIGIN:-$base}
PROXY=${PROXY:-$((base + 1))}
for tool in h2load nginx haproxy taskset python3; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install nghttp2-client nginx-light haproxy)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
nginx_hello_conf "$work" "$ORIGIN"
haproxy_h2_conf "$PROXY" "$ORIGIN" > "$work/haproxy.cfg"

# `cpu PID`: the process's user and system time so far, in clock ticks.
cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }

taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" &
wait_ready "http://127.0.0.1:$ORIGIN/"
tick=$(getconf CLK_TCK)
rows="$work/rows.tsv"
for round in $(seq "$ROUNDS"); do
    for proxy in $PROXIES; do
        start_h2_proxy "$proxy" "$PROXY" "$ORIGIN" "$work/haproxy.cfg"
        pid=$!
        h2c_ready "$PROXY"
        # Warm: the upstream pool filled, the allocator grown.
        taskset -c 0 h2load -n 20000 -c50 -m16 "http://127.0.0.1:$PROXY/" >/dev/null
        read -r user0 sys0 < <(cpu "$pid")
        out=$(taskset -c 0 h2load -n "$REQUESTS" -c50 -m16 "http://127.0.0.1:$PROXY/")
        read -r user1 sys1 < <(cpu "$pid")
        done=$(echo "$out" | awk '/^requests:/ {print $8}')
        rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
        kill "$pid"; wait "$pid" 2>/dev/null || true
        sleep 0.3
        python3 - "$round" "$proxy" "$rps" "$done" "$((user1 - user0))" "$((sys1 - sys0))" "$tick" <<'PY' | tee -a "$rows"
import sys
round_, proxy, rps, done, user, sys_, tick = sys.argv[1:]
per = lambda ticks: int(ticks) / int(tick) * 1e6 / int(done)
print(f"{round_}\t{proxy}\t{float(rps):.0f}\t{per(user):.2f}\t{per(sys_):.2f}")
PY
    done
done
python3 - "$rows" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().split("\n") if line]
print("\nCPU per request, the proxy alone on CPU 1 (medians): user, system, total microseconds")
for proxy in dict.fromkeys(r[1] for r in rows):
    mine = [r for r in rows if r[1] == proxy]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"{proxy:<18} user {med(3):6.2f}  system {med(4):6.2f}  total {med(3) + med(4):6.2f}  ({med(2):.0f} requests/s)")
PY
