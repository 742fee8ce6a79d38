#!/usr/bin/env bash
# hopline proxy with real peers: curl through a forward proxy (absolute-form with -x, a
# CONNECT tunnel with -p -x), curl and ab through a reverse proxy (keep-alive reused on both
# hops), and the hop-by-hop rules seen from the origin.
# Usage: scripts/interop/proxy.sh [path/to/hopline]   (run from the repo root)
set -euo pipefail
bin=${1:-target/release/hopline}
. "$(dirname "$0")/../lib.sh"
base=$(free_ports 3)
origin=127.0.0.1:$base
reverse=127.0.0.1:$((base + 1))
forward=127.0.0.1:$((base + 2))
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$bin" serve --listen "$origin" --workers 1 --log warn & pids+=($!)
"$bin" proxy --listen "$reverse" --upstream "http://$origin" --name edge --workers 1 --log warn & pids+=($!)
"$bin" proxy --forward --listen "$forward" --connect-port "$base" --name fwd --workers 1 --log warn & pids+=($!)
for addr in "$origin" "$reverse"; do
    wait_ready "http://$addr/"
done

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

out=$(curl -sv -x "http://$forward" "http://$origin/bytes/5" 2>&1)
grep -q "> GET http://$origin/bytes/5 HTTP/1.1" <<<"$out" || fail "curl -x did not send absolute-form: $out"
grep -q "^abcde" <<<"$out" || fail "curl -x body: $out"
grep -qi "< via: 1.1 fwd" <<<"$out" || fail "curl -x: no Via: $out"
pass "curl -x: absolute-form through the forward proxy, Via added"

out=$(curl -sv -p -x "http://$forward" "http://$origin/bytes/7" 2>&1)
grep -q "> CONNECT $origin HTTP/1.1" <<<"$out" || fail "curl -p -x did not CONNECT: $out"
grep -q "< HTTP/1.1 200" <<<"$out" || fail "CONNECT not established: $out"
grep -q "^abcdefg" <<<"$out" || fail "tunneled body: $out"
pass "curl -p -x: CONNECT tunnel through the forward proxy"

out=$(curl -s -o /dev/null -w '%{http_connect}' -p -x "http://$forward" "http://127.0.0.1:22/" 2>&1 || true)
grep -q "403" <<<"$out" || fail "CONNECT to a port not allowed should be 403: $out"
pass "CONNECT to a port not allowed: 403"

out=$(curl -sv -H 'Connection: X-Drop' -H 'X-Drop: secret' -H 'Keep-Alive: 300' "http://$reverse/echo" "http://$reverse/echo" 2>&1)
grep -q "Re-using existing connection" <<<"$out" || fail "the client connection to the proxy was not reused: $out"
grep -qi "x-drop" <<<"$(grep -v '^>' <<<"$out")" && fail "a field named in Connection reached the origin: $out"
grep -q "via: 1.1 edge" <<<"$out" || fail "the origin did not see Via: $out"
grep -q "x-connection-requests: 2" <<<"$out" || fail "the proxy's upstream connection was not reused: $out"
pass "curl through the reverse proxy: client and upstream connections both reused; Connection-named field stripped"

out=$(ab -k -n 2000 -c 10 "http://$reverse/" 2>&1)
grep -q "Failed requests:        0" <<<"$out" || fail "ab through the proxy: $out"
grep -q "Keep-Alive requests:    2000" <<<"$out" || fail "ab keep-alive through the proxy: $out"
pass "ab -k through the reverse proxy: 2000 requests, all keep-alive, none failed"
