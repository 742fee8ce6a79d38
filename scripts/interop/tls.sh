#!/usr/bin/env bash
# TLS with real peers, every hop verified against a CA made for the run:
#   curl (--cacert, -k, --tls-max 1.2, reuse shown by -v) and wrk over https against serve;
#   openssl s_client resuming (TLS 1.2 -reconnect, TLS 1.3 -sess_out/-sess_in);
#   hopline get, bench and the metrics against serve;
#   nginx as a TLS origin behind `hopline proxy` (which also terminates TLS);
#   `hopline serve` with TLS behind nginx (proxy_ssl_verify on).
# Usage: scripts/interop/tls.sh [path/to/hopline]   (needs curl, openssl, wrk, nginx)
set -euo pipefail
bin=${1:-target/release/hopline}
. "$(dirname "$0")/../lib.sh"
work=$(mktemp -d)
base=$(free_ports 6)
serve=127.0.0.1:$base admin=127.0.0.1:$((base + 1)) nginx_tls=$((base + 2))
proxy_plain=127.0.0.1:$((base + 3)) proxy_tls=$((base + 4)) nginx_front=$((base + 5))
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

make_pki "$work"
ca=$work/ca.pem
tls=(--tls-cert "$work/site.pem" --tls-key "$work/site.key")
"$bin" serve --listen "$serve" --admin "$admin" "${tls[@]}" --workers 1 --log warn & pids+=($!)
wait_ready_tls "https://localhost:$base/" "$ca"

# curl: verified, reused, TLS 1.2 on request, refused without trust.
out=$(curl -sv --cacert "$ca" "https://localhost:$base/" "https://localhost:$base/bytes/3" 2>&1)
grep -q "SSL connection using TLSv1.3" <<<"$out" || fail "curl: not TLS 1.3: $out"
grep -q "SSL certificate verify ok" <<<"$out" || fail "curl: certificate not verified: $out"
grep -q "Re-using existing connection" <<<"$out" || fail "curl: the TLS connection was not reused: $out"
grep -q "ALPN: server accepted h2" <<<"$out" || fail "curl: ALPN did not choose h2: $out"
pass "curl --cacert: TLS 1.3 verified, ALPN h2, the connection reused"
out=$(curl -sv --cacert "$ca" --tls-max 1.2 "https://localhost:$base/" 2>&1)
grep -q "SSL connection using TLSv1.2" <<<"$out" || fail "curl --tls-max 1.2: $out"
pass "curl --tls-max 1.2: TLS 1.2"
[ "$(curl -sk "https://localhost:$base/")" = "Hello, world!" ] || fail "curl -k"
code=0; curl -s -o /dev/null "https://localhost:$base/" || code=$?
[ "$code" = 60 ] || fail "curl without the CA should fail with 60, got $code"
pass "curl -k reaches it; without the CA, curl refuses (60)"
out=$(curl -s -i "http://localhost:$base/")
grep -q "400 Bad Request" <<<"$out" || fail "plain HTTP on the TLS port: $out"
pass "plain HTTP on the TLS port: 400"

# openssl s_client: resumption in TLS 1.2 (session IDs / tickets) and TLS 1.3 (tickets).
reused=$(openssl s_client -connect "$serve" -servername localhost -CAfile "$ca" -tls1_2 \
    -reconnect </dev/null 2>&1 | grep -c "^Reused, TLSv1.2" || true)
[ "$reused" -ge 5 ] || fail "s_client -reconnect -tls1_2: $reused of 5 reconnects resumed"
request=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
openssl s_client -connect "$serve" -servername localhost -CAfile "$ca" -sess_out "$work/sess" \
    -quiet <<<"$request" >/dev/null 2>&1
out=$(openssl s_client -connect "$serve" -servername localhost -CAfile "$ca" -sess_in "$work/sess" \
    <<<"$request" 2>&1)
grep -q "^Reused, TLSv1.3" <<<"$out" || fail "s_client -sess_in: TLS 1.3 session not resumed: $out"
grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "s_client: not verified"
pass "openssl s_client: sessions resumed (TLS 1.2 -reconnect 5/5, TLS 1.3 ticket)"

# wrk over https.
out=$(wrk -t1 -c10 -d2s "https://localhost:$base/" 2>&1)
grep -q "Requests/sec" <<<"$out" || fail "wrk: $out"
grep -qE "Socket errors|Non-2xx" <<<"$out" && fail "wrk errors: $out"
pass "wrk https: $(grep Requests/sec <<<"$out" | awk '{print $2}') requests/s, no errors"

# hopline get / bench, and what the metrics saw.
out=$("$bin" get --cacert "$ca" "https://localhost:$base/" "https://localhost:$base/" "https://localhost:$base/" 2>&1 >/dev/null)
grep -q "3 requests over 1 connection" <<<"$out" || fail "hopline get: $out"
out=$("$bin" bench --mode close -c 2 -n 200 --cacert "$ca" "https://localhost:$base/")
# "TLS handshakes  N (R/s), M resumed (...)": every connection after each worker's first resumes.
read -r handshakes resumed < <(sed -nE 's/.*TLS handshakes +([0-9]+) .*, ([0-9]+) resumed.*/\1 \2/p' <<<"$out")
[ "${handshakes:-0}" -ge 200 ] && [ "${resumed:-0}" -ge $((handshakes - 2)) ] \
    || fail "hopline bench --mode close: handshakes not resumed: $out"
pass "hopline get reuses one TLS connection; bench --mode close resumes: $(grep 'TLS handshakes' <<<"$out" | xargs)"
metrics=$(curl -s "http://$admin/metrics")
grep -q 'hopline_tls_handshakes_total{side="downstream",kind="resumed"} [1-9]' <<<"$metrics" \
    || fail "metrics: no resumed handshakes counted: $(grep tls <<<"$metrics")"
grep -q 'hopline_tls_failures_total{side="downstream",reason="plain_http"} [1-9]' <<<"$metrics" \
    || fail "metrics: the plain HTTP request was not counted"
grep -q 'hopline_tls_handshake_duration_seconds_count{side="downstream"} [1-9]' <<<"$metrics" \
    || fail "metrics: no handshake durations"
pass "metrics: handshakes by kind, durations and failures by reason"

# nginx: a TLS origin for hopline proxy, and a TLS client of hopline serve.
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    log_format conn '\$connection \$connection_requests';
    server {
        listen 127.0.0.1:$nginx_tls ssl;
        ssl_certificate $work/site.pem;
        ssl_certificate_key $work/site.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log $work/origin.log conn;
        location / { return 200 "nginx over TLS, forwarded proto \$http_x_forwarded_proto\n"; }
    }
    server {
        listen 127.0.0.1:$nginx_front;
        location / {
            proxy_pass https://127.0.0.1:$base;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $ca;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
wait_ready_tls "https://localhost:$nginx_tls/" "$ca"
up=(--upstream "https://localhost:$nginx_tls" --upstream-cacert "$ca" --workers 1 --log warn)
"$bin" proxy --listen "$proxy_plain" "${up[@]}" & pids+=($!)
"$bin" proxy --listen "127.0.0.1:$proxy_tls" "${tls[@]}" "${up[@]}" & pids+=($!)
wait_ready "http://$proxy_plain/"
wait_ready_tls "https://localhost:$proxy_tls/" "$ca"
: > "$work/origin.log"
for _ in $(seq 20); do
    out=$(curl -s "http://$proxy_plain/")
    [ "$out" = "nginx over TLS, forwarded proto http" ] || fail "proxy to nginx over TLS: $out"
done
out=$(curl -s --cacert "$ca" "https://localhost:$proxy_tls/")
[ "$out" = "nginx over TLS, forwarded proto https" ] || fail "TLS proxy: X-Forwarded-Proto: $out"
sleep 0.3 # nginx writes its log line after the response
connections=$(awk '{print $1}' "$work/origin.log" | sort -u | wc -l)
[ "$connections" -le 2 ] || fail "21 proxied requests took $connections upstream TLS connections"
pass "hopline proxy -> nginx over TLS (verified): 21 requests over $connections upstream connection(s); X-Forwarded-Proto http / https"
code=0
"$bin" proxy --listen "127.0.0.1:$((base + 3))" --upstream "https://localhost:$nginx_tls" --workers 1 \
    --upstream-cacert /nonexistent.pem --log warn 2>"$work/bad.err" || code=$?
[ "$code" != 0 ] && grep -q "nonexistent.pem" "$work/bad.err" || fail "a missing --upstream-cacert must stop the proxy at start"
pass "a missing --upstream-cacert stops the proxy at start with the file named"

for _ in $(seq 5); do
    out=$(curl -s "http://127.0.0.1:$nginx_front/bytes/4")
    [ "$out" = "abcd" ] || fail "nginx -> hopline serve over TLS: $out"
done
grep -q "SSL" "$work/error.log" && fail "nginx reported TLS errors: $(cat "$work/error.log")"
pass "nginx (proxy_ssl_verify on) -> hopline serve over TLS: verified, answered"
