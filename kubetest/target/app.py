"""The reference target as a Starlette ASGI app: an M/G/c queue behind a webhook.

An ``asyncio.Semaphore`` of ``workers`` slots *is* the queue: a webhook waits for a slot,
then holds it for one drawn service time per alert. Everything the analysis may want to
check against theory (queue depth, busy workers, waits, service times) is exported on
``/metrics``. The hot path does no logging and no I/O beyond the request itself.

The API profile (``TargetConfig.api``) decides the webhook's path and answers: this module
serves the guide's ``webhook`` profile and the target's own endpoints (health, action
history, outcomes, metrics); ``profiles`` serves ``kubernaut`` and ``kubernaut-legacy``.
What every profile shares is ``state`` (``TargetState``: queue, counters, history) and
``pipeline`` (body limits, admission, the queue itself). ``create_apps`` builds every
app of a target: for ``kubernaut`` the webhook, health, metrics and Kubernetes API apps,
each for its own port (``TargetApps``), around one state and one cluster (``cluster``,
``kube_api``).
Whatever the profile, the target counts each answer in kubetest's outcome vocabulary
(``/api/v1/outcomes`` and ``kubetest_target_outcomes_total``), so a test can check
kubetest's records against it.

Integrity faults (``TargetConfig.lose_rate`` / ``duplicate_rate``) silently drop an
accepted alert's history entry or record it twice, and count what they did
(``/api/v1/outcomes`` ``faults``, ``kubetest_target_faults_total``): the truth against
which ``kubetest.analysis.integrity`` is tested.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetest.errors import TargetConfigError
from kubetest.target.model import TargetConfig
from kubetest.target.pipeline import (
    admitted,
    error_response,
    executed,
    serve_alerts,
    token_required,
    webhook_alerts,
)
from kubetest.target.profiles import KubernautGateway, go_not_found, legacy_routes
from kubetest.target.state import TargetState

#: Liveness and readiness, as the real gateway serves them (all answer alike here).
_HEALTH_PATHS = ("/health", "/ready", "/healthz", "/readyz")

#: Pages bigger than this are serialised off the event loop, so a history read during a
#: load test does not stall the queue being measured.
_THREADED_PAGE = 2_000

# History entries are tuples (a dict per entry would cost ~4x the memory at 500k entries).
# ``remediation`` is the RemediationRequest name (kubernaut profile), else null; ``run`` the
# alert's ``kubetest_run`` label (null without), so a reader can tell one run's entries apart.
_FIELDS = (
    "alertname", "action", "namespace", "fingerprint", "status", "reason", "time", "seq",
    "remediation", "run",
)  # fmt: skip


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _render(start: int, entries: list[tuple[Any, ...]]) -> bytes:
    out = []
    for i, e in enumerate(entries, start):
        d = dict(zip(_FIELDS, e, strict=True))
        d["time"] = _iso(e[6])
        d["index"] = i
        out.append(d)
    return json.dumps(out, separators=(",", ":")).encode()


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
        return error_response(metrics, "webhook", code, reason, **headers)

    async def _webhook(request: Request) -> Response:
        alerts = await webhook_alerts(state, request, refuse)
        if isinstance(alerts, Response):
            return alerts
        results = await serve_alerts(state, alerts, lambda a: executed(state, a))
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
                return error_response(
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
        return JSONResponse(
            {"api": config.api, "outcomes": dict(state.outcomes), "faults": dict(state.faults)}
        )

    metrics_endpoint = token_required(state, "metrics", metrics_endpoint)
    hooks = [
        Route("/api/v1/actions", token_required(state, "actions", actions), methods=["GET"]),
        Route("/api/v1/outcomes", token_required(state, "outcomes", outcomes), methods=["GET"]),
    ]
    if config.api == "kubernaut":
        apps = _kubernaut_apps(state, hooks, metrics_endpoint, kube_token, clock)
    else:
        post: Any = admitted(state, _webhook, refuse)
        extra: list[Route] = []
        if config.api == "kubernaut-legacy":
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
    state: TargetState,
    hooks: list[Route],
    metrics_endpoint: Any,
    kube_token: str | None,
    clock: Any,
) -> TargetApps:
    """The gateway on the webhook port (plus the target's own hooks), health, metrics and
    the cluster's Kubernetes API on theirs."""
    import secrets

    from kubetest.target.cluster import Cluster
    from kubetest.target.kube_api import create_kube_app
    from kubetest.target.kube_rules import kubetest_identity, signal_source_identity

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
    health = Starlette(routes=gateway.health_routes(), exception_handlers=not_found)  # type: ignore[arg-type]
    metrics = Starlette(
        routes=[Route("/metrics", metrics_endpoint, methods=["GET"])], exception_handlers=not_found
    )  # type: ignore[arg-type]
    return TargetApps(
        webhook=webhook,
        state=state,
        health=health,
        metrics=metrics,
        kube=create_kube_app(cluster),
        cluster=cluster,
    )
