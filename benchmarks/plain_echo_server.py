"""A plain ``websockets`` echo server: the baseline of the relay benchmark.

It uses the same library and the same connection settings as the ampt-sandbox
gateway (no compression, 128 KiB message limit, keepalive pings every 20 s),
and it prints its URL alone on a line once it serves, as ``ampt-sandbox dev``
does. SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.cancel)
    async with serve(
        echo, "127.0.0.1", port, compression=None, max_size=128 * 1024, ping_interval=20, ping_timeout=20
    ) as server:
        bound_port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{bound_port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop to run on")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main(args.port))
