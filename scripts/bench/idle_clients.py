#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT (over TLS, verified against CA_FILE, when
given), send one GET / on each and read the response, then hold them all idle until stdin
closes (or a line is read).

Prints "ready N" on stdout once every connection has had its response. Used by
scripts/bench/idle_memory.sh to measure server memory per idle connection."""
import asyncio
import ssl
import sys


async def one(host, port, tls, conns, sem):
    async with sem:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname="localhost" if tls else None
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
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


asyncio.run(main())
