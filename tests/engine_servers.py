"""Tiny loopback servers for the engine tests (127.0.0.1 only, each on its own thread/loop).

``WebServer`` wraps an aiohttp.web handler; ``RawServer`` a raw asyncio connection callback
for faults aiohttp.web would never produce (resets, silence, garbage); ``send_json`` answers
from an http.server handler (the API fakes of the other tests). ``interrupt_cli`` stops a
command-line load against a ``WebServer`` with a signal. ``shard_result`` is a synthetic
shard result for the summary's judgement (no server at all).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from kubetest.engine import OUTCOMES, ShardResult, new_histogram

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ROOT = Path(__file__).resolve().parents[1]


class _LoopThread:
    """A server on its own event loop thread (context manager): ``_start`` and ``_close``
    run on that loop; ``.url`` once entered."""

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

    async def _start(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/prometheus"

    def __enter__(self) -> Self:
        self.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._close())
        finally:
            self.stop()


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

    async def _close(self) -> None:
        await self.runner.cleanup()

    def wait_for_requests(self, n: int, timeout_s: float = 30.0) -> None:
        """Until ``n`` requests have come in, or ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while self.requests < n and time.monotonic() < deadline:
            time.sleep(0.02)


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
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled handler (server closing) ends quietly
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


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 request (headers + Content-Length body); its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head


def send_json(h: BaseHTTPRequestHandler, status: int, doc: Any) -> None:
    """Answer ``doc`` as JSON (with its Content-Length) from an http.server handler."""
    body = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


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


def interrupt_cli(
    cmd: list[str], server: WebServer, sig: int, *, after_requests: int, timeout_s: float
) -> tuple[bytes, float]:
    """Run ``cmd`` (a load against ``server``) and send it ``sig`` once the server has had
    ``after_requests`` requests; asserts that it got that far and exited with 130 within
    ``timeout_s``. Its stdout, and how long it took to exit after the signal."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        server.wait_for_requests(after_requests)
        assert server.requests >= after_requests, (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        proc.send_signal(sig)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=timeout_s)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    print("stop took", took)
    return out, took


# -- synthetic shard results, for the summary's judgement (no network, no clock) ----------


def histogram_of(values_s: Iterable[float]) -> Any:
    """An HDR histogram (µs) of latencies in seconds, as the engine records them."""
    h = new_histogram()
    for v in values_s:
        h.record_value(max(1, min(3_600_000_000, int(v * 1e6))))
    return h


def hdr(values_s: Iterable[float]) -> bytes:
    return histogram_of(values_s).encode()


def outcomes(accepted: int = 0, **others: int) -> dict[str, int]:
    """Every outcome, 0 unless given."""
    return {**dict.fromkeys(OUTCOMES, 0), "accepted": accepted, **others}


def shard_result(n: int = 100, **over: Any) -> ShardResult:
    """A healthy shard: ``n`` arrivals sent on time over 10 s, all accepted in 0.1 s."""
    base: dict[str, Any] = dict(
        shard=0, n_shards=1, mode="open", records_path="r.csv", scheduled=n, dispatched=n,
        completed=n, outcomes=outcomes(n), errors={}, error_samples={},
        latency_hdr=hdr([0.1] * n), service_hdr=hdr([0.1] * n), lag_hdr=hdr([0.001] * n),
        loop_lag_hdr=hdr([0.001] * 40), lag_max_by_second=[0.001] * 12, first_intended_s=0.0,
        last_sent_s=9.9, dispatch_end_s=9.9, end_s=10.0, loop_busy=0.2, max_in_flight=100,
        max_in_flight_seen=3, interrupted=False,
    )  # fmt: skip
    return ShardResult(**{**base, **over})


# -- hostile answers (fault matrix): bodies that never end, lie about their size, trickle --


async def _drain_request(reader: asyncio.StreamReader) -> bool:
    try:
        await read_request(reader)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return False
    return True


async def _stream(
    writer: asyncio.StreamWriter, head: bytes, piece: bytes, pause_s: float = 0.0
) -> None:
    """Write ``head``, then ``piece`` again and again (``pause_s`` apart; at 0 as fast as
    the client reads)."""
    writer.write(head)
    while True:
        writer.write(piece)
        await writer.drain()
        if pause_s:
            await asyncio.sleep(pause_s)


def _forever(head: bytes, piece: bytes, pause_s: float = 0.0) -> RawHandler:
    """A handler that reads the request, then ``_stream``s."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _drain_request(reader):
            await _stream(writer, head, piece, pause_s)

    return handler


_OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
_CHUNK_64K = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
_2GB = _OK_JSON + b"Content-Length: 2147483648\r\n\r\n"

#: The hostile answers by name, for parametrised fault tests.
HOSTILE: dict[str, RawHandler] = {
    # 200, chunked, 64 KiB chunks for ever (as fast as the client reads)
    "endless-chunked": _forever(_OK_JSON + b"Transfer-Encoding: chunked\r\n\r\n", _CHUNK_64K),
    # 200 announcing a 2 GB body, then 8 KiB every 10 ms (never the gigabytes)
    "announced-2GB": _forever(_2GB, b" " * 8192, 0.01),
    # 200 with a 1,000-byte body sent one byte a second
    "trickle-1Bps": _forever(_OK_JSON + b"Content-Length: 1000\r\n\r\n", b" ", 1.0),
    # a status line, then a header that never ends, two bytes a second: every read
    # returns before a read timeout, the headers never complete
    "trickle-headers": _forever(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.5),
}


async def hostile_service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A whole hostile service: ``/health`` streams chunks for ever, every other path
    announces a 2 GB body (and streams it slowly, never the gigabytes)."""
    head = await read_request(reader)
    path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
    if path.startswith(b"/health"):
        await _stream(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", _CHUNK_64K)
    await _stream(writer, _2GB, b" " * 8192, 0.01)
