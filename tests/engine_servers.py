"""Tiny loopback servers for the engine tests (127.0.0.1 only, each on its own thread/loop).

``WebServer`` wraps an aiohttp.web handler; ``RawServer`` a raw asyncio connection callback
for faults aiohttp.web would never produce (resets, silence, garbage).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.call(cancel_rest())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


class WebServer(_LoopThread):
    """An aiohttp.web app with one POST route (any path) that counts concurrency."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.first_request_at: float | None = None
        self.headers: list[dict[str, str]] = []

    async def _wrapped(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = time.monotonic()
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await request.read()
            return await self.handler(request)
        finally:
            self.in_flight -= 1

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._wrapped)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.2
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/prometheus"

    def __enter__(self) -> WebServer:
        self.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.runner.cleanup())
        finally:
            self.stop()


class RawServer(_LoopThread):
    """asyncio.start_server with a raw connection callback."""

    def __init__(self, on_connection: RawHandler) -> None:
        super().__init__()
        self.on_connection = on_connection
        self.tasks: set[asyncio.Task[Any]] = set()

    async def _cb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.on_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._cb, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/prometheus"

    def __enter__(self) -> RawServer:
        self.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._close())
        finally:
            self.stop()


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read one HTTP/1.1 request (headers + Content-Length body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ok_handler(status: int = 200, body: bytes = b"ok", delay_s: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(status=status, body=body)

    return handler
