#!/usr/bin/env bash
# All cores: keep-alive requests/s of hopline serve at 1 and 2 workers in both layouts
# (per-core: a single-threaded runtime and SO_REUSEPORT listener per worker; shared: one
# multi-threaded runtime) against nginx with 1 and 2 worker processes.
#
# 1-worker runs: server pinned to CPU 1, wrk -t1 on CPU 0 (as the other benchmarks).
# 2-worker runs: the machine has 2 cores, so the server may use both and wrk (-t2) runs on
# both too, competing with it; the figures compare servers under the same handicap, not the
# servers' ceilings. So the script also reports the server's CPU time per request (user +
# system, of all its processes, from /proc), which says how efficiently each layout uses the
# cores it gets. wrk -c100 -d10s, keep-alive; three interleaved rounds; medians.
#
# Usage: scripts/bench/workers.sh     (from the repo root; needs wrk and nginx)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18190}
OUT=${OUT:-target/bench/workers-$(date +%Y%m%d-%H%M%S).tsv}
for tool in wrk nginx taskset; do
    command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for n in 1 2; do
    mkdir -p "$work/nginx$n"
    cat > "$work/nginx$n/nginx.conf" <<NGINX
worker_processes $n;
daemon off;
error_log $work/nginx$n/error.log warn;
pid $work/nginx$n/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$PORT reuseport; location / { return 200 "Hello, world!"; } }
}
NGINX
done

start() { # name workers -> starts the server
    local cpus=1
    [ "$2" = 2 ] && cpus=0-1
    case $1 in
        hopline-per-core) taskset -c $cpus target/release/hopline serve --listen "127.0.0.1:$PORT" --workers "$2" --layout per-core --log warn & ;;
        hopline-shared) taskset -c $cpus target/release/hopline serve --listen "127.0.0.1:$PORT" --workers "$2" --layout shared --log warn & ;;
        nginx) taskset -c $cpus nginx -c "$work/nginx$2/nginx.conf" -p "$work/nginx$2" & ;;
    esac
    pid=$!
    wait_ready "http://127.0.0.1:$PORT/"
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; sleep 1; }

# CPU ticks (user + system) of the server: the process and, for nginx, its workers.
cpu_ticks() {
    local total=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
        read -r -a f < "/proc/$p/stat"
        total=$((total + f[13] + f[14]))
    done
    echo $total
}

printf 'round\tserver\tworkers\trequests_per_s\tcpu_us_per_request\n' > "$OUT"
for round in $(seq "$ROUNDS"); do
    for workers in 1 2; do
        for server in hopline-per-core hopline-shared nginx; do
            # one worker: both hopline layouts are the same single-threaded server
            [ "$workers" = 1 ] && [ "$server" = hopline-shared ] && continue
            start "$server" "$workers"
            before=$(cpu_ticks)
            if [ "$workers" = 1 ]; then
                out=$(taskset -c 0 wrk -t1 -c100 -d"$DURATION" "http://127.0.0.1:$PORT/")
            else
                out=$(taskset -c 0-1 wrk -t2 -c100 -d"$DURATION" "http://127.0.0.1:$PORT/")
            fi
            after=$(cpu_ticks)
            rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
            total=$(awk '/requests in/ {print $1}' <<<"$out")
            cpu=$(python3 -c "print(round(($after - $before) / $(getconf CLK_TCK) * 1e6 / $total, 2))")
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$workers" "$rps" "$cpu" | tee -a "$OUT"
            stop
        done
    done
done
python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def med(server, workers, field='requests_per_s'):
    v = [float(r[field]) for r in rows if r['server'] == server and r['workers'] == workers]
    return statistics.median(v) if v else float('nan')
print(f"\nmedians ({sys.argv[1]})")
for w in ('1', '2'):
    n = med('nginx', w)
    for s in ('hopline-per-core', 'hopline-shared', 'nginx'):
        m = med(s, w)
        if m == m:
            cpu = med(s, w, 'cpu_us_per_request')
            print(f"{w} worker(s)  {s:<18} {m:>10.0f} req/s ({m / n:.2f}x nginx)  {cpu:.2f} us CPU/request")
PY
