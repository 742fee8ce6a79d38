#!/usr/bin/env bash
# Operating hopline from the outside: a proxy started from a config file with the admin
# endpoint and a JSON access log; /metrics parsed by the Prometheus client library's own
# parser (python3-prometheus-client) with exact counts; SIGHUP reloads the file (a changed
# keep-alive timeout shows in the advertised Keep-Alive header of new connections); an
# invalid file is refused on reload and the proxy serves on; `hopline top --once`.
# Usage: scripts/interop/operating.sh [path/to/hopline]   (run from the repo root)
set -euo pipefail
bin=${1:-target/release/hopline}
PY=${PY:-/usr/bin/python3}
"$PY" -c "import prometheus_client.parser" 2>/dev/null || { echo "needs python3-prometheus-client (apt-get install python3-prometheus-client)" >&2; exit 1; }
work=$(mktemp -d)
. "$(dirname "$0")/../lib.sh"
base=$(free_ports 3)
origin=127.0.0.1:$base
proxy=127.0.0.1:$((base + 1))
admin=127.0.0.1:$((base + 2))
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; echo "--- proxy log:" >&2; cat "$work/proxy.err" >&2 || true; exit 1; }

write_config() {
    cat > "$work/hopline.toml" <<TOML
listen = "$proxy"
workers = 1
admin = "$admin"
access_log = "json"

[downstream]
keepalive_timeout = "$1"
advertise_keepalive = true

[proxy]
name = "ops-test"

[[proxy.group]]
name = "origin"
servers = ["http://$origin"]
TOML
}

"$bin" serve --listen "$origin" --workers 1 --log warn & pids+=($!)
write_config 30s
"$bin" check-config "$work/hopline.toml" >/dev/null || fail "check-config"
"$bin" proxy --config "$work/hopline.toml" > "$work/access.log" 2> "$work/proxy.err" & pids+=($!)
proxy_pid=$!
wait_ready "http://$proxy/"

# With the readiness probe above: eleven requests over four connections (1 + 4 + 3 + 3),
# one of them a 404.
curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null "http://$proxy/" "http://$proxy/bytes/10" "http://$proxy/bytes/20" "http://$proxy/nope"
curl -s -o /dev/null -o /dev/null -o /dev/null "http://$proxy/" "http://$proxy/" "http://$proxy/"
curl -s -o /dev/null -o /dev/null -o /dev/null "http://$proxy/" "http://$proxy/" "http://$proxy/"
# curl's connections close; wait (bounded) until the proxy has noticed all four.
for _ in $(seq 100); do
    curl -s "http://$admin/metrics" | grep -q 'reason="client_closed"} 4' && break
    sleep 0.05
done

curl -s "http://$admin/metrics" > "$work/metrics.txt"
"$PY" - "$work/metrics.txt" <<'PY' || fail "metrics"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
families = {f.name: f for f in text_string_to_metric_families(text)}
def value(family, **labels):
    for s in families[family].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name.endswith(("_total", family)):
            return s.value
    return 0.0
checks = [
    (value("hopline_connections_opened", side="downstream"), 4),
    (value("hopline_connections_closed", side="downstream", reason="client_closed"), 4),
    (value("hopline_responses", **{"class": "2xx"}), 10),
    (value("hopline_responses", **{"class": "4xx"}), 1),
    (value("hopline_connections_opened", side="upstream"), 1),
    (value("hopline_upstream_checkouts", upstream="origin", result="reused"), 10),
    (value("hopline_upstream_checkouts", upstream="origin", result="new"), 1),
    (value("hopline_connections_idle", side="upstream"), 1),
]
for got, want in checks:
    assert got == want, (got, want, checks)
def count(family, **labels):
    return sum(s.value for s in families[family].samples
               if s.name == family + "_count" and all(s.labels.get(k) == v for k, v in labels.items()))
assert count("hopline_request_duration_seconds") == 11
assert count("hopline_request_duration_seconds", upstream="origin", **{"class": "2xx"}) == 10
assert count("hopline_request_duration_seconds", upstream="origin", **{"class": "4xx"}) == 1
assert count("hopline_upstream_header_duration_seconds", upstream="origin") == 11
up = [s for s in families["hopline_upstream_server_up"].samples if s.labels["upstream"] == "origin"]
assert [s.value for s in up] == [1], up
assert [s.labels["version"] for s in families["hopline_build_info"].samples], "build info"
for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"):
    assert families[name].samples[0].value > 0, name
print("ok: /metrics parsed by prometheus_client:", len(families), "families, exact counts; durations by class and upstream group, upstream header time, servers up, build and process")
PY

lines=$(wc -l < "$work/access.log")
[ "$lines" = 11 ] || fail "expected 11 access log lines, got $lines"
"$PY" - "$work/access.log" <<'PY' || fail "access log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["req"] for l in lines[:5]] == [1, 1, 2, 3, 4], lines[:5]
assert {l["status"] for l in lines} == {200, 404}
assert all(l["upstream_conn"] == 1 for l in lines)
assert [l["upstream_reused"] for l in lines].count(False) == 1
print("ok: 11 JSON access log lines with connection and request numbers, upstream connection and reuse")
PY

grep -qi "keep-alive: timeout=30" <(curl -si "http://$proxy/") || fail "Keep-Alive timeout=30 before reload"
write_config 5s
kill -HUP "$proxy_pid"
for _ in $(seq 50); do grep -q "configuration reloaded" "$work/proxy.err" && break; sleep 0.1; done
grep -q "configuration reloaded" "$work/proxy.err" || fail "no reload logged"
grep -q 'SIGHUP: \[downstream\] keepalive_timeout: "30s" -> "5s"' "$work/proxy.err" || fail "the reload did not say what changed: $(grep SIGHUP "$work/proxy.err")"
grep -qi "keep-alive: timeout=5" <(curl -si "http://$proxy/") || fail "Keep-Alive timeout=5 after reload"
echo "ok: SIGHUP reloaded the file: it logged what changed, and new connections advertise the new keep-alive timeout"

echo 'listen = "nonsense"' > "$work/hopline.toml"
kill -HUP "$proxy_pid"
for _ in $(seq 50); do grep -q "not reloaded" "$work/proxy.err" && break; sleep 0.1; done
grep -q "hopline.toml:1: listen: " "$work/proxy.err" || fail "invalid file not reported with line and key"
grep -qi "keep-alive: timeout=5" <(curl -si "http://$proxy/") || fail "still serving after an invalid reload"
echo "ok: an invalid file is refused on SIGHUP (file:line:key logged) and the proxy serves on"

"$bin" top "$admin" --once > "$work/top.txt" || fail "top"
grep -q "^upstream .* idle" "$work/top.txt" || fail "top: $(cat "$work/top.txt")"
echo "ok: hopline top shows the pooled upstream connection"
