"""Health probes on a fixed schedule, each timestamped (control plane: httpx is fine here).

Probes are sent at absolute times ``start + k × interval`` so a slow answer does not shift
the rest of the schedule; each probe has its own timeout (at most the interval), so a hung
service shows up as failed probes, not as a hung prober.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd

from kubetest.aio import run_sync
from kubetest.tls import tls_problem


async def _probe_loop(
    url: str,
    duration_s: float,
    interval_s: float,
    timeout_s: float,
    on_probe: Callable[[dict[str, object]], None] | None,
    verify: ssl.SSLContext | bool = True,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=2)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, verify=verify) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = int(duration_s / interval_s) + 1
        tasks: list[asyncio.Task[dict[str, object]]] = []

        async def one(k: int) -> dict[str, object]:
            sent = loop.time() - start
            status, error = 0, ""
            try:
                resp = await client.get(url)
                status = resp.status_code
                if not resp.is_success:
                    error = f"http_{status // 100}xx"
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.ConnectError as exc:
                error = "tls" if tls_problem(exc) else "refused"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            row = {"k": k, "t_s": sent, "done_s": loop.time() - start, "ok": not error,
                   "status": status, "error": error, "epoch": time.time()}  # fmt: skip
            if on_probe:
                on_probe(row)
            return row

        for k in range(n):
            delay = start + k * interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k)))
        for task in tasks:
            rows.append(await task)
    return rows


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
    """Probe ``url`` every ``interval_s`` for ``duration_s``; one row per probe
    (``verify``: HTTPS verification, ``kubetest.tls.verify``)."""
    timeout = min(timeout_s or interval_s, max(interval_s, 0.05))
    fh = out_csv.open("w") if out_csv else None
    if fh:
        fh.write("k,t_s,done_s,ok,status,error,epoch\n")

    def record(row: dict[str, object]) -> None:
        if fh:
            fh.write(",".join(str(row[c]) for c in ("k", "t_s", "done_s", "ok", "status",
                                                    "error", "epoch")) + "\n")  # fmt: skip
            fh.flush()
        if on_probe:
            on_probe(row)

    try:
        rows = run_sync(_probe_loop(url, duration_s, interval_s, timeout, record, verify))
    finally:
        if fh:
            fh.close()
    return pd.DataFrame(rows)
