#!/usr/bin/env bash
# slowhttptest against hopline serve and hopline proxy, and against serve over TLS: slow
# headers (Slowloris), slow body (R-U-Dead-Yet) and slow read, 500 connections each. The probe connection must find the
# service available throughout (slowhttptest's CSV: its last column is 0 when a probe got
# no answer within 3 s).
# Usage: scripts/interop/slowhttptest.sh [path/to/hopline]   (needs slowhttptest)
set -euo pipefail
bin=${1:-target/release/hopline}
command -v slowhttptest >/dev/null || { echo "needs slowhttptest (apt-get install slowhttptest)" >&2; exit 1; }
work=$(mktemp -d)
. "$(dirname "$0")/../lib.sh"
base=$(free_ports 3)
origin=127.0.0.1:$base
proxy=127.0.0.1:$((base + 1))
secure=127.0.0.1:$((base + 2))
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
timeouts=(--header-timeout 5s --body-timeout 5s --write-timeout 5s --workers 1 --log error)
"$bin" serve --listen "$origin" "${timeouts[@]}" & pids+=($!)
serve_pid=$!
"$bin" proxy --listen "$proxy" --upstream "http://$origin" "${timeouts[@]}" & pids+=($!)
proxy_pid=$!
make_pki "$work"
"$bin" serve --listen "$secure" --tls-cert "$work/site.pem" --tls-key "$work/site.key" \
    "${timeouts[@]}" & pids+=($!)
secure_pid=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for addr in "$origin" "$proxy"; do
    wait_ready "http://$addr/"
done
wait_ready_tls "https://localhost:$((base + 2))/" "$work/ca.pem"

attack() { # name url mode-flags...
    local name=$1 url=$2
    shift 2
    slowhttptest "$@" -c 500 -r 250 -l 20 -p 3 -g -o "$work/$name" -u "$url" \
        > "$work/$name.out" 2>&1 &
    local attacker=$!
    sleep 8   # all 500 connections are open by then
    local during="serve $(rss "$serve_pid") KiB, proxy $(rss "$proxy_pid") KiB, TLS serve $(rss "$secure_pid") KiB"
    wait "$attacker" || true
    [ -s "$work/$name.csv" ] || { echo "FAIL: $name: no report"; cat "$work/$name.out"; exit 1; }
    python3 - "$work/$name.csv" "$name" "$during" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))[1:]
down = [r[0] for r in rows if int(r[-1]) == 0]
peak = max(int(r[3]) for r in rows)
if down:
    print(f"FAIL: {sys.argv[2]}: service unavailable at second(s) {', '.join(down)}")
    sys.exit(1)
print(f"ok: {sys.argv[2]}: service available throughout ({len(rows)} samples, up to {peak} slow connections open; RSS during: {sys.argv[3]})")
PY
}

for target in serve proxy tls-serve; do
    case $target in
        serve) url=http://$origin ;;
        proxy) url=http://$proxy ;;
        tls-serve) url=https://$secure ;;
    esac
    attack "slow-headers-$target" "$url/" -H -i 2
    attack "slow-body-$target" "$url/sink" -B -i 2 -s 100000 -t POST
    attack "slow-read-$target" "$url/bytes/1000000" -X -w 512 -y 1024 -n 5 -z 32 -k 2
done
echo "resident memory afterwards: serve $(rss "$serve_pid") KiB, proxy $(rss "$proxy_pid") KiB, TLS serve $(rss "$secure_pid") KiB"
