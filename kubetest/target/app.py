"""The reference target as a Starlette ASGI app: an M/G/c queue behind a webhook.

An ``asyncio.Semaphore`` of ``workers`` slots *is* the queue: a webhook waits for a slot,
then holds it for one drawn service time per alert. Everything the analysis may want to
check against theory (queue depth, busy workers, waits, service times) is exported on
``/metrics``. The hot path does no logging and no I/O beyond the request itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import deque
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

from kubetest.target.model import (
    PayloadError,
    TargetConfig,
    check_action,
    make_sampler,
    parse_webhook,
)

#: Bound on the action history: about 250 bytes an entry, so ~125 MB when full.
HISTORY_MAX = 500_000

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

# History entries are tuples (a dict per entry would cost ~4x the memory at 500k entries).
_FIELDS = ("alertname", "action", "namespace", "fingerprint", "status", "reason", "time", "seq")


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
            ("outage", "1 during an injected outage window", lambda: float(state.outage() > 0)),
            ("uptime_seconds", "Seconds since app start", lambda: state.elapsed()),
            ("actions_recorded", "Action history entries ever recorded", lambda: state.recorded),
        )
        for name, doc, fn in gauges:
            Gauge(p + name, doc, registry=reg).set_function(fn)
        Info(p + "model", "Service-time model", registry=reg).info(
            {"service_dist": cfg.service_dist, "lognormal_sigma": str(cfg.lognormal_sigma)}
        )
        self._by_code: dict[tuple[str, int], Any] = {}

    def count(self, handler: str, code: int) -> None:
        child = self._by_code.get((handler, code))
        if child is None:
            child = self._by_code[(handler, code)] = self.requests.labels(handler, str(code))
        child.inc()


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
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None
        self._outages = bool(config.outages)
        self.metrics = _Metrics(self)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def outage(self) -> float:
        """Seconds left in the current outage window, 0.0 outside any."""
        return self.config.outage_remaining(self.elapsed()) if self._outages else 0.0

    def inject_error(self) -> bool:
        rate = self.config.error_rate
        return rate > 0.0 and self._error_random() < rate

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


def create_app(config: TargetConfig) -> Starlette:
    """A fresh app (own state, own metrics registry) for ``config``; started now."""
    state = TargetState(config)
    metrics = state.metrics
    max_body = config.max_body_bytes
    max_alerts = config.max_alerts
    draw = state.draw
    monotonic = time.monotonic
    sleep = asyncio.sleep

    async def webhook(request: Request) -> Response:
        state.in_flight += 1
        try:
            return await _webhook(request)
        finally:
            state.in_flight -= 1

    async def _webhook(request: Request) -> Response:
        remaining = state.outage()
        if remaining:
            return _error(
                metrics,
                "webhook",
                503,
                "service unavailable: injected outage window",
                **{"Retry-After": str(math.ceil(remaining))},
            )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return _error(
                metrics, "webhook", 413, f"body: {length} bytes exceed the limit of {max_body}"
            )
        try:
            body = await _read_body(request, max_body)
        except ClientDisconnect:
            metrics.count("webhook", 499)
            return Response(status_code=400)
        if body is None:
            return _error(metrics, "webhook", 413, f"body: exceeds the limit of {max_body} bytes")
        try:
            alerts = parse_webhook(body, max_alerts)
        except PayloadError as exc:
            return _error(metrics, "webhook", exc.status, exc.reason)
        if state.inject_error():
            return _error(
                metrics, "webhook", 500, f"injected failure (error_rate={config.error_rate})"
            )

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
                        await sleep(draw())
                        t1 = monotonic()
                        metrics.service.observe(t1 - t0)
                        t0 = t1
                        reason = check_action(alert.action)
                        status = EXECUTED if reason is None else FAILED
                        (metrics.executed if reason is None else metrics.failed).inc()
                        state.record(
                            (
                                alert.alertname,
                                alert.action,
                                alert.namespace,
                                alert.fingerprint,
                                status,
                                reason,
                                time.time(),
                                alert.seq,
                            )
                        )
                        results.append(
                            {
                                "fingerprint": alert.fingerprint,
                                "action": alert.action,
                                "status": status,
                                "reason": reason,
                            }
                        )
                finally:
                    state.busy -= 1
        finally:
            if waiting:  # cancelled while queued
                state.waiting -= 1
        metrics.count("webhook", 200)
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

    app = Starlette(
        routes=[
            Route("/webhook/prometheus", webhook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/api/v1/actions", actions, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )
    app.state.target = state
    return app
