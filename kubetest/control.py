"""Control-plane HTTP (health, auth probe, metrics, action history, A4, checks, probes):
every httpx client that talks to the service is made here, so one policy covers them all.

A hostile or broken service must not be able to hold kubetest or fill its memory, so each
exchange has

* a **byte cap** on the (decoded) body: ``JSON_CAP`` (1 MiB) for JSON APIs and health,
  ``METRICS_CAP`` (16 MiB) for ``/metrics`` text; past it the connection is dropped and
  ``ResponseTooLarge`` raised (an announced Content-Length past the cap fails at once);
* a **total deadline** (``timeout_s`` from the first byte sent to the last read), not only
  httpx's per-read timeouts: a trickled or endless body raises ``DeadlineExceeded``.
  Each socket read is also clipped to the timeout, so a silent server cannot outlast it;
  sync clients check the deadline between body chunks, and a watchdog shuts the socket
  down at the deadline, so response *headers* trickled a byte at a time cannot hold a
  call either (each sync exchange opens its own connection, whose socket the watchdog
  learns from httpcore's ``trace`` hook); the async probes wait with ``wait_for``;
* one **proxy policy** (``target.proxy``): ``none`` (default) ignores ``HTTP(S)_PROXY`` so
  the bearer token only ever goes to the URL in the params, as the load engine does;
  ``env`` honours ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``.

Both errors subclass httpx's (``HTTPError``, ``TimeoutException``), so callers that catch
those keep working; ``error_class`` names them for tables (``oversized``, ``timeout``).
TLS stays ``kubetest.tls.verify(target.tls)``, passed in as ``verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Generic, Literal, TypeVar

import httpx

#: Body caps (bytes, decoded): JSON APIs and health answers; Prometheus text.
JSON_CAP = 1 << 20
METRICS_CAP = 16 << 20

Proxy = Literal["none", "env"]
PROXIES: tuple[str, ...] = ("none", "env")
Verify = ssl.SSLContext | bool


# These two stay here, outside ``kubetest.errors``: they derive from httpx's exceptions so
# that every caller's ``except httpx.HTTPError`` (and ``httpx.TimeoutException``) treats
# them like any other failed call. They describe a transport failure, never a user's
# mistake, and ``error_class`` turns them into a measurement (``oversized``, ``timeout``).
class ResponseTooLarge(httpx.HTTPError):
    """The answer's body passed the cap: the connection was dropped, nothing more read."""


class DeadlineExceeded(httpx.TimeoutException):
    """The whole exchange took longer than its total deadline (a trickle, an endless body)."""


def error_class(exc: BaseException) -> str:
    """A short class for a failed control-plane call (``oversized``, ``timeout``, ...)."""
    if isinstance(exc, ResponseTooLarge):
        return "oversized"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return type(exc).__name__


def _env_proxy(url: httpx.URL) -> str | None:
    if urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _clip(request: httpx.Request, left: float) -> None:
    timeouts = dict(request.extensions.get("timeout") or {})
    for key in ("connect", "read", "write", "pool"):
        value = timeouts.get(key)
        timeouts[key] = max(0.001, left if value is None else min(value, left))
    request.extensions["timeout"] = timeouts


def _announced(response: httpx.Response, cap: int) -> None:
    length = response.headers.get("content-length", "")
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    if length.isdigit() and int(length) > cap and not encoded:
        raise ResponseTooLarge(f"answer announces {int(length)} bytes (cap {cap})")


class _Bounded(httpx.SyncByteStream):
    def __init__(
        self, inner: httpx.Response, cap: int, deadline: float, timeout_s: float,
        watchdog: _Watchdog,
    ) -> None:  # fmt: skip
        self.inner, self.cap, self.deadline, self.timeout_s = inner, cap, deadline, timeout_s
        self.watchdog = watchdog

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        late = DeadlineExceeded(f"no complete answer within {self.timeout_s:g} s")
        try:
            for chunk in self.inner.stream:  # type: ignore[union-attr]
                seen += len(chunk)
                if seen > self.cap:
                    raise ResponseTooLarge(f"answer body passed {self.cap} bytes")
                if time.monotonic() > self.deadline:
                    raise late
                yield chunk
        except httpx.TransportError:
            if self.watchdog.fired:
                raise late from None
            raise
        finally:
            self.watchdog.cancel()

    def close(self) -> None:
        self.watchdog.cancel()
        self.inner.close()


class _AsyncBounded(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.Response, cap: int, deadline: float, timeout_s: float):
        self.inner, self.cap, self.deadline, self.timeout_s = inner, cap, deadline, timeout_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        chunks = self.inner.stream.__aiter__()  # type: ignore[union-attr]
        while True:
            left = self.deadline - time.monotonic()
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), max(0.001, left))
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded(f"no complete answer within {self.timeout_s:g} s") from None
            seen += len(chunk)
            if seen > self.cap:
                raise ResponseTooLarge(f"answer body passed {self.cap} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Watchdog:
    """Shuts the request's socket down when its deadline passes, so a blocking read of
    trickled headers returns (the socket comes from httpcore's ``trace`` extension)."""

    def __init__(self, request: httpx.Request, timeout_s: float) -> None:
        self.sock: socket.socket | None = None  # after start_tls, the TLS socket (it owns the fd)
        self.fired = False
        prior = request.extensions.get("trace")

        def trace(event: str, info: dict[str, Any]) -> None:
            if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
                sock = getattr(info.get("return_value"), "get_extra_info", lambda _: None)("socket")
                if isinstance(sock, socket.socket):
                    self.sock = sock
            if prior is not None:
                prior(event, info)

        request.extensions["trace"] = trace
        # a little after the deadline: a silent server's own read timeout is reported as such
        self.timer = threading.Timer(timeout_s + min(1.0, 0.1 * timeout_s + 0.05), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.timer.cancel()


_Inner = TypeVar("_Inner", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


class _Routed(Generic[_Inner]):
    """The settings of a bounded transport and the proxy policy: httpx's own transport
    (``kind``) direct, or one per proxy the environment names for a URL (``proxy="env"``)."""

    def __init__(
        self, kind: type[_Inner], *, verify: Verify, cap: int, timeout_s: float, proxy: Proxy,
        limits: httpx.Limits,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.verify, self.cap, self.timeout_s, self.proxy = verify, cap, timeout_s, proxy
        self.limits = limits
        self.direct = kind(verify=verify, trust_env=False, limits=limits)
        self.proxied: dict[str, _Inner] = {}

    def _inner(self, url: httpx.URL) -> _Inner:
        via = _env_proxy(url) if self.proxy == "env" else None
        if via is None:
            return self.direct
        if via not in self.proxied:
            self.proxied[via] = self.kind(
                verify=self.verify, proxy=via, trust_env=False, limits=self.limits
            )
        return self.proxied[via]


class BoundedTransport(_Routed[httpx.HTTPTransport], httpx.BaseTransport):
    """httpx's transport with a byte cap, a total deadline and the proxy policy."""

    def __init__(self, *, verify: Verify, cap: int, timeout_s: float, proxy: Proxy) -> None:
        # no keep-alive: each exchange connects afresh, so its watchdog knows its socket
        super().__init__(
            httpx.HTTPTransport, verify=verify, cap=cap, timeout_s=timeout_s, proxy=proxy,
            limits=httpx.Limits(max_keepalive_connections=0),
        )  # fmt: skip

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        _clip(request, self.timeout_s)
        watchdog = _Watchdog(request, self.timeout_s)
        try:
            response = self._inner(request.url).handle_request(request)
        except httpx.TransportError:
            watchdog.cancel()
            if watchdog.fired:  # the watchdog's shutdown, not the server, ended the read
                raise DeadlineExceeded(
                    f"no answer within {self.timeout_s:g} s", request=request
                ) from None
            raise
        if time.monotonic() > deadline:
            watchdog.cancel()
            response.close()
            raise DeadlineExceeded(f"no answer within {self.timeout_s:g} s", request=request)
        try:
            _announced(response, self.cap)
        except ResponseTooLarge:
            watchdog.cancel()
            response.close()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Bounded(response, self.cap, deadline, self.timeout_s, watchdog),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self.direct.close()
        for transport in self.proxied.values():
            transport.close()


class AsyncBoundedTransport(_Routed[httpx.AsyncHTTPTransport], httpx.AsyncBaseTransport):
    """The async twin of ``BoundedTransport``: the deadline covers the headers too."""

    def __init__(
        self, *, verify: Verify, cap: int, timeout_s: float, proxy: Proxy,
        limits: httpx.Limits | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            httpx.AsyncHTTPTransport, verify=verify, cap=cap, timeout_s=timeout_s, proxy=proxy,
            limits=limits or httpx.Limits(),
        )  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        _clip(request, self.timeout_s)
        try:
            response = await asyncio.wait_for(
                self._inner(request.url).handle_async_request(request), self.timeout_s
            )
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer within {self.timeout_s:g} s", request=request
            ) from None
        try:
            _announced(response, self.cap)
        except ResponseTooLarge:
            await response.aclose()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncBounded(response, self.cap, deadline, self.timeout_s),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.direct.aclose()
        for transport in self.proxied.values():
            await transport.aclose()


def client(
    *, timeout_s: float, verify: Verify = True, proxy: Proxy = "none", cap: int = JSON_CAP,
    headers: Mapping[str, str] | None = None, **kwargs: Any,
) -> httpx.Client:  # fmt: skip
    """An httpx client whose every exchange is capped and bounded by ``timeout_s`` total."""
    transport = BoundedTransport(verify=verify, cap=cap, timeout_s=timeout_s, proxy=proxy)
    return httpx.Client(timeout=timeout_s, headers=dict(headers or {}), transport=transport,
                        trust_env=proxy == "env", **kwargs)  # fmt: skip


def async_client(
    *, timeout_s: float, verify: Verify = True, proxy: Proxy = "none", cap: int = JSON_CAP,
    limits: httpx.Limits | None = None, headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:  # fmt: skip
    """The async twin of ``client`` (availability probes)."""
    transport = AsyncBoundedTransport(
        verify=verify, cap=cap, timeout_s=timeout_s, proxy=proxy, limits=limits
    )
    return httpx.AsyncClient(timeout=timeout_s, headers=dict(headers or {}),
                             transport=transport, trust_env=proxy == "env")  # fmt: skip


def request(
    method: str, url: str, *, timeout_s: float, verify: Verify = True, proxy: Proxy = "none",
    cap: int = JSON_CAP, **kwargs: Any,
) -> httpx.Response:  # fmt: skip
    """One bounded exchange (``httpx.request`` with the caps): the body is read."""
    with client(timeout_s=timeout_s, verify=verify, proxy=proxy, cap=cap) as c:
        return c.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)
