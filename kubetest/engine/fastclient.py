"""The fast load client: HTTP/1.1 straight on asyncio's Protocol, parsed by httptools.

Why (issue 21): the aiohttp session spends ~0.13 s of CPU per 1,000 requests (README
"Benchmark"): per request it builds a request object, a response object, a stream reader,
header multidicts and cookie jars the engine never reads. A load generator needs far less:
write a precomputed request head and the body, parse the status line, the headers that
matter and a capped body, hand back ``(status, body)``. The machine's CPU is shared with
the service or with other generators, so every microsecond saved is less perturbation.

What it keeps of the aiohttp path (``engine.client``; the fault tests run both):

* a keep-alive pool capped at ``max_connections`` (the shard's in-flight cap): idle
  connections are reused newest first, a connection the server closed (``Connection:
  close``, an idle timeout, an error) leaves the pool and the next request opens a new
  one; a request sent on a connection is never retried (a POST may have been acted on);
* one total deadline per request (connect + send + wait + read), like
  ``ClientTimeout(total=...)``: past it the connection is dropped and the request is a
  ``timeout``;
* bodies capped at ``max_body_bytes``, announced (Content-Length) or not (chunked,
  read-until-close): past it the connection is dropped (``BodyTooLarge``: ``oversized``);
  gzip/deflate answers are inflated within the same cap (nothing asks for them);
* TLS through the ``ssl.SSLContext`` of ``target.tls`` (``kubetest.tls.verify``);
* the same headers (Host, User-Agent, Content-Type, Accept, Content-Length, a bearer
  token when set), no proxy, no redirects;
* failures raise what ``engine.client.classify_exception`` already maps to the same error
  classes: ``HttpConnectError`` (cause: refused / dns / tls / connect), ``ServerDisconnected``
  (reset), ``BadResponse`` (bad_response), ``TimeoutError``, ``BodyTooLarge``, ``OSError``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import zlib
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

from kubetest.errors import BadResponse, BodyTooLarge, HttpConnectError, ServerDisconnected

#: Resolved addresses are kept this long (aiohttp's ``ttl_dns_cache`` in the session).
DNS_TTL_S = 300.0
#: Bytes of status line and headers accepted before the answer is ``bad_response``
#: (httptools keeps a header in memory until it ends; aiohttp refuses a line over 8 KiB).
MAX_HEAD_BYTES = 64 << 10


#: First bytes of the header names an answer is read for (Content-*, Transfer-Encoding).
_READ_FIRST = frozenset((b"C", b"c", b"T", b"t"))


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("no complete answer within the request timeout"))


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request on it at a time."""

    def __init__(self, pool: FastClient) -> None:
        self.pool = pool
        self.cap = pool.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.idle = False  # in the pool's idle list (a lost one leaves it without a scan)
        self._begin()

    def _begin(self) -> None:
        self.body = bytearray()
        self.head_bytes = 0
        self.headers_done = False
        self.length: int | None = None
        self.chunked = False
        self.encoding = b""
        self.error: BaseException | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.abort()
            return
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES + self.cap and self.error is None:
                self.error = BadResponse(f"answer headers passed {MAX_HEAD_BYTES} bytes")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.error is None:
                cause = exc.__context__
                self.error = BadResponse(f"unparseable answer: {cause or exc}")
        if self.error is not None:
            self._fail(self.error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._lost(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.error is not None:
            self._fail(self.error)
        elif self.headers_done and self.length is None and not self.chunked and exc is None:
            self._complete(False)  # a body delimited by the end of the connection
        elif exc is not None:
            self._fail(exc)
        else:
            what = "before answering" if not self.headers_done else "in the middle of the answer"
            self._fail(ServerDisconnected(f"the server closed the connection {what}"))

    # -- httptools callbacks ----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name[:1] not in _READ_FIRST:  # most headers (Server, Date, ETag, ...): not read
            return
        name = name.lower()
        if name == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                self.error = BadResponse(f"bad Content-Length {value[:40]!r}")
                return
            if self.length > self.cap and self.error is None:
                self.error = BodyTooLarge(f"answer announces {self.length} bytes (cap {self.cap})")
        elif name == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif name == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, data: bytes) -> None:
        if self.error is None:
            if len(self.body) + len(data) > self.cap:
                self.error = BodyTooLarge(f"answer body passed {self.cap} bytes")
            else:
                self.body += data

    def on_message_complete(self) -> None:
        if self.error is not None:
            return
        if 100 <= self.parser.get_status_code() < 200:  # 1xx: the answer is still to come
            self._begin()
            return
        self._complete(self.parser.should_keep_alive())

    # -- the request's end ------------------------------------------------------------------
    def _complete(self, keep_alive: bool) -> None:
        waiter, self.waiter = self.waiter, None
        status = self.parser.get_status_code()
        body = bytes(self.body)
        if self.encoding in (b"gzip", b"deflate", b"x-gzip"):
            try:
                body = _inflate(body, self.encoding, self.cap)
            except BodyTooLarge as exc:
                keep_alive = False
                if waiter is not None and not waiter.done():
                    waiter.set_exception(exc)
                waiter = None
            except zlib.error as exc:
                keep_alive = False
                if waiter is not None and not waiter.done():
                    waiter.set_exception(BadResponse(f"cannot inflate the answer: {exc}"))
                waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))
        if keep_alive and not self.closed:
            self.pool._release(self)
        else:
            self.abort()

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()  # connection_lost follows: the pool's slot is freed there


def _inflate(body: bytes, encoding: bytes, cap: int) -> bytes:
    """The decompressed body, refusing to grow past ``cap`` (a small zip bomb stays small)."""
    wbits = 16 + zlib.MAX_WBITS if encoding in (b"gzip", b"x-gzip") else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, cap + 1)
    if len(out) > cap:
        raise BodyTooLarge(f"inflated answer passed {cap} bytes")
    return out


class FastClient:
    """POSTs to one URL over a capped keep-alive pool (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        timeout_s: float,
        max_body_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "kubetest",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"load URL must be http(s)://host..., got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl_context if parts.scheme == "https" else None
        if parts.scheme == "https" and self.ssl is None:
            self.ssl = ssl.create_default_context()
        self.max_connections = max(1, max_connections)
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = (parts.scheme == "http" and self.port == 80) or self.port == 443
        hostport = host if default else f"{host}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {hostport}",
            "Accept: */*",
            f"User-Agent: {user_agent}",
            "Content-Type: application/json",
        ]
        if parts.username is not None:  # credentials in the URL, as aiohttp sends them
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            lines.append(f"Authorization: Basic {base64.b64encode(cred).decode()}")
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.idle: list[_Conn] = []
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.n_conns = 0
        self.opened = 0  # connections opened over the client's life (reuse = requests / this)
        self._addr: tuple[float, list[tuple[Any, ...]]] | None = None
        self._closing = False

    # -- the pool ---------------------------------------------------------------------------
    def _release(self, conn: _Conn) -> None:
        if self._closing:
            conn.abort()
            return
        conn.idle = True
        self.idle.append(conn)
        self._wake()

    def _lost(self, conn: _Conn) -> None:
        self.n_conns -= 1
        if conn.idle:
            conn.idle = False
            self.idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def _addresses(self, loop: asyncio.AbstractEventLoop) -> list[tuple[Any, ...]]:
        now = loop.time()
        if self._addr is not None and now - self._addr[0] < DNS_TTL_S:
            return self._addr[1]
        infos = await loop.getaddrinfo(self.host, self.port, type=1)  # SOCK_STREAM
        self._addr = (now, infos)
        return infos

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Conn:
        self.n_conns += 1  # the slot is taken while connecting
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    infos = await self._addresses(loop)
                    err: BaseException | None = None
                    for family, _, proto, _, addr in infos:
                        try:
                            _, conn = await loop.create_connection(
                                lambda: _Conn(self), addr[0], addr[1], family=family, proto=proto,
                                ssl=self.ssl, server_hostname=self.host if self.ssl else None,
                            )  # fmt: skip
                        except OSError as exc:  # ssl.SSLError included
                            err = exc
                            continue
                        self.opened += 1
                        return conn  # type: ignore[return-value]
                    raise err or OSError(f"no address for {self.host}")
                except OSError as exc:
                    raise HttpConnectError(
                        f"cannot connect to {self.host}:{self.port}: {exc}"
                    ) from exc
        except BaseException:
            self.n_conns -= 1
            self._wake()
            raise

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Conn:
        while True:
            while self.idle:
                conn = self.idle.pop()
                conn.idle = False
                if not conn.closed:
                    return conn
            if self.n_conns < self.max_connections:
                return await self._connect(loop, deadline)
            fut: asyncio.Future[None] = loop.create_future()
            self.waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise

    # -- one request ----------------------------------------------------------------------
    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send ``body``; the answer's ``(status, body)``, or an exception (module docstring)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        idle = self.idle
        while idle:  # the common case, without a coroutine: an idle kept-alive connection
            conn = idle.pop()
            conn.idle = False
            if not conn.closed:
                break
        else:
            conn = await self._acquire(loop, deadline)
        extra = b""
        if headers:
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn._begin()
        conn.waiter = fut
        transport = conn.transport
        assert transport is not None
        transport.write(b"%s%sContent-Length: %d\r\n\r\n%s" % (self.head, extra, len(body), body))
        timer = loop.call_at(deadline, _expire, fut)
        try:
            return await fut
        except BaseException as exc:
            if conn.headers_done:  # failed after the status line: the record keeps it
                exc.answer_status = conn.parser.get_status_code()  # type: ignore[attr-defined]
            raise
        finally:
            timer.cancel()
            if conn.waiter is fut:  # not answered (timeout, cancel): the connection is spoilt
                conn.waiter = None
                conn.abort()

    async def close(self) -> None:
        """Close the idle connections (a shard closes its client once nothing is in flight)."""
        self._closing = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.idle = False
            conn.abort()
        for fut in self.waiters:
            if not fut.done():
                fut.cancel()
        await asyncio.sleep(0)  # let connection_lost run
