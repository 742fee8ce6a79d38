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
