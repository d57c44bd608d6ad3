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
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

from kubetest.errors import BadResponse, BodyTooLarge, HttpConnectError, ServerDisconnected

#: Resolved addresses are kept this long (aiohttp's ``ttl_dns_cache`` in the session).
DNS_TTL_S = 300.0
#: Bytes of status line and headers accepted before the answer is ``bad_response``
#: (httptools keeps a header in memory until it ends; aiohttp refuses a line over 8 KiB).
MAX_HEAD_BYTES = 64 << 10


#: Longest wait before the deadline queue drops the requests answered meanwhile (memory).
PRUNE_S = 0.1

#: Lengths of the header names an answer is read for: Content-Length, Content-Encoding,
#: Transfer-Encoding (a length test first: most headers are skipped without a lower()).
_READ_LENGTHS = frozenset((14, 16, 17))

#: Told how a request ended: ``(ctx, status, body, error)``; ``ctx`` is what the sender
#: passed, ``status`` the answer's (0 before the status line), ``error`` None on success.
OnDone = Callable[[Any, int, bytes, "BaseException | None"], None]


def _settle(fut: asyncio.Future[tuple[int, bytes]], status: int, body: bytes,
            exc: BaseException | None) -> None:  # fmt: skip
    """``post``'s ``OnDone``: the answer (or the failure) to the awaiting coroutine."""
    if fut.done():
        return
    if exc is None:
        fut.set_result((status, body))
    else:
        if status:  # failed after the status line: the record keeps it
            exc.answer_status = status  # type: ignore[attr-defined]
        fut.set_exception(exc)


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request on it at a time."""

    def __init__(self, pool: FastClient) -> None:
        self.pool = pool
        self.cap = pool.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.on_done: OnDone | None = None  # set while a request is out on the connection
        self.ctx: Any = None
        self.gen = 0  # requests sent on it: tells a deadline entry whether it is still due
        self.closed = False
        self.idle = False  # in the pool's idle list (a lost one leaves it without a scan)
        self._begin()

    def _begin(self) -> None:
        self.body: bytes | bytearray = b""  # the first chunk kept as is: most answers are one
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
        if self.on_done is None:  # bytes nobody asked for: the connection cannot be trusted
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
        if self.on_done is None:
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
        if len(name) not in _READ_LENGTHS:  # most headers (Server, Date, ETag, ...): not read
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
            body = self.body
            if len(body) + len(data) > self.cap:
                self.error = BodyTooLarge(f"answer body passed {self.cap} bytes")
            elif not body:
                self.body = data
            elif isinstance(body, bytearray):
                body += data
            else:
                self.body = bytearray(body) + data

    def on_message_complete(self) -> None:
        if self.error is not None:
            return
        if 100 <= self.parser.get_status_code() < 200:  # 1xx: the answer is still to come
            self._begin()
            return
        self._complete(self.parser.should_keep_alive())

    # -- the request's end ------------------------------------------------------------------
    def _complete(self, keep_alive: bool) -> None:
        """The answer is whole: the connection back to the pool first (free for the next
        arrival), then the sender told."""
        on_done, self.on_done = self.on_done, None
        status = self.parser.get_status_code()
        body = bytes(self.body)
        error: BaseException | None = None
        if self.encoding in (b"gzip", b"deflate", b"x-gzip"):
            try:
                body = _inflate(body, self.encoding, self.cap)
            except BodyTooLarge as exc:
                error = exc
            except zlib.error as exc:
                error = BadResponse(f"cannot inflate the answer: {exc}")
        if keep_alive and error is None and not self.closed:
            self.pool._release(self)
        else:
            self.abort()
        if on_done is not None:
            on_done(self.ctx, status, body, error)

    def _fail(self, exc: BaseException) -> None:
        on_done, self.on_done = self.on_done, None
        self.abort()
        if on_done is not None:
            status = self.parser.get_status_code() if self.headers_done else 0
            on_done(self.ctx, status, b"", exc)

    def expire(self, gen: int) -> None:
        """The request ``gen`` passed its deadline: a ``timeout``, if still unanswered."""
        if self.gen == gen and self.on_done is not None:
            self._fail(TimeoutError("no complete answer within the request timeout"))

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
        # requests out, in send order (so in deadline order): (deadline, conn, conn.gen)
        self._deadlines: deque[tuple[float, _Conn, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    # -- the pool ---------------------------------------------------------------------------
    def _release(self, conn: _Conn) -> None:
        if self._closing:
            conn.abort()
            return
        conn.idle = True
        self.idle.append(conn)
        if self.waiters:
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

    # -- deadlines: one timer for every request out --------------------------------------
    #
    # Why: a timer per request (``call_at`` + ``cancel``) is a measurable part of a request's
    # CPU at 20,000 req/s. Every request has the same timeout, so deadlines come in send
    # order: a queue, and one timer for its head (re-armed at least every PRUNE_S, which
    # also drops the entries of requests answered meanwhile, keeping the queue short).

    def _watch(self, loop: asyncio.AbstractEventLoop, deadline: float, conn: _Conn) -> None:
        self._deadlines.append((deadline, conn, conn.gen))
        if self._timer is None:
            self._timer = loop.call_at(min(deadline, loop.time() + PRUNE_S), self._expire_due)

    def _expire_due(self) -> None:
        """Time out the requests past their deadline; drop those answered; re-arm."""
        self._timer = None
        queue = self._deadlines
        loop = asyncio.get_running_loop()
        now = loop.time()
        while queue:
            deadline, conn, gen = queue[0]
            if conn.gen == gen and conn.on_done is not None:  # still out
                if deadline > now:
                    self._timer = loop.call_at(min(deadline, now + PRUNE_S), self._expire_due)
                    return
                conn.expire(gen)
            queue.popleft()

    def _take_idle(self) -> _Conn | None:
        idle = self.idle
        while idle:  # newest first: the one least likely to have been closed by the server
            conn = idle.pop()
            conn.idle = False
            if not conn.closed:
                return conn
        return None

    def _start(self, conn: _Conn, body: bytes, extra: bytes, on_done: OnDone, ctx: Any,
               deadline: float, loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        conn._begin()
        conn.gen += 1
        conn.on_done, conn.ctx = on_done, ctx
        transport = conn.transport
        assert transport is not None
        transport.write(b"%s%sContent-Length: %d\r\n\r\n%s" % (self.head, extra, len(body), body))
        self._watch(loop, deadline, conn)

    # -- one request ----------------------------------------------------------------------
    def send_now(self, body: bytes, extra: bytes, on_done: OnDone, ctx: Any) -> bool:
        """Send ``body`` on an idle kept-alive connection, without a coroutine: False when
        none is idle (then ``post``, which may connect or wait). ``on_done(ctx, status,
        body, error)`` is called once, from the event loop, when the request ends (answer,
        failure, timeout or ``cancel_all``). ``extra``: header lines (``header_lines``)."""
        conn = self._take_idle()
        if conn is None:
            return False
        loop = asyncio.get_running_loop()
        self._start(conn, body, extra, on_done, ctx, loop.time() + self.timeout_s, loop)
        return True

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send ``body``; the answer's ``(status, body)``, or an exception (module docstring)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        conn = self._take_idle() or await self._acquire(loop, deadline)
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._start(conn, body, header_lines(headers), _settle, fut, deadline, loop)
        try:
            return await fut
        finally:
            if conn.ctx is fut and conn.on_done is not None:  # cancelled: the connection is spoilt
                conn.on_done = None
                conn.abort()

    async def warm(self, n: int, timeout_s: float) -> int:
        """Open up to ``n`` connections at once into the idle pool; how many opened. Why:
        at a run's start every arrival finds no idle connection and connects, and at
        20,000/s the first ~0.1 s of connects (one at a time on the loop) lag the
        schedule by tens of ms and push hundreds of requests in flight; opened before
        the start instant, the first arrivals find them. A failure is left to the
        requests, which meet it and record it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        want = max(0, min(n, self.max_connections - self.n_conns))
        conns = await asyncio.gather(
            *(self._connect(loop, deadline) for _ in range(want)), return_exceptions=True
        )
        opened = [c for c in conns if isinstance(c, _Conn)]
        for conn in opened:
            if conn.closed:
                continue
            self._release(conn)
        return len(opened)

    def cancel_all(self) -> int:
        """End every request still out as cancelled (``asyncio.CancelledError``); how many."""
        cancelled = 0
        for _, conn, gen in list(self._deadlines):
            if conn.gen == gen and conn.on_done is not None:
                conn._fail(asyncio.CancelledError())
                cancelled += 1
        return cancelled

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.sleep(0)  # let connection_lost run


def header_lines(headers: dict[str, str] | None) -> bytes:
    """Extra request header lines, as sent after the fixed head."""
    if not headers:
        return b""
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
