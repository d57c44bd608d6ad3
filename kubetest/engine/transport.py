"""The one seam between a shard and an HTTP client (like httpx's transports).

A shard asks ``make_transport(plan, cap)`` for a ``Transport`` and calls ``post`` per
request: ``(status, body)`` back, or an exception that ``client.classify_exception`` maps
to an error class. Timing, the in-flight cap, late sends and records stay in ``shard``,
so both clients are measured exactly alike; only the wire differs:

* ``fast`` (``generator.client``, the default): ``engine.fastclient``, HTTP/1.1 on an
  asyncio Protocol with httptools (uvloop where available, see ``shard.new_event_loop``);
* ``aiohttp``: the aiohttp session of ``engine.client``, kept as a fallback and a peer.

``direct_client`` is the one place that decides whether an open-loop shard writes requests
itself (``engine.direct``: no task per request, the fast client only) or awaits ``post``.

An exception raised after the status line was read (a body past ``max_body_bytes``, cut
short, too slow) carries it as ``answer_status``, so the record keeps the status the
answer had (as the aiohttp path always recorded it) whichever client read it.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from kubetest.engine.client import CLIENTS, USER_AGENT, make_session, read_capped
from kubetest.engine.fastclient import FastClient
from kubetest.engine.plan import LoadPlan
from kubetest.tls import verify


class Transport(Protocol):
    """What a shard needs of a client."""

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """The aiohttp session (``client.make_session``) behind the ``Transport`` interface."""

    def __init__(self, plan: LoadPlan, max_connections: int) -> None:
        self.url = plan.url
        self.max_body_bytes = plan.max_body_bytes
        self.session = make_session(max_connections, plan.timeout_s, plan.tls)

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.post(
            self.url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            try:
                return resp.status, await read_capped(resp, self.max_body_bytes)
            except Exception as exc:
                exc.answer_status = resp.status  # type: ignore[attr-defined]
                raise

    async def close(self) -> None:
        await self.session.close()


def direct_client(transport: Transport, plan: LoadPlan) -> FastClient | None:
    """The client an open-loop shard may write requests with directly, without a task per
    request (``engine.direct``): the fast client, for plans without a workload pool (whose
    ``acquire``/``answered`` bracket each request in ``shard._request``); else None."""
    if isinstance(transport, FastClient) and plan.pool is None:
        return transport
    return None


def make_transport(plan: LoadPlan, max_connections: int) -> Transport:
    """The plan's client (``plan.client``), its pool capped at ``max_connections``."""
    if plan.client == "aiohttp":
        return AiohttpTransport(plan, max_connections)
    if plan.client != "fast":
        raise ValueError(f"client must be one of {', '.join(CLIENTS)}, got {plan.client!r}")
    context = verify(plan.tls)
    return FastClient(
        plan.url,
        max_connections=max_connections,
        timeout_s=plan.timeout_s,
        max_body_bytes=plan.max_body_bytes,
        ssl_context=context if isinstance(context, ssl.SSLContext) else None,
        user_agent=USER_AGENT,
    )
