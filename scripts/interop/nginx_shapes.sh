#!/usr/bin/env bash
# Every request shape the tests replay (the desync corpus, the llhttp corpus's requests),
# sent to hopline and to nginx as a server and as a proxy: the verdicts must agree except
# for the documented, deliberate differences (tests/nginx_shapes.rs, docs/hardening.md).
# Usage: scripts/interop/nginx_shapes.sh [path/to/llhttp.jsonl]   (needs nginx)
set -euo pipefail
corpus=$(realpath "${1:-${HOPLINE_CORPUS:-../shared/conformance/llhttp.jsonl}}")
work=$(mktemp -d)
. "$(dirname "$0")/../lib.sh"
base=$(free_ports 2)
server=$base proxy=$((base + 1))
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $work/error.log crit;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$server;
        location / { return 200 "ok"; }
    }
    server {
        listen 127.0.0.1:$proxy;
        location / {
            proxy_pass http://127.0.0.1:$server;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "http://127.0.0.1:$server/"
wait_ready "http://127.0.0.1:$proxy/"
HOPLINE_NGINX_SERVER=127.0.0.1:$server HOPLINE_NGINX_PROXY=127.0.0.1:$proxy \
    HOPLINE_CORPUS="$corpus" cargo test --test nginx_shapes -- --nocapture
