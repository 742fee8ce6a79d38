#!/usr/bin/env bash
# Seeds the fuzz corpora from the llhttp conformance corpus (read in place, never copied
# into the repository: fuzz/corpus is ignored by git). Each seed gets a leading control byte
# (the targets' first input byte picks the split / piece size / methods).
# Usage: fuzz/seed.sh [path/to/llhttp.jsonl]   (default: ../shared/conformance/llhttp.jsonl)
set -euo pipefail
cd "$(dirname "$0")"
corpus=${1:-${HOPLINE_CORPUS:-../../shared/conformance/llhttp.jsonl}}
[ -f "$corpus" ] || { echo "no corpus at $corpus (pass its path or set HOPLINE_CORPUS)" >&2; exit 1; }
python3 - "$corpus" <<'PY'
import base64, hashlib, json, os, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def put(target, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data)
counts = {}
for row in rows:
    raw = base64.b64decode(row["input_b64"])
    kind = "request" if row["type"].startswith("request") else "response"
    targets = ["request_head", "server_conn"] if kind == "request" else ["response_head", "client_conn"]
    for target in targets:
        for control in (0, 7, 64):
            put(target, bytes([control]) + raw)
            counts[target] = counts.get(target, 0) + 1
    # Chunked bodies: whatever follows the head of a chunked message.
    head_end = raw.find(b"\r\n\r\n")
    if head_end >= 0 and b"chunked" in raw[:head_end].lower():
        body = raw[head_end + 4:]
        for prefix in (bytes([0]), bytes([3, 1, 2, 5])):
            put("chunked", prefix + body)
            counts["chunked"] = counts.get("chunked", 0) + 1
# HTTP/2 frames after the preface (the target sends the preface): settings, requests with
# and without bodies, resets, pings, window updates, a CONTINUATION, a GOAWAY.
def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
get = b"".join(literal(n, v) for n, v in [(b":method", b"GET"), (b":scheme", b"http"),
                                          (b":authority", b"a"), (b":path", b"/echo")])
post = get.replace(b"GET", b"POST") + literal(b"content-length", b"5")
seeds = [
    frame(4, 0, 0) + frame(1, 5, 1, get),
    frame(4, 0, 0) + frame(1, 4, 1, post) + frame(0, 1, 1, b"hello"),
    frame(4, 0, 0) + frame(1, 5, 1, get) + frame(3, 0, 1, b"\x00\x00\x00\x08"),
    frame(4, 0, 0) + frame(6, 0, 0, b"\x00" * 8) + frame(8, 0, 0, b"\x00\x00\x10\x00"),
    frame(4, 0, 0) + frame(1, 0, 1, get[:20]) + frame(9, 4, 1, get[20:]),
    frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x01") + frame(1, 5, 1, get) + frame(1, 5, 3, get),
    frame(4, 0, 0) + frame(7, 0, 0, b"\x00" * 8),
]
for seed in seeds:
    for control in (0, 7, 64):
        put("h2_server_conn", bytes([control]) + seed)
        counts["h2_server_conn"] = counts.get("h2_server_conn", 0) + 1
# PROXY protocol headers, v1 and v2 (with an HTTP request after them).
v2 = b"\r\n\r\n\x00\r\nQUIT\n"
for seed in [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
    b"PROXY UNKNOWN\r\n",
    v2 + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 1, 198, 51, 100, 2, 1, 2, 3, 4]),
    v2 + b"\x21\x21\x00\x24" + bytes(range(36)),
    v2 + b"\x20\x00\x00\x00",
    v2 + b"\x21\x11\x00\x13" + bytes(12) + b"\x04\x00\x04noop",
]:
    put("proxy_header", seed)
    counts["proxy_header"] = counts.get("proxy_header", 0) + 1
print("seeded:", ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
PY
