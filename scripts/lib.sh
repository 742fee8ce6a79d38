# Sourced by the scripts that start servers on fixed ports (nginx and friends cannot report
# a port 0 back). `free_ports N` prints a base port such that base .. base+N-1 are all free
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
