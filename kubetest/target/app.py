"""The reference target as a Starlette ASGI app: an M/G/c queue behind a webhook.

An ``asyncio.Semaphore`` of ``workers`` slots *is* the queue: a webhook waits for a slot,
then holds it for one drawn service time per alert. Everything the analysis may want to
check against theory (queue depth, busy workers, waits, service times) is exported on
``/metrics``. The hot path does no logging and no I/O beyond the request itself.

The API profile (``TargetConfig.api``) decides the webhook's path and answers: this module
serves the guide's ``webhook`` profile and what every profile shares; ``profiles`` serves
``kubernaut`` and ``kubernaut-legacy``. ``create_apps`` builds every app of a target: for
``kubernaut`` the webhook, health, metrics and Kubernetes API apps, each for its own port
(``TargetApps``), around one state and one cluster (``cluster``, ``kube_api``).
Whatever the profile, the target counts each answer in kubetest's outcome vocabulary
(``/api/v1/outcomes`` and ``kubetest_target_outcomes_total``), so a test can check
kubetest's records against it.

Integrity faults (``TargetConfig.lose_rate`` / ``duplicate_rate``) silently drop an
accepted alert's history entry or record it twice, and count what they did
(``/api/v1/outcomes`` ``faults``, ``kubetest_target_faults_total``): the truth against
which ``kubetest.analysis.integrity`` is tested.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client import gc_collector as _gc
from prometheus_client import platform_collector as _platform
from prometheus_client import process_collector as _process
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetest.errors import TargetConfigError
from kubetest.target.model import (
    AlertIn,
    PayloadError,
    TargetConfig,
    check_action,
    make_sampler,
    parse_webhook,
)

#: Bound on the action history: about 250 bytes an entry, so ~125 MB when full.
HISTORY_MAX = 500_000

#: Liveness and readiness, as the real gateway serves them (all answer alike here).
_HEALTH_PATHS = ("/health", "/ready", "/healthz", "/readyz")

#: Pages bigger than this are serialised off the event loop, so a history read during a
#: load test does not stall the queue being measured.
_THREADED_PAGE = 2_000

_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    20.0,
    30.0,
    60.0,
)

EXECUTED, FAILED = "executed", "failed"

#: kubetest's outcome vocabulary (``kubetest.engine.records.OUTCOMES``), counted here too.
OUTCOMES: tuple[str, ...] = ("accepted", "duplicate", "rejected", "throttled", "failed")

# History entries are tuples (a dict per entry would cost ~4x the memory at 500k entries).
# ``remediation`` is the RemediationRequest name (kubernaut profile), else null; ``run`` the
# alert's ``kubetest_run`` label (null without), so a reader can tell one run's entries apart.
_FIELDS = (
    "alertname", "action", "namespace", "fingerprint", "status", "reason", "time", "seq",
    "remediation", "run",
)  # fmt: skip

#: What an integrity fault did to an accepted alert's history entry.
FAULTS: tuple[str, ...] = ("lost", "duplicated")


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


class _Metrics:
    """The app's own Prometheus registry (one per app, so tests and reloads never clash)."""

    def __init__(self, state: TargetState) -> None:
        cfg = state.config
        self.registry = reg = CollectorRegistry()
        _process.ProcessCollector(registry=reg)
        _platform.PlatformCollector(registry=reg)
        _gc.GCCollector(registry=reg)
        p = "kubetest_target_"
        self.requests = Counter(
            p + "http_requests",
            "HTTP requests answered, by handler and status code",
            ["handler", "code"],
            registry=reg,
        )
        self.alerts = Counter(
            p + "alerts_processed", "Alerts processed, by outcome", ["status"], registry=reg
        )
        self.executed = self.alerts.labels(EXECUTED)
        self.failed = self.alerts.labels(FAILED)
        outcomes = Counter(
            p + "outcomes",
            "Answers in kubetest's outcome vocabulary: per alert once processed, "
            "per request when the whole request was refused",
            ["outcome"],
            registry=reg,
        )
        self.outcome = {name: outcomes.labels(name) for name in OUTCOMES}
        faults = Counter(
            p + "faults",
            "Accepted alerts whose history entry an injected fault lost or duplicated",
            ["kind"],
            registry=reg,
        )
        self.fault = {name: faults.labels(name) for name in FAULTS}
        self.service = Histogram(
            p + "service_seconds",
            "Time a worker spent on one alert",
            registry=reg,
            buckets=_SECONDS_BUCKETS,
        )
        self.queue_wait = Histogram(
            p + "queue_wait_seconds",
            "Time a webhook waited for a free worker",
            registry=reg,
            buckets=_SECONDS_BUCKETS,
        )
        gauges: tuple[tuple[str, str, Any], ...] = (
            ("in_flight_requests", "Webhook requests being handled", lambda: state.in_flight),
            ("queue_depth", "Webhook requests waiting for a worker", lambda: state.waiting),
            ("busy_workers", "Workers holding a webhook", lambda: state.busy),
            ("workers", "Configured worker slots (c)", lambda: cfg.workers),
            ("service_ms", "Configured mean service time per alert", lambda: cfg.service_ms),
            ("error_rate", "Configured injected 500 probability", lambda: cfg.error_rate),
            ("lose_rate", "Configured share of accepted alerts lost", lambda: cfg.lose_rate),
            ("duplicate_rate", "Configured share of accepted alerts recorded twice",
             lambda: cfg.duplicate_rate),
            ("outage", "1 during an injected outage window", lambda: float(state.outage() > 0)),
            ("uptime_seconds", "Seconds since app start", lambda: state.elapsed()),
            ("actions_recorded", "Action history entries ever recorded", lambda: state.recorded),
        )
        for name, doc, fn in gauges:
            Gauge(p + name, doc, registry=reg).set_function(fn)
        Info(p + "model", "Service-time model", registry=reg).info(
            {"service_dist": cfg.service_dist, "lognormal_sigma": str(cfg.lognormal_sigma),
             "api": cfg.api}
        )  # fmt: skip
        self._by_code: dict[tuple[str, int], Any] = {}

    def count(self, handler: str, code: int) -> None:
        child = self._by_code.get((handler, code))
        if child is None:
            child = self._by_code[(handler, code)] = self.requests.labels(handler, str(code))
        child.inc()


def _expected_auth(env_name: str | None) -> str | None:
    """The ``Authorization`` value to expect, read from the named env var at start."""
    if not env_name:
        return None
    token = os.environ.get(env_name)
    if not token:
        raise TargetConfigError(f"auth_token_env: ${env_name} is not set: export the token first")
    return f"Bearer {token}"


class TokenBucket:
    """``rate`` requests per second, bursts up to one second's worth (at least one)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class TargetState:
    """Mutable state of one app: the queue, the counters and the action history."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        #: Monotonic app start: outage windows are measured from here.
        self.started = time.monotonic()
        self.started_epoch = time.time()
        self.in_flight = 0
        self.waiting = 0
        self.busy = 0
        self.recorded = 0
        self.history: deque[tuple[Any, ...]] = deque(maxlen=HISTORY_MAX)
        seed = config.seed
        self.draw = make_sampler(config, random.Random(seed))
        self._error_random = random.Random(None if seed is None else seed + 1).random
        self._fault_random = random.Random(None if seed is None else seed + 2).random
        self.faults = dict.fromkeys(FAULTS, 0)
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None
        self._outages = bool(config.outages)
        self._expected_auth = _expected_auth(config.auth_token_env)
        rate = config.rate_limit_per_s
        self._bucket = TokenBucket(rate) if rate is not None else None
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.metrics = _Metrics(self)
        self.cluster: Any = None  # kubernaut: kubetest.target.cluster.Cluster
        self.kube_token: str | None = None  # kubernaut: the kube API's token for kubetest

    def gate(self, request: Request) -> tuple[int, str] | None:
        """Refusals before the body is read: (401, why) without the bearer token; (429, why)
        above the in-flight limit or the rate limit; ``None`` to go on."""
        refused = self.auth_refusal(request)
        if refused is not None:
            return 401, refused
        limit = self.config.concurrency_limit
        if limit is not None and self.in_flight > limit:
            return 429, f"too many requests in flight (maxConcurrentRequests {limit})"
        if self._bucket is not None and not self._bucket.take():
            return 429, f"rate limit of {self.config.rate_limit_per_s:g} requests/s exceeded"
        return None

    def auth_refusal(self, request: Request) -> str | None:
        """Why ``request`` lacks the bearer token (when one is set); ``None`` when it has it."""
        if self._expected_auth is None:
            return None
        header = request.headers.get("authorization")
        if header is None:
            return "missing bearer token: send Authorization: Bearer <token>"
        if not hmac.compare_digest(header.encode(), self._expected_auth.encode()):
            return "invalid bearer token: authentication failed"
        return None

    def count_outcome(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` answers of one outcome (the JSON endpoint and the metric agree)."""
        self.outcomes[outcome] += n
        self.metrics.outcome[outcome].inc(n)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def outage(self) -> float:
        """Seconds left in the current outage window, 0.0 outside any."""
        return self.config.outage_remaining(self.elapsed()) if self._outages else 0.0

    def inject_error(self) -> bool:
        rate = self.config.error_rate
        return rate > 0.0 and self._error_random() < rate

    def fault_copies(self) -> int:
        """How many history entries an accepted alert gets: 1, or 0 (lost) / 2 (duplicated)
        under an injected fault, counted in ``faults``."""
        cfg = self.config
        if not (cfg.lose_rate or cfg.duplicate_rate):
            return 1
        u = self._fault_random()
        kind = "lost" if u < cfg.lose_rate else (
            "duplicated" if u < cfg.lose_rate + cfg.duplicate_rate else None)
        if kind is None:
            return 1
        self.faults[kind] += 1
        self.metrics.fault[kind].inc()
        return 0 if kind == "lost" else 2

    def slots(self) -> asyncio.Semaphore:
        """The worker semaphore of the running loop (a test client may run several loops)."""
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem = asyncio.Semaphore(self.config.workers)
            self._sem_loop = loop
        return self._sem

    def record(self, entry: tuple[Any, ...]) -> None:
        self.history.append(entry)
        self.recorded += 1

    def page(self, since: int, limit: int | None) -> tuple[int, list[tuple[Any, ...]]]:
        """History entries with absolute index >= ``since``: (index of the first, entries)."""
        first = self.recorded - len(self.history)
        start = max(since, first)
        offset = start - first
        stop = None if limit is None else offset + limit
        return start, list(islice(self.history, offset, stop))


def _render(start: int, entries: list[tuple[Any, ...]]) -> bytes:
    out = []
    for i, e in enumerate(entries, start):
        d = dict(zip(_FIELDS, e, strict=True))
        d["time"] = _iso(e[6])
        d["index"] = i
        out.append(d)
    return json.dumps(out, separators=(",", ":")).encode()


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it grows past ``limit`` (a lying Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(metrics: _Metrics, handler: str, code: int, reason: str, **headers: str) -> Response:
    metrics.count(handler, code)
    return JSONResponse({"error": reason}, code, headers=headers or None)


async def serve_alerts(state: TargetState, alerts: list[AlertIn], handle: Any) -> list[Any]:
    """The queue: wait for a worker, then one drawn service time per alert, then
    ``handle(alert)`` (the profile's decision for it); their results in order."""
    metrics = state.metrics
    monotonic = time.monotonic
    queued = monotonic()
    state.waiting += 1
    waiting = True
    results = []
    try:
        async with state.slots():
            state.waiting -= 1
            waiting = False
            state.busy += 1
            try:
                t0 = monotonic()
                metrics.queue_wait.observe(t0 - queued)
                for alert in alerts:
                    await asyncio.sleep(state.draw())
                    t1 = monotonic()
                    metrics.service.observe(t1 - t0)
                    t0 = t1
                    results.append(handle(alert))
            finally:
                state.busy -= 1
    finally:
        if waiting:  # cancelled while queued
            state.waiting -= 1
    return results


def execute_action(
    state: TargetState, alert: AlertIn, remediation: str | None = None, copies: int | None = None,
    *, failure: str | None = None,
) -> Any:
    """Run (record) the alert's action: executed, or failed with the reason.

    ``copies``: history entries to write (default: ``state.fault_copies()``, 1 unless a
    fault is injected); a second copy names its RemediationRequest ``<name>-dup``.
    ``failure``: the action failed for this reason (kubernaut: its RemediationRequest failed).
    """
    metrics = state.metrics
    reason = failure or check_action(alert.action)
    status = EXECUTED if reason is None else FAILED
    (metrics.executed if reason is None else metrics.failed).inc()
    if copies is None:
        copies = state.fault_copies()
    run = alert.labels.get("kubetest_run")
    for i in range(copies):
        name = remediation if i == 0 or remediation is None else f"{remediation}-dup{i}"
        state.record(
            (alert.alertname, alert.action, alert.namespace, alert.fingerprint, status, reason,
             time.time(), alert.seq, name, run)
        )  # fmt: skip
    return status, reason


async def read_alerts(
    state: TargetState, request: Request, handler: str, error: Any
) -> list[AlertIn] | Response:
    """The webhook's alerts, or the refusal (413 / 400) built by ``error(code, reason)``."""
    max_body = state.config.body_limit
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        return error(413, f"body: {length} bytes exceed the limit of {max_body}: send "
                     "fewer alerts per webhook")
    try:
        body = await _read_body(request, max_body)
    except ClientDisconnect:
        state.metrics.count(handler, 499)
        return Response(status_code=400)
    if body is None:
        return error(413, f"body: exceeds the limit of {max_body} bytes: send fewer alerts "
                     "per webhook")
    try:
        return parse_webhook(body, state.config.max_alerts)
    except PayloadError as exc:
        return error(exc.status, exc.reason)


def token_required(state: TargetState, name: str, endpoint: Any) -> Any:
    """``endpoint`` answering 401 without the bearer token, when one is set: the target's
    actions, outcomes and metrics are not for whoever can reach its port. Health and
    readiness stay open, as the real gateway's probe server (:8081) is."""

    async def handler(request: Request) -> Response:
        refused = state.auth_refusal(request)
        if refused is not None:
            return _error(state.metrics, name, 401, refused)
        return await endpoint(request)

    return handler


def admitted(state: TargetState, handle: Any, refuse: Any) -> Any:
    """A webhook handler for any API profile: counted in flight while it runs, and refused
    first during an injected outage (503) or by the gate (auth, 429 above the limit)."""

    async def handler(request: Request) -> Response:
        state.in_flight += 1
        try:
            remaining = state.outage()
            if remaining:
                return refuse(503, "service unavailable: injected outage window",
                              **{"Retry-After": str(math.ceil(remaining))})  # fmt: skip
            gate = state.gate(request)
            if gate is not None:
                code, reason = gate
                return refuse(code, reason, **({"Retry-After": "1"} if code == 429 else {}))
            return await handle(request)
        finally:
            state.in_flight -= 1

    return handler


@dataclass
class TargetApps:
    """One target's ASGI apps, sharing one state: ``webhook`` for every profile; for
    ``kubernaut`` also ``health`` (``/healthz``, ``/readyz``), ``metrics`` (``/metrics``)
    and ``kube`` (the cluster's Kubernetes API), each served on its own port as the real
    gateway serves them; ``None`` for the other profiles (their webhook app holds
    ``/health`` and ``/metrics``)."""

    webhook: Starlette
    state: TargetState
    health: Starlette | None = None
    metrics: Starlette | None = None
    kube: Starlette | None = None
    cluster: Any = None  # kubetest.target.cluster.Cluster (kubernaut)

    def listeners(self) -> list[tuple[str, Starlette]]:
        """(name, app) of every port to serve, the webhook first."""
        named = [("webhook", self.webhook), ("health", self.health),
                 ("metrics", self.metrics), ("kube", self.kube)]  # fmt: skip
        return [(name, app) for name, app in named if app is not None]


#: The environment variable that carries the kube API's token for kubetest into the
#: target (set by ``EmbeddedTarget``; never on a command line).
KUBE_TOKEN_ENV = "KUBETEST_TARGET_KUBE_TOKEN"


def create_app(config: TargetConfig) -> Starlette:
    """A fresh app (own state, own metrics registry) for ``config``; started now. For the
    kubernaut profile this is the webhook port's app; ``app.state.apps`` holds the others
    (``create_apps``)."""
    return create_apps(config).webhook


def create_apps(
    config: TargetConfig, *, kube_token: str | None = None, clock: Any = None
) -> TargetApps:
    """Every app of a fresh target for ``config``. ``kube_token``: the kube API's token for
    kubetest (default: ``$KUBETEST_TARGET_KUBE_TOKEN``, else a random one, in
    ``apps.state.kube_token``); ``clock``: the cluster's (tests)."""
    state = TargetState(config)
    metrics = state.metrics

    def refuse(code: int, reason: str, **headers: str) -> Response:
        """A refused webhook: counted as ``throttled`` (429) or ``failed``."""
        state.count_outcome("throttled" if code == 429 else "failed")
        return _error(metrics, "webhook", code, reason, **headers)

    async def _webhook(request: Request) -> Response:
        alerts = await read_alerts(state, request, "webhook", refuse)
        if isinstance(alerts, Response):
            return alerts
        if state.inject_error():
            return refuse(500, f"injected failure (error_rate={config.error_rate})")

        def handle(alert: AlertIn) -> dict[str, Any]:
            status, reason = execute_action(state, alert)
            return {"fingerprint": alert.fingerprint, "action": alert.action,
                    "status": status, "reason": reason}  # fmt: skip

        results = await serve_alerts(state, alerts, handle)
        metrics.count("webhook", 200)
        state.count_outcome("accepted", len(results))
        return JSONResponse({"status": "success", "processed": len(results), "results": results})

    async def health(request: Request) -> Response:
        remaining = state.outage()
        if remaining:
            metrics.count("health", 503)
            return JSONResponse(
                {"status": "unavailable", "error": "injected outage window"},
                503,
                headers={"Retry-After": str(math.ceil(remaining))},
            )
        metrics.count("health", 200)
        return JSONResponse({"status": "ok"})

    async def actions(request: Request) -> Response:
        params: dict[str, int | None] = {"since": 0, "limit": None}
        for key in params:
            raw = request.query_params.get(key)
            if raw is None:
                continue
            if not raw.isdigit():
                return _error(
                    metrics, "actions", 400, f"{key}: must be an integer >= 0, got {raw!r}"
                )
            params[key] = int(raw)
        if state.cluster is not None:
            state.cluster.advance()  # RemediationRequests due at Executing record theirs
        start, entries = state.page(params["since"] or 0, params["limit"])
        if len(entries) > _THREADED_PAGE:
            body = await run_in_threadpool(_render, start, entries)
        else:
            body = _render(start, entries)
        metrics.count("actions", 200)
        headers = {"X-Total-Count": str(state.recorded), "X-First-Index": str(start)}
        return Response(body, 200, headers=headers, media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        metrics.count("metrics", 200)
        return Response(generate_latest(metrics.registry), 200, media_type=CONTENT_TYPE_LATEST)

    async def outcomes(request: Request) -> Response:
        metrics.count("outcomes", 200)
        return JSONResponse({"api": config.api, "outcomes": dict(state.outcomes),
                             "faults": dict(state.faults)})  # fmt: skip

    metrics_endpoint = token_required(state, "metrics", metrics_endpoint)
    hooks = [Route("/api/v1/actions", token_required(state, "actions", actions), methods=["GET"]),
             Route("/api/v1/outcomes", token_required(state, "outcomes", outcomes),
                   methods=["GET"])]  # fmt: skip
    if config.api == "kubernaut":
        apps = _kubernaut_apps(state, hooks, metrics_endpoint, kube_token, clock)
    else:
        post: Any = admitted(state, _webhook, refuse)
        extra: list[Route] = []
        if config.api == "kubernaut-legacy":
            from kubetest.target.profiles import legacy_routes

            post, extra = legacy_routes(state)
        webhook = Starlette(
            routes=[
                Route(config.webhook_path, post, methods=["POST"]),
                *extra,
                *(Route(path, health, methods=["GET"]) for path in _HEALTH_PATHS),
                *hooks,
                Route("/metrics", metrics_endpoint, methods=["GET"]),
            ]
        )
        apps = TargetApps(webhook=webhook, state=state)
    for app in (apps.webhook, apps.health, apps.metrics):
        if app is not None:
            app.state.target = state
            app.state.apps = apps
    return apps


def _kubernaut_apps(
    state: TargetState, hooks: list[Route], metrics_endpoint: Any, kube_token: str | None,
    clock: Any,
) -> TargetApps:
    """The gateway on the webhook port (plus the target's own hooks), health, metrics and
    the cluster's Kubernetes API on theirs."""
    import secrets

    from kubetest.target.cluster import Cluster, kubetest_identity, signal_source_identity
    from kubetest.target.kube_api import create_kube_app
    from kubetest.target.profiles import KubernautGateway, go_not_found

    config = state.config
    token = kube_token or os.environ.get(KUBE_TOKEN_ENV) or secrets.token_urlsafe(24)
    cluster = Cluster(config, **({"clock": clock} if clock is not None else {}))
    cluster.add_token(token, kubetest_identity(config.kube_denied))
    state.cluster = cluster
    state.kube_token = token
    gateway = KubernautGateway(state, cluster)
    if gateway.signal_token is not None:
        if gateway.signal_token == token:
            raise TargetConfigError(
                f"auth_token_env: ${config.auth_token_env} holds the kube API's own "
                "token: give the signal source a token of its own"
            )
        source = signal_source_identity(cluster.controller_namespace)
        cluster.add_token(gateway.signal_token, source)
    not_found = {404: go_not_found, 405: go_not_found}
    webhook = Starlette(
        routes=[Route(config.webhook_path, gateway.handle, methods=["POST"]), *hooks],
        exception_handlers=not_found,  # type: ignore[arg-type]
    )
    health = Starlette(routes=gateway.health_routes(),
                       exception_handlers=not_found)  # type: ignore[arg-type]
    metrics = Starlette(routes=[Route("/metrics", metrics_endpoint, methods=["GET"])],
                        exception_handlers=not_found)  # type: ignore[arg-type]
    return TargetApps(webhook=webhook, state=state, health=health, metrics=metrics,
                      kube=create_kube_app(cluster), cluster=cluster)
