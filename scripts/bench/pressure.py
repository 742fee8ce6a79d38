#!/usr/bin/env python3
"""The idle timeout under pressure, against a running server at HOST:PORT whose limit is
LIMIT connections: open IDLE keep-alive connections (one GET / each, in order, then held
idle), wait SETTLE seconds, then open NEW connections at once, each sending one GET /.

Prints, as JSON: how many new clients were served and their slowest response, how many of
the idle connections the server closed, and whether it closed them longest idle first (the
closed ones are the earliest opened). Used by scripts/bench/pressure.sh."""
import asyncio
import json
import sys
import time

from idle_clients import get  # one GET / over HTTP/1.1 (the same directory)


async def idle_client(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    await get(reader, writer)
    return reader, writer


async def closed(reader):
    """Whether the server has closed the connection (EOF or reset) by now."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=0.05)
        return data == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True


async def new_client(host, port):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        ok = await asyncio.wait_for(get(reader, writer), 10)
        writer.close()
        return ok, time.monotonic() - start
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False, time.monotonic() - start


async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    idle_n, new_n, settle = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    idle = []
    for _ in range(idle_n):
        idle.append(await idle_client(host, port))
    await asyncio.sleep(settle)
    results = await asyncio.gather(*(new_client(host, port) for _ in range(new_n)))
    await asyncio.sleep(0.2)
    gone = await asyncio.gather(*(closed(reader) for reader, _ in idle))
    first_open = gone.index(False) if False in gone else len(gone)
    in_order = all(gone[:first_open]) and not any(gone[first_open:])
    print(json.dumps({
        "idle": idle_n,
        "new": new_n,
        "new_served": sum(ok for ok, _ in results),
        "new_slowest_ms": round(max(t for _, t in results) * 1000, 1),
        "idle_closed": sum(gone),
        "closed_longest_idle_first": in_order,
    }))
    for _, writer in idle:
        writer.close()


asyncio.run(main())
