# Sourced by the interop and bench scripts, which start servers on fixed ports (nginx and
# friends cannot report a port 0 back) and must wait for them.
#
# `free_ports N` prints a base port such that base .. base+N-1 are all free
# on 127.0.0.1 right now, chosen below the kernel's ephemeral range (32768 and up), so no
# outgoing connection can take one of them before the server binds it.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys

count = int(sys.argv[1])
for _ in range(500):
    base = random.randrange(10000, 32000 - count)
    held = []
    try:
        for port in range(base, base + count):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        for s in held:
            s.close()
    print(base)
    sys.exit(0)
sys.exit("no free port range found")
PY
}

# `wait_ready URL`: waits up to 5 s for URL to answer; fails loudly if it never does (a
# server that did not start must not look like a server that answers badly).
wait_ready() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "FAIL: nothing answered at $1 within 5 s" >&2
    return 1
}

# `make_pki DIR`: a throwaway certificate authority and a certificate it signs for
# localhost and 127.0.0.1 (ECDSA P-256, valid two days): DIR/ca.pem, DIR/site.pem,
# DIR/site.key. Made at run time; no key is ever kept in the repository.
make_pki() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=hopline test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/site.key" -out "$dir/site.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/site.ext"
    openssl x509 -req -in "$dir/site.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -out "$dir/site.pem" -days 2 -extfile "$dir/site.ext" 2>/dev/null
}

# `wait_ready_tls URL CA`: `wait_ready` for an https:// URL, verified against CA.
wait_ready_tls() {
    for _ in $(seq 100); do
        curl -s -o /dev/null --cacert "$2" "$1" && return 0
        sleep 0.05
    done
    echo "FAIL: nothing answered at $1 within 5 s" >&2
    return 1
}

# `nginx_hello_conf DIR PORT`: DIR/nginx.conf for an nginx origin (1 worker, no access log,
# keep-alive without a request limit) answering "Hello, world!" on 127.0.0.1:PORT; its pid
# file is DIR/nginx.pid. Run it with `nginx -c DIR/nginx.conf -p DIR`.
nginx_hello_conf() {
    cat > "$1/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$2;
        location / { return 200 "Hello, world!"; }
    }
}
NGINX
}

# `haproxy_h2_conf PORT ORIGIN_PORT`: prints an HAProxy 2.6 configuration (1 thread,
# `http-reuse safe`) taking HTTP/2 clients with prior knowledge on 127.0.0.1:PORT and
# proxying to the HTTP/1.1 origin on 127.0.0.1:ORIGIN_PORT.
haproxy_h2_conf() {
    cat <<HAPROXY
global
    nbthread 1
    maxconn 5000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse safe
frontend fe
    bind 127.0.0.1:$1 proto h2
    default_backend be
backend be
    server origin 127.0.0.1:$2
HAPROXY
}

# `start_h2_proxy NAME LISTEN_PORT ORIGIN_PORT HAPROXY_CFG`: starts, in the background on
# CPU 1, one of the proxies the HTTP/2 proxy benches compare: `hopline` (keep-alive
# upstream), `hopline-pipelined` (`--upstream-mode pipeline --upstream-depth 16`) or
# `haproxy` (with HAPROXY_CFG); the caller takes its pid from `$!`.
start_h2_proxy() {
    local hopline=(taskset -c 1 target/release/hopline proxy --listen "127.0.0.1:$2"
        --upstream "http://127.0.0.1:$3" --workers 1 --log warn)
    case $1 in
        hopline) "${hopline[@]}" & ;;
        hopline-pipelined) "${hopline[@]}" --upstream-mode pipeline --upstream-depth 16 & ;;
        haproxy) taskset -c 1 haproxy -f "$4" -db & ;;
        *) echo "unknown proxy $1" >&2; return 1 ;;
    esac
}

# `h2c_ready PORT`: waits up to 5 s for an HTTP/2 (prior knowledge) answer on PORT.
h2c_ready() {
    for _ in $(seq 100); do
        curl -sf --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.05
    done
    echo "FAIL: no HTTP/2 answer on port $1 within 5 s" >&2
    return 1
}
