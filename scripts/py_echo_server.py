#!/usr/bin/env python3
"""Python's `websockets` as an echo server, for side-by-side compression
benchmarks (scripts/bench_deflate.py): permessage-deflate on, as it is by
default in websockets.

    PYTHONPATH=target/pypeers python3 scripts/py_echo_server.py HOST:PORT
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    async with serve(echo, host, int(port), max_size=None, ping_interval=None):
        await asyncio.Future()


asyncio.run(main())
