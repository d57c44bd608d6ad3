"""What a load run sends: ``LoadPlan``, its validation, and how long it is meant to last.

Its own module so that everything that runs or judges a plan (``run``, ``runner``,
``shard``, ``cluster``, ``judge``) imports it from below, never from each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from kubetest.engine.abort import AbortRule
from kubetest.engine.client import APIS, CLIENTS, MAX_BODY_BYTES
from kubetest.engine.pool import WorkloadScheduler
from kubetest.engine.records import RECORDS_MAX_PER_S
from kubetest.engine.schedule import planned_duration
from kubetest.errors import KubetestError
from kubetest.payloads import PayloadFactory
from kubetest.tls import TlsSettings


@dataclass
class LoadPlan:
    """What to send. Open loop: ``schedule`` (intended offsets, s). Closed loop:
    ``concurrency`` workers for ``duration_s``. The bearer token is read from
    ``os.environ[auth_token_env]`` when requests are sent and never stored."""

    url: str
    api: str = "webhook"
    mode: str = "open"
    schedule: np.ndarray | None = None
    concurrency: int = 0
    duration_s: float = 0.0
    timeout_s: float = 30.0
    max_in_flight: int = 10_000
    payload: PayloadFactory = field(
        default_factory=lambda: PayloadFactory(["high_memory", "high_cpu", "pod_crash"])
    )
    auth_token_env: str | None = None
    target_rate_per_s: float | None = None
    max_lag_s: float = 1.0  # an arrival this far behind schedule is recorded late, not sent
    tls: TlsSettings = field(default_factory=TlsSettings)  # the context is built per shard
    # the workloads alerts name (kubernaut: real Deployments); one process only (params)
    pool: WorkloadScheduler | None = None
    abort: AbortRule | None = None  # stop early on a windowed SLO breach (engine.abort)
    # stop once the phase's verdict is clear: any picklable object whose start() gives a
    # watch with answered(intended, done, accepted), due(now), check(now, pending_intended)
    # returning None or a decision with status and reason (analysis.search.DecisionRule)
    decide: Any = None
    max_body_bytes: int = MAX_BODY_BYTES  # bytes of an answer read; past it: ``oversized``
    client: str = CLIENTS[0]  # the HTTP client (``engine.transport``): fast or aiohttp
    # records a second above which they are sampled (None: all); the HDR log counts all
    records_max_per_s: float | None = RECORDS_MAX_PER_S
    hdr_interval_s: float = 1.0  # one HDR interval-log window (engine.hdrlog)


def check_plan(plan: LoadPlan) -> None:
    """Refuse a plan that cannot run, with a one-line reason, before anything is sent."""
    parts = urlsplit(plan.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KubetestError(f"load URL must be http(s)://host..., got {plan.url!r}")
    if plan.api not in APIS:
        raise KubetestError(f"api must be one of {', '.join(APIS)}, got {plan.api!r}")
    if plan.client not in CLIENTS:
        raise KubetestError(f"client must be one of {', '.join(CLIENTS)}, got {plan.client!r}")
    if plan.mode == "open":
        if plan.schedule is None:
            raise KubetestError("open-loop plan needs a schedule (kubetest.engine.schedule)")
        if len(plan.schedule) and np.any(np.diff(plan.schedule) < 0):
            raise KubetestError("schedule offsets must be sorted")
    elif plan.mode == "closed":
        if plan.concurrency <= 0 or plan.duration_s <= 0:
            raise KubetestError("closed-loop plan needs concurrency > 0 and duration_s > 0")
    else:
        raise KubetestError(f"mode must be 'open' or 'closed', got {plan.mode!r}")
    if plan.timeout_s <= 0 or plan.max_in_flight <= 0 or plan.max_lag_s <= 0:
        raise KubetestError("timeout_s, max_in_flight and max_lag_s must be > 0")
    if plan.hdr_interval_s <= 0 or (plan.records_max_per_s or 1) <= 0:
        raise KubetestError("hdr_interval_s and records_max_per_s must be > 0")
    if plan.auth_token_env and plan.auth_token_env not in os.environ:
        raise KubetestError(f"${plan.auth_token_env} (auth_token_env) is not set: export it")


def planned_s(plan: LoadPlan) -> float:
    """How long the plan is meant to run (s): a closed loop's duration, a schedule's span."""
    if plan.mode == "closed":
        return plan.duration_s
    assert plan.schedule is not None
    return planned_duration(plan.schedule, plan.target_rate_per_s)


def public_url(url: str) -> str:
    """``url`` as it may be shown and stored: no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
