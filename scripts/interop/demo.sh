#!/usr/bin/env bash
# hopline demo from the binary: a short run on the embedded origin (table, report, JSON), and
# an external page served by nginx (static files) loaded across the emulated link.
# Usage: scripts/interop/demo.sh [path/to/hopline]   (run from the repo root; needs nginx)
set -euo pipefail
bin=${1:-target/release/hopline}
work=$(mktemp -d)
. "$(dirname "$0")/../lib.sh"
port=$(free_ports 1)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin" demo --rtt 0,10 --resources 8 --report "$work/report.html" --json "$work/demo.json" > "$work/table.txt"
grep -q "pipelined-x1" "$work/table.txt" || fail "no table: $(cat "$work/table.txt")"
grep -q 'data-chart="waterfall" data-mode="proxy-short-lived" data-rtt="10"' "$work/report.html" || fail "report lacks a waterfall"
python3 - "$work/demo.json" <<'PY' || fail "demo.json"
import json, sys
report = json.load(open(sys.argv[1]))
runs = report["runs"]
assert len(runs) == 30, len(runs)  # 15 modes x 2 RTTs
for run in runs:
    assert run["requests"] == 9, run
serial = [r for r in runs if r["mode"] == "http1.0-serial"][0]
assert serial["connections"] == 9 and serial["handshakes"] == 9, serial
full = [r for r in runs if r["mode"] == "tls-short-lived-x6"][-1]
assert full["tls_handshakes"] == full["connections"] == 9 and full["tls_resumed"] == 0, full
persistent = [r for r in runs if r["mode"] == "tls-persistent-x6"][-1]
assert persistent["tls_handshakes"] == persistent["connections"] <= 6, persistent
h2 = [r for r in runs if r["mode"] == "h2-x1"][-1]
assert h2["connections"] == 1, h2
# The first resource 300 ms slow: pipelining waits for it, HTTP/2 does not (at 10 ms, the
# rest of the page is done long before it either way, so both end with it; the stall shows
# in when the other responses ended).
for mode in ("hol-pipelined-x1", "hol-h2-x1"):
    run = [r for r in runs if r["mode"] == mode][-1]
    slow = [t for t in run["timeline"] if "delay=" in t["path"]][0]
    others = max(t["end_ms"] for t in run["timeline"][1:] if "delay=" not in t["path"])
    if mode == "hol-pipelined-x1":
        assert others >= slow["end_ms"], (mode, others, slow)
    else:
        assert others + 250 < slow["end_ms"], (mode, others, slow)
PY
grep -q 'data-handshake="TLS"' "$work/report.html" || fail "the report draws no TLS handshake"
echo "ok: hopline demo: 15 modes (5 over TLS, 2 head-of-line) x 2 RTTs, table, report and JSON"
# The report as a reader sees it: rendered by headless Chromium, the screenshots checked.
/usr/bin/python3 "$(dirname "$0")/report_in_browser.py" "$work/report.html" "$work" || fail "the report in a browser"

mkdir -p "$work/site" "$work/nginx"
chmod 755 "$work" "$work/site"  # nginx workers drop root
for i in 1 2 3; do head -c $((i * 20000)) /dev/zero | tr '\0' 'x' > "$work/site/asset$i.js"; done
cat > "$work/site/index.html" <<HTML
<!DOCTYPE html><html><head><link rel="stylesheet" href="/asset1.js"></head>
<body><script src="/asset2.js"></script><img src="/asset3.js" alt=""></body></html>
HTML
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server { listen 127.0.0.1:$port; root $work/site; }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pid=$!
wait_ready "http://127.0.0.1:$port/"
"$bin" demo --url "http://127.0.0.1:$port/index.html" --rtt 10 --modes persistent-x1,pipelined-x1,proxy-pooled \
    --report "$work/external.html" --json "$work/external.json" > "$work/external.txt"
code=0
"$bin" demo --url "http://127.0.0.1:$port/index.html" --rtt 10 --modes tls-persistent-x6 \
    --report "$work/x.html" >/dev/null 2>"$work/tls-external.err" || code=$?
[ "$code" != 0 ] && grep -q "embedded origin" "$work/tls-external.err" || fail "a TLS mode with --url must be refused"
python3 - "$work/external.json" <<'PY' || fail "external demo: $(cat "$work/external.txt")"
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
assert [r["mode"] for r in runs] == ["persistent-x1", "pipelined-x1", "proxy-pooled"], runs
for run in runs:
    assert run["requests"] == 4, run
    assert run["body_bytes"] > 120000, run
    assert run["load_ms"] >= 10 * 4, run   # at least one round trip per request on one connection
assert runs[0]["connections"] == 1 and runs[1]["connections"] == 1
PY
echo "ok: hopline demo --url: an nginx page (document + 3 resources) across the emulated link"
