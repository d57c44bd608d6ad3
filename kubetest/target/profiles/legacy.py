"""The reference target's ``kubernaut-legacy`` profile: the gateway's earlier release,
``POST /alerts`` answered synchronously (200), with a per-pair cooldown (500) and the
target's rate limit (429)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetest.target.model import AlertIn
from kubetest.target.pipeline import admitted, executed, serve_alerts, webhook_alerts
from kubetest.target.state import TargetState


def legacy_routes(state: TargetState) -> tuple[Any, list[Route]]:
    """``POST /alerts`` as earlier releases answer it: synchronous, cooldown, rate limit."""
    config = state.config
    cooldown: dict[tuple[str, str], float] = {}

    def refuse(code: int, reason: str, **headers: str) -> Response:
        state.metrics.count("webhook", code)
        state.count_outcome("throttled" if code == 429 else "failed")
        return JSONResponse({"status": "error", "error": reason}, code, headers=headers or None)

    def in_cooldown(alerts: list[AlertIn]) -> str | None:
        """Check, then start, each alertname/namespace pair's cooldown (on arrival, so two
        concurrent alerts of one pair are decided deterministically)."""
        if config.cooldown_s <= 0:
            return None
        now = time.monotonic()
        if len(cooldown) > 10_000:
            for key in [k for k, until in cooldown.items() if until <= now]:
                del cooldown[key]
        for alert in alerts:
            key = (alert.alertname, alert.namespace)
            until = cooldown.get(key, 0.0)
            if until > now:
                return (
                    f"alert {alert.alertname} in namespace {alert.namespace or '-'} is in "
                    f"cooldown for another {until - now:.1f} s"
                )
        for alert in alerts:
            cooldown[(alert.alertname, alert.namespace)] = now + config.cooldown_s
        return None

    async def _handle(request: Request) -> Response:
        alerts = await webhook_alerts(state, request, refuse)
        if isinstance(alerts, Response):
            return alerts
        cooling = in_cooldown(alerts)
        if cooling:
            return refuse(500, cooling)
        results = await serve_alerts(state, alerts, lambda a: executed(state, a))
        state.metrics.count("webhook", 200)
        state.count_outcome("accepted", len(results))
        return JSONResponse({"status": "success", "processed": len(results), "results": results})

    return admitted(state, _handle, refuse), []
