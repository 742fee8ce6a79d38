#!/usr/bin/env bash
# The PROXY protocol with HAProxy, both ways, the client's address checked end to end (each
# client connects from a loopback address of its own, which only a PROXY header carries
# past the hop in the middle):
#   in front:  curl (127.0.0.5) -> HAProxy (mode tcp, send-proxy-v2 / send-proxy)
#              -> hopline proxy --proxy-protocol -> hopline serve /echo:
#              the origin sees X-Forwarded-For: 127.0.0.5, and the access log names it;
#   behind:    curl (127.0.0.6) -> hopline proxy --upstream-proxy-protocol v2 / v1
#              -> HAProxy (accept-proxy, mode http, option forwardfor) -> hopline serve /echo:
#              HAProxy's X-Forwarded-For is 127.0.0.6.
# Usage: scripts/interop/proxy_protocol.sh [path/to/hopline]   (run from the repo root)
set -euo pipefail
bin=${1:-target/release/hopline}
. "$(dirname "$0")/../lib.sh"
base=$(free_ports 9)
origin=127.0.0.1:$base
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; cat "$f" >&2; done; exit 1; }
pass() { echo "ok: $*"; }

"$bin" serve --listen "$origin" --workers 1 --log warn & pids+=($!)

# In front of hopline: HAProxy relays TCP and says whose connection it is.
for version in v2 v1; do
    front=127.0.0.1:$((base + 1))
    hop=127.0.0.1:$((base + 2))
    [ "$version" = v1 ] && { front=127.0.0.1:$((base + 3)); hop=127.0.0.1:$((base + 4)); }
    send=send-proxy-v2; [ "$version" = v1 ] && send=send-proxy
    cat > "$work/front-$version.cfg" <<CFG
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind $front
    default_backend hopline
backend hopline
    server hop $hop $send
CFG
    "$bin" proxy --listen "$hop" --upstream "http://$origin" --workers 1 --log warn \
        --proxy-protocol --proxy-protocol-from 127.0.0.1/32 --access-log combined \
        > "$work/access-$version.log" 2> "$work/hop-$version.log" & pids+=($!)
    haproxy -f "$work/front-$version.cfg" -db > "$work/haproxy-front-$version.log" 2>&1 & pids+=($!)
    # Through HAProxy only: hopline closes a connection from 127.0.0.1 that has no header.
    wait_ready "http://$front/"
    out=$(curl -s -o /dev/null -w '%{http_code}' "http://$hop/" || true)
    [ "$out" = 000 ] || fail "$version in front: a trusted peer without a header was answered ($out)"
    out=$(curl -s --interface 127.0.0.5 "http://$front/echo" -d probe || true)
    grep -qi "^x-forwarded-for: 127.0.0.5" <<<"$out" || fail "$version in front: the origin did not learn the client: $out"
    grep -q "^127.0.0.5 - - \[" "$work/access-$version.log" || fail "$version in front: the access log does not name the client"
    pass "HAProxy $send -> hopline --proxy-protocol: the origin sees X-Forwarded-For 127.0.0.5, the access log too; a trusted peer without a header is closed"
done

# Behind hopline: HAProxy takes the header hopline sends and forwards the client's address.
for version in v2 v1; do
    edge=127.0.0.1:$((base + 5)); back=127.0.0.1:$((base + 6))
    [ "$version" = v1 ] && { edge=127.0.0.1:$((base + 7)); back=127.0.0.1:$((base + 8)); }
    cat > "$work/back-$version.cfg" <<CFG
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option forwardfor
frontend back
    bind $back accept-proxy
    default_backend origin
backend origin
    server origin $origin
CFG
    haproxy -f "$work/back-$version.cfg" -db > "$work/haproxy-back-$version.log" 2>&1 & pids+=($!)
    "$bin" proxy --listen "$edge" --upstream "http://$back" --workers 1 --log warn \
        --upstream-proxy-protocol "$version" 2> "$work/edge-$version.log" & pids+=($!)
    wait_ready "http://$edge/"
    # HAProxy listens once it answers through hopline (a 502 until then).
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$edge/")" = 200 ] && break
        sleep 0.05
    done
    out=$(curl -s --interface 127.0.0.6 "http://$edge/echo" -d probe || true)
    # hopline adds its own X-Forwarded-For (127.0.0.6) and HAProxy appends what the PROXY
    # header told it: the client both times, never hopline's own 127.0.0.1.
    xff=$(grep -i "^x-forwarded-for:" <<<"$out" | tr -d '\r' | cut -d' ' -f2- | tr '\n' ',' || true)
    [ "$xff" = "127.0.0.6,127.0.0.6," ] || fail "$version behind: X-Forwarded-For at the origin is '$xff': $out"
    pass "hopline --upstream-proxy-protocol $version -> HAProxy accept-proxy: HAProxy forwards the client 127.0.0.6"
done
