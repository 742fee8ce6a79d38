#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), JOBS at a time (default 2), on the
# seeded corpus (fuzz/seed.sh), and prints executions, coverage and findings per target.
# Usage: fuzz/run.sh [SECONDS]      (needs cargo-fuzz; the stable toolchain is used with
# RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo-fuzz passes)
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
jobs=${JOBS:-2}
targets=(request_head response_head chunked server_conn h2_server_conn client_conn proxy_header)
export RUSTC_BOOTSTRAP=1
[ -d corpus ] || ./seed.sh
cargo fuzz build -O >/dev/null
mkdir -p logs
run() {
    cargo fuzz run -O "$1" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        > "logs/$1.log" 2>&1 || true
}
running=0
for target in "${targets[@]}"; do
    run "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
status=0
printf '%-14s %12s %8s %8s %s\n' target executions seconds coverage result
for target in "${targets[@]}"; do
    log="logs/$target.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    took=$(grep -o 'Done [0-9]* runs in [0-9]*' "$log" | awk '{print $5}' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    if grep -q 'SUMMARY\|panicked\|deadly signal' "$log"; then
        result="FINDING: $(grep -o 'artifacts/[^ ]*' "$log" | head -1)"
        status=1
    else
        result=clean
    fi
    printf '%-14s %12s %8s %8s %s\n' "$target" "$execs" "$took" "$cov" "$result"
done
exit $status
