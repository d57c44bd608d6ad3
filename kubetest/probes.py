"""Probes on a fixed schedule, each timestamped (control plane: httpx is fine here).

Probes are sent at absolute times ``start + k × interval`` so a slow answer does not shift
the rest of the schedule; each probe has its own timeout, so a hung service shows up as
failed probes, not as a hung prober. Several endpoints (A3: the webhook and the health
URL) share one schedule, so their series line up probe for probe on one timeline.

An endpoint says how its answer is read (``ProbeTarget.read``): a health URL is up on any
2xx; a webhook is up when the profile calls the answer accepted or duplicate
(``kubetest.engine.client.classify``). 429 is ``throttled`` everywhere, and down.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pandas as pd

from kubetest import control
from kubetest.aio import run_sync
from kubetest.collector import quiet_gc
from kubetest.tls import tls_problem

#: One probe row's columns, in the CSV's order.
COLUMNS = ("k", "endpoint", "t_s", "done_s", "ok", "status", "outcome", "error", "epoch")

Reader = Callable[[int, bytes], tuple[str, str]]


def http_error(status: int) -> str:
    """The error class of a non-2xx status (the engine's vocabulary)."""
    if status in (401, 403):
        return "auth"
    return f"http_{status // 100}xx" if 300 <= status < 600 else "bad_response"


def health_answer(status: int, _body: bytes) -> tuple[str, str]:
    """``(outcome, error)`` of a health endpoint's answer: any 2xx is up."""
    if 200 <= status < 300:
        return "up", ""
    if status == 429:
        return "throttled", "http_4xx"
    return "failed", http_error(status)


@dataclass(frozen=True)
class ProbeTarget:
    """One endpoint on the shared schedule: how to ask, and which outcomes are up.

    ``body`` is the request body, or a function of the probe's number (a service that
    refuses repeats needs a new alert each time); ``headers`` may hold the bearer token,
    which is never recorded."""

    name: str
    url: str
    timeout_s: float
    method: str = "GET"
    body: bytes | Callable[[int], bytes] | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    read: Reader = health_answer
    up: frozenset[str] = frozenset({"up"})

    def content(self, k: int) -> bytes | None:
        return self.body(k) if callable(self.body) else self.body


async def _one(
    client: httpx.AsyncClient, target: ProbeTarget, k: int, start: float
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    sent = loop.time() - start
    status, outcome, error = 0, "failed", ""
    try:
        resp = await client.request(
            target.method, target.url, content=target.content(k), headers=dict(target.headers)
        )
        status = resp.status_code
        outcome, error = target.read(status, resp.content)
    except control.ResponseTooLarge:
        error = "oversized"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.ConnectError as exc:
        error = "tls" if tls_problem(exc) else "refused"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    ok = outcome in target.up
    if not ok and not error:
        error = outcome  # e.g. a kubernaut 200 "rejected": a 2xx that is not acceptance
    return {"k": k, "endpoint": target.name, "t_s": sent, "done_s": loop.time() - start,
            "ok": ok, "status": status, "outcome": outcome, "error": error,
            "epoch": time.time()}  # fmt: skip


def _limits(target: ProbeTarget, interval_s: float) -> httpx.Limits:
    """Enough connections for every probe that can be in flight (timeout / interval), so
    a slow answer never makes the next probe wait for a connection."""
    n = min(256, math.ceil(target.timeout_s / interval_s) + 2)
    return httpx.Limits(max_connections=n, max_keepalive_connections=min(n, 8))


async def _probe_loop(
    targets: list[ProbeTarget],
    duration_s: float,
    interval_s: float,
    on_probe: Callable[[dict[str, object]], None] | None,
    verify: ssl.SSLContext | bool,
    stop: threading.Event | None,
    proxy: control.Proxy = "none",
) -> list[dict[str, object]]:
    clients = [
        control.async_client(
            timeout_s=t.timeout_s, limits=_limits(t, interval_s), verify=verify, proxy=proxy
        )
        for t in targets
    ]
    tasks: list[asyncio.Task[dict[str, object]]] = []

    async def one(client: httpx.AsyncClient, target: ProbeTarget, k: int) -> dict[str, object]:
        row = await _one(client, target, k, start)
        if on_probe:
            on_probe(row)
        return row

    try:
        # httpx's first async request loads anyio's asyncio backend (30 ms warm, 0.3 s
        # seen on a busy machine's cold cache): done before the window, it cannot hold
        # the first probes and open a gap the availability budget has to absorb
        await anyio.sleep(0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(int(duration_s / interval_s) + 1):
            while (delay := start + k * interval_s - loop.time()) > 0:
                if stop is not None and stop.is_set():
                    break
                await asyncio.sleep(min(delay, 0.2))
            if stop is not None and stop.is_set():
                break
            pairs = zip(clients, targets, strict=True)
            tasks += [asyncio.create_task(one(c, t, k)) for c, t in pairs]
        return [await task for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        for client in clients:
            await client.aclose()


def probe_endpoints(
    targets: list[ProbeTarget],
    duration_s: float,
    interval_s: float,
    *,
    out_csv: Path | None = None,
    on_probe: Callable[[dict[str, object]], None] | None = None,
    verify: ssl.SSLContext | bool = True,
    stop: threading.Event | None = None,
    proxy: control.Proxy = "none",
) -> pd.DataFrame:
    """Probe every target every ``interval_s`` for ``duration_s`` (``stop``: end early);
    one row per probe and target (``COLUMNS``), streamed to ``out_csv`` as answers come
    (``verify``: HTTPS verification, ``kubetest.tls.verify``; ``proxy``: ``target.proxy``).
    Every probe's body is capped and its whole exchange bounded by its timeout
    (``kubetest.control``): a flood or a trickle is a failed probe, not a stuck one."""
    fh = out_csv.open("w") if out_csv else None
    if fh:
        fh.write(",".join(COLUMNS) + "\n")

    def record(row: dict[str, object]) -> None:
        if fh:
            fh.write(",".join(str(row[c]) for c in COLUMNS) + "\n")
            fh.flush()
        if on_probe:
            on_probe(row)

    try:
        # a full collection in a notebook kernel holds the probe loop 110-140 ms, longer
        # than 99.9 %'s budget in a short window (kubetest.collector); none before it
        # either: the window starts now, and today's garbage is reclaimed when it ends
        with quiet_gc(start_epoch=time.time()):
            rows = run_sync(
                _probe_loop(targets, duration_s, interval_s, record, verify, stop, proxy)
            )
    finally:
        if fh:
            fh.close()
    return pd.DataFrame(rows, columns=list(COLUMNS))


def probe(
    url: str,
    duration_s: float,
    interval_s: float,
    *,
    timeout_s: float | None = None,
    out_csv: Path | None = None,
    on_probe: Callable[[dict[str, object]], None] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> pd.DataFrame:
    """GET ``url`` every ``interval_s`` for ``duration_s``, up on 2xx; one row per probe.
    Each probe's timeout is at most the interval (``timeout_s`` can only shorten it)."""
    timeout = min(timeout_s or interval_s, max(interval_s, 0.05))
    target = ProbeTarget("health", url, timeout)
    return probe_endpoints(
        [target], duration_s, interval_s, out_csv=out_csv, on_probe=on_probe, verify=verify
    )
