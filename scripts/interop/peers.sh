#!/usr/bin/env bash
# Interop with real HTTP/1.x peers against `hopline serve`: curl (connection reuse,
# HTTP/1.0, pipelining-free keep-alive, uploads) and ApacheBench (`ab -k`).
# Usage: scripts/interop/peers.sh [path/to/hopline]   (run from the repo root)
set -euo pipefail

bin=${1:-target/release/hopline}
. "$(dirname "$0")/../lib.sh"
port=$(free_ports 1)
base="http://127.0.0.1:$port"
log=$(mktemp)
"$bin" serve --listen "127.0.0.1:$port" --workers 2 --log warn 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
wait_ready "$base/"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# curl: two URLs in one invocation reuse one connection.
out=$(curl -sv "$base/" "$base/bytes/10" 2>&1)
grep -q "Re-using existing connection" <<<"$out" || fail "curl did not reuse the connection: $out"
grep -q "abcdefghij" <<<"$out" || fail "curl /bytes/10 body"
pass "curl reuses one connection for two requests"

# curl --http1.0: the server closes after the response.
out=$(curl -sv --http1.0 "$base/" 2>&1)
grep -q "< HTTP/1.1 200 OK" <<<"$out" || fail "curl --http1.0 status: $out"
grep -qi "< connection: close" <<<"$out" || fail "HTTP/1.0 response should close: $out"
grep -q "Hello, world!" <<<"$out" || fail "curl --http1.0 body"
pass "curl --http1.0 gets a closing response"

# curl --http1.0 with keep-alive asked for: the connection persists.
out=$(curl -sv --http1.0 -H 'Connection: keep-alive' "$base/" "$base/" 2>&1)
grep -qi "< connection: keep-alive" <<<"$out" || fail "HTTP/1.0 keep-alive not acknowledged: $out"
grep -q "Re-using existing connection" <<<"$out" || fail "HTTP/1.0 keep-alive not reused: $out"
pass "curl --http1.0 with Connection: keep-alive reuses the connection"

# curl upload with Expect: 100-continue: a body within /echo's 1 MiB limit is invited
# with 100 Continue and echoed; a larger declared body is refused before it is sent.
head -c 500000 /dev/urandom > "$log.up"
out=$(curl -sv -H 'Expect: 100-continue' --data-binary @"$log.up" "$base/echo" -o "$log.down" 2>&1)
grep -q "< HTTP/1.1 100 Continue" <<<"$out" || fail "no 100 Continue: $out"
tail -c 500000 "$log.down" | cmp -s - "$log.up" || fail "echoed upload differs"
head -c 2000000 /dev/urandom > "$log.up"
out=$(curl -sv -H 'Expect: 100-continue' --data-binary @"$log.up" "$base/echo" -o /dev/null 2>&1)
grep -q "< HTTP/1.1 413" <<<"$out" || fail "2 MB echo should be 413: $out"
grep -q "100 Continue" <<<"$out" && fail "a refused body must not be invited with 100 Continue"
rm -f "$log.up" "$log.down"
pass "curl Expect: 100-continue (500 kB invited and echoed; 2 MB refused with 413 before upload)"

# curl chunked upload.
out=$(printf 'hello chunked' | curl -s -H 'Transfer-Encoding: chunked' --data-binary @- "$base/echo")
grep -q "hello chunked$" <<<"$out" || fail "chunked upload: $out"
pass "curl chunked upload"

# ab -k: every request on a kept-alive connection, none failed.
out=$(ab -k -n 2000 -c 10 "$base/" 2>&1)
grep -q "Failed requests:        0" <<<"$out" || fail "ab failures: $out"
grep -q "Keep-Alive requests:    2000" <<<"$out" || fail "ab keep-alive count: $out"
pass "ab -k: 2000 requests, all keep-alive, none failed"

# ab without -k (HTTP/1.0, one connection per request).
out=$(ab -n 500 -c 5 "$base/" 2>&1)
grep -q "Failed requests:        0" <<<"$out" || fail "ab (no -k) failures: $out"
grep -q "Complete requests:      500" <<<"$out" || fail "ab (no -k) count: $out"
pass "ab without -k: 500 short-lived requests, none failed"

kill -TERM $pid
wait $pid || fail "hopline serve did not exit cleanly on SIGTERM"
pass "SIGTERM shuts down cleanly"
