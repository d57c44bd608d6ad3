"""A held-out webhook for the compare tests, in its own process on 127.0.0.1: it answers
200 after a delay (50 ms at first), and ``PUT /delay?s=0.065`` changes the delay.

Its own process so that the load generator's thread and this server do not share a GIL:
the two A1 runs then measure the server's 50 ms, not how busy the test process was.
Prints its port on the first line of stdout; ends when stdin closes (the test ends).
"""

from __future__ import annotations

import asyncio
import socket
import sys

from aiohttp import web


async def _main() -> None:
    state = {"delay": 0.050}

    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(state["delay"])
        return web.Response(status=200, body=b"ok")

    async def set_delay(request: web.Request) -> web.StreamResponse:
        state["delay"] = float(request.query["s"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_put("/delay", set_delay)
    app.router.add_route("*", "/{tail:.*}", answer)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(sock.getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_main())
