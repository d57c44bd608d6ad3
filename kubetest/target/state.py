"""The reference target's mutable state, shared by every API profile: the M/G/c queue's
counters and worker slots, the bearer token and rate limit at its door, the injected
errors, outages and integrity faults, kubetest's outcome counts, the action history, and
the Prometheus registry that exports them all (``kubetest_target_*``).

``app`` builds the apps around one ``TargetState``; ``pipeline`` and the profiles
(``profiles``) read and count through it.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import random
import time
from collections import deque
from itertools import islice
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import gc_collector as _gc
from prometheus_client import platform_collector as _platform
from prometheus_client import process_collector as _process
from starlette.requests import Request

from kubetest.errors import TargetConfigError
from kubetest.target.model import TargetConfig, make_sampler

#: Bound on the action history: about 250 bytes an entry, so ~125 MB when full.
HISTORY_MAX = 500_000

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

#: What an integrity fault did to an accepted alert's history entry.
FAULTS: tuple[str, ...] = ("lost", "duplicated")


class TargetMetrics:
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
            (
                "duplicate_rate",
                "Configured share of accepted alerts recorded twice",
                lambda: cfg.duplicate_rate,
            ),
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
        self.metrics = TargetMetrics(self)
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
        kind = (
            "lost"
            if u < cfg.lose_rate
            else ("duplicated" if u < cfg.lose_rate + cfg.duplicate_rate else None)
        )
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
