"""The HTTP side of the engine: how an answer becomes an outcome, and the aiohttp session.

The outcome and error-class mapping here serves both load clients (``engine.transport``):
the default ``fast`` one (``engine.fastclient``: HTTP/1.1 on an asyncio Protocol with
httptools, ~3x aiohttp's rate per core, issue 21) and ``aiohttp`` (``make_session``).

Why aiohttp was chosen before it (by measurement on this machine, one core, loopback):

* httpx's own transport reached ~1,000 req/s at low concurrency, collapsed to ~190 req/s
  at 200 connections, and raised ConnectTimeout at 300 req/s open-loop against a 2 s
  server (600 requests in flight) - it would report its own collapse as target latency;
* aiohttp held 3,000 req/s with 6,000 in flight, p99 within 2 % of the truth; against
  nginx (1.5 KB body, lag p99 < 10 ms) 5,000 req/s on the default loop and 7,000 with
  uvloop, versus 2,500 for httpx over an aiohttp transport.

So the load path was aiohttp directly (uvloop when installed); httpx stays for
control-plane calls (health, metrics, action history) where a few requests per second
never stress it. Past any client's ceiling the backlog and socket count explode, so the
engine caps in-flight requests and connections (``TCPConnector(limit=max_in_flight)``)
and records what it could not send on time instead of queueing it (see ``shard``).

Outcomes (README "Pointing it at a real Kubernaut"): every answer maps to one of
``accepted | duplicate | rejected | throttled | failed``; success rates count
``accepted`` only. ``error`` is ``""`` for a 2xx exchange, else a class:

==============  =====================================================================
http_3xx/4xx/5xx  the target answered with that status family (429 is ``throttled``)
auth            401 or 403: the bearer token is missing, wrong or not allowed
alert_failed    a 207 result said this alert failed (the others may have succeeded)
refused         connection refused (nothing listening)
reset           connection reset or closed before a complete response
timeout         no complete answer within ``timeout_s`` (connect, send or read)
dns             the host name did not resolve
tls             TLS handshake / certificate failure
connect         another connect-time OS error (unreachable network, ...)
bad_response    not parseable as HTTP, or a body the API profile cannot read
oversized       the body passed ``max_body_bytes`` (announced or read): connection dropped
network         another OS-level error on an established connection
other           anything else (the first message is kept in the summary)
late            generator-side: not sent, it was more than ``max_lag_s`` behind schedule
dropped         generator-side: not sent, ``max_in_flight`` requests were already out
cancelled       generator-side: in flight when the run was interrupted
==============  =====================================================================

The three generator-side classes (``GENERATOR_ERRORS``) are recorded with outcome
``failed`` but say nothing about the target: summaries keep them out of the outcome
counts and the success rate, and count them in ``late_or_dropped`` / ``errors``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import ssl
from collections.abc import Iterable

import aiohttp

from kubetest.errors import (
    BadResponse,
    BodyTooLarge,
    HttpConnectError,
    KubetestError,
    ServerDisconnected,
)
from kubetest.secrets import scrub_then_cut
from kubetest.tls import TlsSettings, verify

#: API profiles (params ``target.api``).
APIS: tuple[str, ...] = ("webhook", "kubernaut", "kubernaut-legacy")

#: Load clients (params ``generator.client``; ``engine.transport``): the first is the default.
CLIENTS: tuple[str, ...] = ("fast", "aiohttp")

#: Error classes that describe the generator, not the target (see the module docstring).
GENERATOR_ERRORS: frozenset[str] = frozenset({"late", "dropped", "cancelled"})

USER_AGENT = "kubetest-workbook/0.1 (+load engine)"

#: Bytes of an answer the engine reads (params ``generator.max_body_bytes``): a service
#: answering gigabytes must not fill the generator's memory.
MAX_BODY_BYTES = 64 << 10


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """At most ``cap`` bytes of ``resp``'s body; ``BodyTooLarge`` (connection dropped) when
    it announces or sends more, so memory per request stays bounded whatever the target."""
    if resp.content_length is not None and resp.content_length > cap:
        resp.close()
        raise BodyTooLarge(f"answer announces {resp.content_length} bytes (cap {cap})")
    buf = bytearray()
    while True:
        chunk = await resp.content.read(cap + 1 - len(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > cap:
            resp.close()
            raise BodyTooLarge(f"answer body passed {cap} bytes")


def _http_error(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if 300 <= status < 400:
        return "http_3xx"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "bad_response"


#: kubernaut per-alert result statuses in a 207 body, numeric (HTTP codes) or words.
_RESULT_WORDS: dict[str, str] = {
    "created": "accepted",
    "accepted": "accepted",
    "success": "accepted",
    "ok": "accepted",
    "duplicate": "duplicate",
    "deduplicated": "duplicate",
    "rejected": "rejected",
    "skipped": "rejected",
    "ignored": "rejected",
    "throttled": "throttled",
    "rate_limited": "throttled",
    "failed": "failed",
    "error": "failed",
}


def _kubernaut_status(status: int) -> tuple[str, str] | None:
    return {
        201: ("accepted", ""),
        202: ("duplicate", ""),
        200: ("rejected", ""),
        429: ("throttled", "http_4xx"),
    }.get(status)


def classify_results(body: bytes) -> list[tuple[str, str]]:
    """Per-alert outcomes of a kubernaut 207 body (``{"results": [{"status": ...}, ...]}``).

    A result's ``status`` may be an HTTP code (201/202/200/429/...) or a word (created,
    duplicate, rejected, ...); an unreadable body or result is ``("failed", "bad_response")``.
    """
    try:
        results = json.loads(body)["results"]
        if not isinstance(results, list) or not results:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return [("failed", "bad_response")]
    out: list[tuple[str, str]] = []
    for item in results:
        status = item.get("status") if isinstance(item, dict) else None
        if isinstance(status, int) and not isinstance(status, bool):
            known = _kubernaut_status(status)
            if known is not None:
                out.append(known)
            elif 200 <= status < 300:
                out.append(("failed", "bad_response"))
            else:
                out.append(("failed", _http_error(status)))
        elif isinstance(status, str) and status.strip().lower() in _RESULT_WORDS:
            outcome = _RESULT_WORDS[status.strip().lower()]
            error = {"failed": "alert_failed", "throttled": "http_4xx"}.get(outcome, "")
            out.append((outcome, error))
        else:
            out.append(("failed", "bad_response"))
    return out


def classify(api: str, status: int, body: bytes) -> tuple[str, str]:
    """Map one HTTP answer to ``(outcome, error class)`` for an API profile.

    * every profile: 401/403 are ``("failed", "auth")``, 429 ``throttled``.
    * ``webhook``: any 2xx accepted; 429 throttled; else failed.
    * ``kubernaut``: 201 accepted, 202 duplicate, 200 rejected (unmanaged namespace), 429
      throttled; 207 is read per ``results[]`` and the request takes the outcome of the
      *first* result - kubetest posts one alert per request, so the first result is that
      alert's (``classify_results`` gives them all); other 2xx are ``bad_response``.
    * ``kubernaut-legacy``: 2xx accepted (``{"status":"success"}``; a JSON body whose
      ``status`` says otherwise is rejected), 429 throttled, 500 failed (per-alert cooldown).
    """
    if api == "webhook":
        if 200 <= status < 300:
            return "accepted", ""
    elif api == "kubernaut":
        if status == 207:
            return classify_results(body)[0]
        known = _kubernaut_status(status)
        if known is not None:
            return known
        if 200 <= status < 300:
            return "failed", "bad_response"
    elif api == "kubernaut-legacy":
        if 200 <= status < 300:
            return _legacy_2xx(body)
    else:
        raise ValueError(f"unknown api {api!r}; use one of {', '.join(APIS)}")
    if status == 429:
        return "throttled", "http_4xx"
    return "failed", _http_error(status)


def classify_all(api: str, status: int, body: bytes) -> list[tuple[str, str]]:
    """Every alert's ``(outcome, error)`` in one answer: a kubernaut 207's results one by
    one, else the request's single outcome (for requests that carry several alerts)."""
    if api == "kubernaut" and status == 207:
        return classify_results(body)
    return [classify(api, status, body)]


def problem_detail(body: bytes, limit: int = 200, secrets: Iterable[str] = ()) -> str:
    """One line from an error body: RFC 7807 ``title: detail``, ``{"error": ...}``, or
    the text itself, scrubbed of ``secrets`` (and the environment's) *before* it is cut to
    ``limit``, so a long token the service echoes leaves nothing; ``""`` when empty."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        parts = [str(doc[k]) for k in ("title", "detail") if doc.get(k)]
        text = ": ".join(parts) or str(doc.get("error") or doc.get("message") or "")
    else:
        text = body.decode("utf-8", "replace") if body else ""
    return scrub_then_cut(" ".join(text.split()), limit, secrets)


def _legacy_2xx(body: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return "accepted", ""  # the legacy service's 200 is the contract; the body is a courtesy
    word = doc.get("status") if isinstance(doc, dict) else None
    if isinstance(word, str) and word.lower() not in ("success", "ok", "accepted"):
        return "rejected", ""
    return "accepted", ""


def classify_exception(exc: BaseException) -> str:
    """The error class of a request that raised instead of answering."""
    if isinstance(exc, BodyTooLarge):
        return "oversized"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # aiohttp's timeouts subclass it
        return "timeout"
    if isinstance(exc, HttpConnectError):  # the fast client's: the OS or TLS error is its cause
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "tls"
        if isinstance(cause, socket.gaierror):
            return "dns"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        return "reset" if isinstance(cause, ConnectionResetError) else "connect"
    if isinstance(exc, ServerDisconnected):
        return "reset"
    if isinstance(exc, BadResponse):
        return "bad_response"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, socket.gaierror):
            return "dns"
        if isinstance(os_err, ConnectionRefusedError):
            return "refused"
        if isinstance(os_err, ConnectionResetError):
            return "reset"
        if isinstance(os_err, ssl.SSLError) or isinstance(exc, aiohttp.ClientSSLError):
            return "tls"
        return "connect"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return "reset"
    if isinstance(exc, aiohttp.ClientPayloadError):
        # a body cut short (connection closed mid-response) is a reset; garbled framing is not
        cause = exc.__cause__ or (exc.args[0] if exc.args else None)
        text = f"{exc} {cause!r}".lower()
        if "not completed" in text or "contentlength" in text or "connection" in text:
            return "reset"
        return "bad_response"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "bad_response"  # aiohttp's parser refused the status line or headers
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        code = getattr(exc, "errno", None)
        if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return "reset"
        if code == errno.ECONNREFUSED:
            return "refused"
        if code is None and "can not write request" in str(exc).lower():
            return "reset"  # aiohttp's word for a connection the server closed mid-write
        return "network"
    if isinstance(exc, aiohttp.ClientError):
        return "bad_response" if "invalid" in str(exc).lower() else "network"
    return "other"


def auth_header(auth_token_env: str | None) -> dict[str, str]:
    """``Authorization: Bearer <token>`` from the named environment variable (read now, so a
    rotated token is picked up); the value is never stored by the engine."""
    if not auth_token_env:
        return {}
    token = os.environ.get(auth_token_env)
    if token is None:
        raise KubetestError(f"${auth_token_env} (target.auth_token_env) is not set: export it")
    return {"Authorization": f"Bearer {token}"}


def make_session(
    max_connections: int, timeout_s: float, tls: TlsSettings | None = None
) -> aiohttp.ClientSession:
    """One session for a whole shard: pooled keep-alive connections, capped, with a total
    per-request timeout (connect + send + wait + read); HTTPS verified per ``tls``."""
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, ttl_dns_cache=300, ssl=verify(tls)
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        auto_decompress=True,
        raise_for_status=False,
        trust_env=False,  # load goes to the URL in the params, never through a stray proxy
    )
