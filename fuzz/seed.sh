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
print("seeded:", ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
PY
