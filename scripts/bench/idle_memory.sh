#!/usr/bin/env bash
# Server memory per idle keep-alive connection: open N connections (default 10,000), one
# request each, hold them idle, and report the server's RSS growth per connection, for
# hopline serve, nginx (1 worker) and the minimal hyper server. With TLS=1, over TLS
# (hopline and nginx, an ECDSA P-256 certificate made for the run; the TLS handshake's
# session state and record buffers are part of what an idle connection keeps). With H2=1,
# over HTTP/2 with prior knowledge (h2c: nginx `listen ... http2`, hyper's HTTP/2 server):
# an idle HTTP/2 connection also keeps its HPACK tables and stream state. Three
# interleaved rounds, medians. Also the server's wakeups per second while the connections
# sit idle (context switches of all its threads over WAKE_SECONDS, default 5).
# hopline runs with --keepalive-timeout-min equal to its keep-alive timeout: at 19,000 of
# 20,000 connections, pressure would otherwise shrink the idle timeout to its floor and close
# the connections being measured. Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/idle_memory.sh     (from the repo root; needs nginx and python3)
#   CONNECTIONS=10000 ROUNDS=3 TLS=1 scripts/bench/idle_memory.sh
#   CONNECTIONS=10000 ROUNDS=3 H2=1 scripts/bench/idle_memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
CONNECTIONS=${CONNECTIONS:-10000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18190}
TLS=${TLS:-0}
H2=${H2:-0}
WAKE_SECONDS=${WAKE_SECONDS:-5}
export H2
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
cargo build --release --quiet --example hyper_hello
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
servers="hopline nginx hyper" scheme=http listen_tls= hopline_tls=() client_tls=() curl_tls=()
make_pki "$work" # nginx's configuration names the certificate either way
hyper_h2=
if [ "$H2" = 1 ]; then
    [ "$TLS" = 1 ] && { echo "H2=1 measures h2c; TLS=1 with it is not supported" >&2; exit 1; }
    listen_tls=http2 hyper_h2=h2 curl_tls=(--http2-prior-knowledge)
fi
if [ "$TLS" = 1 ]; then
    servers="hopline nginx" scheme=https listen_tls=ssl
    hopline_tls=(--tls-cert "$work/site.pem" --tls-key "$work/site.key")
    client_tls=("$work/ca.pem") curl_tls=(--cacert "$work/ca.pem")
fi
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
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:$PORT $listen_tls;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        location / { return 200 "Hello, world!"; }
    }
}
NGINX

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }

measure() { # server -> KiB per connection
    local pid measured
    case $1 in
        hopline) taskset -c 1 target/release/hopline serve --listen "127.0.0.1:$PORT" --workers 1 --log warn --max-connections 20000 --keepalive-timeout 300s --keepalive-timeout-min 300s "${hopline_tls[@]}" & pid=$! ;;
        nginx) taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" & pid=$! ;;
        hyper) taskset -c 1 target/release/examples/hyper_hello "127.0.0.1:$PORT" $hyper_h2 2>/dev/null & pid=$! ;;
    esac
    if [ "$TLS" = 1 ]; then
        wait_ready_tls "https://localhost:$PORT/" "$work/ca.pem"
    else
        for _ in $(seq 100); do curl -s -o /dev/null "${curl_tls[@]}" "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
    fi
    measured=$pid
    [ "$1" = nginx ] && measured=$(pgrep -P "$pid" | head -1)
    # warm up: a few connections' worth of buffers and allocator arenas
    for _ in $(seq 20); do curl -s -o /dev/null "${curl_tls[@]}" "$scheme://localhost:$PORT/"; done
    local before after
    before=$(rss_kib "$measured")
    coproc CLIENT { taskset -c 0 python3 scripts/bench/idle_clients.py 127.0.0.1 "$PORT" "$CONNECTIONS" "${client_tls[@]}"; }
    read -r ready count <&"${CLIENT[0]}"
    sleep 1
    after=$(rss_kib "$measured")
    # Wakeups while idle: context switches of all the server's threads over WAKE_SECONDS.
    local w0 w1
    w0=$(switches "$measured")
    sleep "$WAKE_SECONDS"
    w1=$(switches "$measured")
    echo >&"${CLIENT[1]}"
    wait "$CLIENT_PID" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c "print(f'{($after - $before) / $count:.3f}\t{($w1 - $w0) / $WAKE_SECONDS:.1f}')"
    echo "    $1: RSS $before KiB -> $after KiB with $count idle connections" >&2
}

printf 'round\tserver\tkib_per_connection\twakeups_per_second\n' > "$work/results.tsv"
for round in $(seq "$ROUNDS"); do
    for server in $servers; do
        kib=$(measure $server)
        printf '%s\t%s\t%s\n' "$round" "$server" "$kib" | tee -a "$work/results.tsv"
        sleep 1
    done
done
python3 - "$work/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
print("\nmedian RSS growth per idle keep-alive connection, and wakeups per second while idle")
for s in dict.fromkeys(r['server'] for r in rows):
    vals = [float(r['kib_per_connection']) for r in rows if r['server'] == s]
    wakes = [float(r['wakeups_per_second']) for r in rows if r['server'] == s]
    print(f"{s:<8} {statistics.median(vals):6.2f} KiB  {statistics.median(wakes):6.1f} wakeups/s")
PY
