#!/usr/bin/env bash
# HTTP/2 with real peers, each hop checked:
#   curl --http2-prior-knowledge (h2c) and --http2 (ALPN h2 over TLS) against serve, one
#   connection for several URLs; h2load -m (h2c and TLS) against serve;
#   hopline get --http2-prior-knowledge and bench --h2 --streams against serve;
#   nginx as an HTTP/2 origin over TLS behind `hopline proxy --upstream-protocol h2`
#   (nginx's log shows HTTP/2.0 and one connection), with curl speaking h2c to the proxy;
#   the proxy's HTTP/1.1 -> HTTP/2 and HTTP/2 -> HTTP/1.1 hops.
# Usage: scripts/interop/h2.sh [path/to/hopline]   (needs curl with HTTP/2, h2load, nginx, openssl)
set -euo pipefail
bin=${1:-target/release/hopline}
. "$(dirname "$0")/../lib.sh"
work=$(mktemp -d)
base=$(free_ports 5)
serve=127.0.0.1:$base tls_port=$((base + 1)) nginx_h2=$((base + 2))
proxy=127.0.0.1:$((base + 3)) proxy_h1=127.0.0.1:$((base + 4))
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

make_pki "$work"
ca=$work/ca.pem
"$bin" serve --listen "$serve" --workers 1 --log warn & pids+=($!)
"$bin" serve --listen "127.0.0.1:$tls_port" --tls-cert "$work/site.pem" --tls-key "$work/site.key" \
    --workers 1 --log warn & pids+=($!)
wait_ready "http://$serve/"
wait_ready_tls "https://localhost:$tls_port/" "$ca"

# curl: h2c with prior knowledge (one URL per run: curl 7.88 fails a second URL on a reused
# h2c connection, against nginx too), nghttp for several streams on one h2c connection;
# h2 by ALPN, several URLs on one connection.
out=$(curl -sv --http2-prior-knowledge "http://$serve/bytes/3" 2>&1)
grep -q "< HTTP/2 200" <<<"$out" || fail "curl h2c: no HTTP/2 response: $out"
out=$(nghttp -ns "http://$serve/" "http://$serve/bytes/3" "http://$serve/delay/20")
[ "$(grep -cE '^ +[0-9]+ .* 200 ' <<<"$out")" = 3 ] || fail "nghttp: three streams on one connection: $out"
pass "curl --http2-prior-knowledge and nghttp: HTTP/2 over plain TCP, three streams on one connection"
out=$(curl -sv --http2 --cacert "$ca" "https://localhost:$tls_port/" "https://localhost:$tls_port/bytes/3" 2>&1)
grep -q "ALPN: server accepted h2" <<<"$out" || fail "curl --http2: ALPN did not agree on h2: $out"
[ "$(grep -c "< HTTP/2 200" <<<"$out")" = 2 ] || fail "curl --http2: two HTTP/2 responses: $out"
grep -q "Re-using existing connection" <<<"$out" || fail "curl --http2: the connection was not reused: $out"
pass "curl --http2 over TLS: ALPN h2, verified, two URLs on one connection"
out=$(curl -s --http1.1 --cacert "$ca" -w '%{http_version}' -o /dev/null "https://localhost:$tls_port/")
[ "$out" = "1.1" ] || fail "curl --http1.1 over TLS: $out"
out=$(curl -s -w '%{http_version}' -o /dev/null "http://$serve/")
[ "$out" = "1.1" ] || fail "plain HTTP/1.1 beside h2c: $out"
pass "HTTP/1.1 still served on both ports (ALPN http/1.1; no preface)"

# h2load: many streams per connection, h2c and TLS.
for url in "http://$serve/" "https://localhost:$tls_port/"; do
    out=$(h2load -n 20000 -c 10 -m 10 "$url" 2>&1)
    grep -q "20000 succeeded, 0 failed, 0 errored" <<<"$out" || fail "h2load $url: $out"
    pass "h2load -c10 -m10 $url: $(grep -E '^finished in' <<<"$out")"
done

# hopline's own client.
out=$("$bin" get --http2-prior-knowledge -P 4 "http://$serve/" "http://$serve/bytes/10" \
    "http://$serve/delay/50" "http://$serve/" -o "$work/bodies" 2>&1)
grep -q "4 requests over 1 connection" <<<"$out" || fail "hopline get h2c: $out"
out=$("$bin" get --http2 --cacert "$ca" -v "https://localhost:$tls_port/" -o - 2>&1)
grep -q "ALPN h2" <<<"$out" && grep -q "< :status: 200" <<<"$out" || fail "hopline get --http2: $out"
out=$("$bin" bench --h2 --streams 16 -c 4 -n 20000 "http://$serve/")
grep -q "20000 requests" <<<"$out" && grep -q "connections opened  4" <<<"$out" \
    && ! grep -q "errors" <<<"$out" || fail "hopline bench --h2: $out"
pass "hopline get (h2c and ALPN h2) and bench --h2 --streams 16: $(sed -n 2p <<<"$out" | xargs)"

# nginx as an HTTP/2 origin over TLS, behind hopline proxy speaking h2 upstream.
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    log_format conn '\$connection \$server_protocol';
    server {
        listen 127.0.0.1:$nginx_h2 ssl http2;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        access_log $work/origin.log conn;
        location / { return 200 "nginx over \$server_protocol\n"; }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
wait_ready_tls "https://localhost:$nginx_h2/" "$ca"
"$bin" proxy --listen "$proxy" --upstream "https://localhost:$nginx_h2" --upstream-cacert "$ca" \
    --upstream-protocol h2 --workers 1 --log warn & pids+=($!)
wait_ready "http://$proxy/"
: > "$work/origin.log"
for _ in $(seq 10); do
    [ "$(curl -s "http://$proxy/")" = "nginx over HTTP/2.0" ] || fail "h1 -> proxy -> h2 nginx"
    [ "$(curl -s --http2-prior-knowledge "http://$proxy/")" = "nginx over HTTP/2.0" ] \
        || fail "h2c -> proxy -> h2 nginx"
done
sleep 0.3 # nginx writes its log line after the response
connections=$(awk '{print $1}' "$work/origin.log" | sort -u | wc -l)
[ "$connections" = 1 ] || fail "20 proxied requests took $connections HTTP/2 connections to nginx"
pass "hopline proxy -> nginx over HTTP/2 (TLS, verified): 20 requests from h1 and h2c clients on 1 upstream connection"

# HTTP/2 downstream, HTTP/1.1 upstream: the proxy downgrades, nginx's own fields stay out.
"$bin" proxy --listen "$proxy_h1" --upstream "http://$serve" --workers 1 --log warn & pids+=($!)
wait_ready "http://$proxy_h1/"
out=$(h2load -n 5000 -c 5 -m 10 "http://$proxy_h1/" 2>&1)
grep -q "5000 succeeded, 0 failed, 0 errored" <<<"$out" || fail "h2load through the proxy to an HTTP/1.1 upstream: $out"
pass "h2load -> hopline proxy (h2c) -> hopline serve (HTTP/1.1): 5000 requests, no failures"
