#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT (over TLS, verified against CA_FILE, when
given), send one GET / on each and read the response, then hold them all idle until stdin
closes (or a line is read).

Prints "ready N" on stdout once every connection has had its response. Used by
scripts/bench/idle_memory.sh to measure server memory per idle connection.

With H2=1 in the environment, each connection speaks HTTP/2 with prior knowledge (h2c),
written by hand: the preface, SETTINGS, one GET on stream 1 (HPACK literals), the server's
SETTINGS acknowledged, read until stream 1 ends."""
import asyncio
import os
import ssl
import sys

H2 = os.environ.get("H2") == "1"


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


H2_HELLO = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + frame(4, 0, 0)
    + frame(1, 0x5, 1, b"".join(literal(n, v) for n, v in [
        (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"bench"), (b":path", b"/")]))
)


async def one_h2(reader, writer):
    writer.write(H2_HELLO)
    await writer.drain()
    while True:
        head = await reader.readexactly(9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        await reader.readexactly(length)
        if kind == 4 and not flags & 0x1:
            writer.write(frame(4, 0x1, 0))
        if stream == 1 and kind in (0, 1) and flags & 0x1:
            return


async def get(reader, writer):
    """One GET / over HTTP/1.1, its response read whole; whether it was a 200."""
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return head.split(b" ", 2)[1] == b"200"


async def one(host, port, tls, conns, sem):
    async with sem:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname="localhost" if tls else None
        )
        if H2:
            await one_h2(reader, writer)
            conns.append(writer)
            return
        await get(reader, writer)
        conns.append(writer)


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tls = ssl.create_default_context(cafile=sys.argv[4]) if len(sys.argv) > 4 else None
    conns = []
    sem = asyncio.Semaphore(200)
    await asyncio.gather(*(one(host, port, tls, conns, sem) for _ in range(n)))
    print(f"ready {len(conns)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in conns:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
