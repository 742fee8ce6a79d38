#!/usr/bin/env bash
# The server's own throughput, two builds side by side: `hopline serve` from BEFORE and from
# AFTER (two binaries), each pinned to CPU 1 with wrk pinned to CPU 0, keep-alive
# (wrk -t1 -c50) and pipelined (16 requests per write), three interleaved rounds; prints
# the medians and the median of the per-round ratios after/before. For checking that a
# change kept the engine's speed. Benchmarks are not tests: nothing is asserted.
#
# Usage: scripts/bench/before_after.sh BEFORE_BIN AFTER_BIN
#   (build BEFORE from an older commit with `git worktree add /tmp/before <commit>` and
#   `cargo build --release` there)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
before=$1 after=$2
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PORT=$(free_ports 1)
OUT=${OUT:-target/bench/before-after-$(date +%Y%m%d-%H%M%S).tsv}
mkdir -p "$(dirname "$OUT")"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

run_wrk() { # workload -> requests/s
    local args=(-t1 -c50 -d"$DURATION")
    [ "$1" = pipeline ] && args+=(-s scripts/bench/pipeline.lua)
    local out
    if [ "$1" = pipeline ]; then
        out=$(taskset -c 0 wrk "${args[@]}" "http://127.0.0.1:$PORT/" -- 16 /)
    else
        out=$(taskset -c 0 wrk "${args[@]}" "http://127.0.0.1:$PORT/")
    fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

printf 'round\tbuild\tworkload\trequests_per_s\n' > "$OUT"
for round in $(seq "$ROUNDS"); do
    for build in before after; do
        bin=$before
        [ $build = after ] && bin=$after
        taskset -c 1 "$bin" serve --listen "127.0.0.1:$PORT" --workers 1 --log warn &
        pid=$!
        wait_ready "http://127.0.0.1:$PORT/"
        for workload in keepalive pipeline; do
            printf '%s\t%s\t%s\t%s\n' "$round" $build $workload "$(run_wrk $workload)" | tee -a "$OUT"
        done
        kill $pid; wait $pid 2>/dev/null || true
        sleep 1
    done
done

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
print(f"\nmedian requests/s over {len(set(r['round'] for r in rows))} rounds ({sys.argv[1]})")
print(f"{'workload':<10} {'before':>10} {'after':>10} {'after/before':>13}   (median of per-round ratios)")
for w in ('keepalive', 'pipeline'):
    by = {(r['round'], r['build']): float(r['requests_per_s']) for r in rows if r['workload'] == w}
    rounds = sorted({k for k, _ in by})
    b = statistics.median(by[k, 'before'] for k in rounds)
    a = statistics.median(by[k, 'after'] for k in rounds)
    ratio = statistics.median(by[k, 'after'] / by[k, 'before'] for k in rounds)
    print(f"{w:<10} {b:>10.0f} {a:>10.0f} {a/b:>12.3f}x   ({ratio:.3f}x)")
PY
