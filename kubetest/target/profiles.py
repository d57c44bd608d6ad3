"""The reference target's ``kubernaut`` and ``kubernaut-legacy`` profiles.

So that the whole ``kubernaut`` profile of the workbook runs on a fresh machine, the
target answers as the real services do (DESIGN.md "Services behind the URL"): the current
gateway's 201/202/200 per alert, 207 for several, deduplication within a window, RFC 7807
errors, 429 above its in-flight limit and refusal of alerts from the future; the earlier
release's synchronous 200, per-pair cooldown (500) and rate limit (429). The queue behind
both is the same M/G/c model as the guide's profile, so capacity figures keep their truth.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetest.target.app import (
    TargetState,
    admitted,
    execute_action,
    read_alerts,
    serve_alerts,
)
from kubetest.target.model import AlertIn, parse_rfc3339, signal_fingerprint

#: Created RemediationRequests kept for ``/api/v1/remediations`` (labels included).
REMEDIATIONS_MAX = 100_000

#: Replay window of an ``X-Timestamp`` header (the gateway's 5 minutes).
TIMESTAMP_MAX_AGE_S = 300.0

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

PROBLEM_JSON = "application/problem+json"


def problem(
    state: TargetState, code: int, detail: str, instance: str, **headers: str
) -> Response:
    """An RFC 7807 error, counted as ``throttled`` (429) or ``failed``."""
    state.metrics.count("webhook", code)
    state.count_outcome("throttled" if code == 429 else "failed")
    title = _TITLES.get(code, "Error")
    body = {
        "type": "https://kubernaut.ai/problems/" + title.lower().replace(" ", "-"),
        "title": title,
        "status": code,
        "detail": detail,
        "instance": instance,
    }
    return JSONResponse(body, code, headers=headers or None, media_type=PROBLEM_JSON)


class Deduplicator:
    """Created signals by fingerprint, each for ``window_s``: a repeat within it is a
    duplicate of the same RemediationRequest (the real gateway: while it is not terminal)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.active: dict[str, list[Any]] = {}  # fingerprint -> [name, expiry, occurrences]
        self._expiries: deque[tuple[float, str]] = deque()
        self.created = 0

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expiry, fp = self._expiries.popleft()
            entry = self.active.get(fp)
            if entry is not None and entry[1] <= now:
                del self.active[fp]

    def lookup(self, fp: str, now: float) -> list[Any] | None:
        self._expire(now)
        return self.active.get(fp)

    def create(self, fp: str, now: float) -> str:
        self.created += 1
        name = f"rr-{fp[:12]}-{self.created:06x}"
        if self.window_s > 0:
            self.active[fp] = [name, now + self.window_s, 1]
            self._expiries.append((now + self.window_s, fp))
        return name


def _future_alert(alerts: list[AlertIn], tolerance_s: float) -> str | None:
    """The refusal reason when an alert's ``startsAt`` lies beyond now + tolerance."""
    limit = time.time() + tolerance_s
    for i, alert in enumerate(alerts):
        if alert.starts_at is None:
            continue
        ts = parse_rfc3339(alert.starts_at)
        if ts is None:
            return f"alerts[{i}].startsAt: not an RFC 3339 time: {alert.starts_at!r}"
        if ts > limit:
            return (
                f"alerts[{i}].startsAt {alert.starts_at} is in the future "
                f"(tolerance {tolerance_s:g} s): possible clock skew"
            )
    return None


def _bad_timestamp(header: str | None) -> str | None:
    """The refusal reason for an ``X-Timestamp`` header (Unix seconds) out of its window."""
    if header is None:
        return None
    try:
        ts = int(header)
    except ValueError:
        return "X-Timestamp: invalid timestamp format (Unix seconds expected)"
    age = time.time() - ts
    if age > TIMESTAMP_MAX_AGE_S:
        return "X-Timestamp: timestamp too old: possible replay attack"
    if age < -120:
        return "X-Timestamp: timestamp in future: possible clock skew"
    return None


def kubernaut_routes(state: TargetState) -> tuple[Any, list[Route]]:
    """``POST /api/v1/signals/prometheus`` as the current gateway answers it, and
    ``GET /api/v1/remediations``: the RemediationRequests it would have created (name,
    namespace, fingerprint, alert labels as ``signalLabels``, creation time), paged with
    ``since``/``limit`` like the action history, for tests that mirror them into a
    stand-in Kubernetes API."""
    config = state.config
    path = config.webhook_path
    dedup = Deduplicator(config.dedup_window_s)
    managed = frozenset(config.managed_namespaces)
    created: deque[dict[str, Any]] = deque(maxlen=REMEDIATIONS_MAX)
    appended = [0]  # RemediationRequests ever listed (faults make it differ from dedup's)

    def refuse(code: int, reason: str, **headers: str) -> Response:
        return problem(state, code, reason, path, **headers)

    def decide(alert: AlertIn) -> dict[str, Any]:
        fp = signal_fingerprint(alert)
        namespace = alert.namespace or "default"
        if managed and namespace not in managed:
            return {"status": "rejected", "fingerprint": fp,
                    "rejection": {"reason": "UnmanagedNamespace",
                                  "message": f"namespace {namespace!r} is not managed "
                                             "by kubernaut"}}  # fmt: skip
        now = time.monotonic()
        entry = dedup.lookup(fp, now)
        if entry is not None:
            entry[2] += 1
            return {"status": "duplicate", "duplicate": True, "fingerprint": fp,
                    "message": "signal already being remediated",
                    "remediationRequestName": entry[0],
                    "remediationRequestNamespace": namespace,
                    "metadata": {"occurrenceCount": entry[2]}}  # fmt: skip
        name = dedup.create(fp, now)
        copies = state.fault_copies()  # an injected fault: no RemediationRequest, or two
        execute_action(state, alert, name, copies)
        for i in range(copies):
            created.append({"name": name if i == 0 else f"{name}-dup{i}", "namespace": namespace,
                            "fingerprint": fp, "signalName": alert.alertname,
                            "signalLabels": alert.labels, "created": time.time()})  # fmt: skip
            appended[0] += 1
        return {"status": "created", "duplicate": False, "fingerprint": fp,
                "message": "RemediationRequest CRD created successfully",
                "remediationRequestName": name,
                "remediationRequestNamespace": namespace}  # fmt: skip

    async def _handle(request: Request) -> Response:
        stale = _bad_timestamp(request.headers.get("x-timestamp"))
        if stale:
            return refuse(400, stale)
        alerts = await read_alerts(state, request, "webhook", refuse)
        if isinstance(alerts, Response):
            return alerts
        future = _future_alert(alerts, config.future_tolerance_s)
        if future:
            return refuse(400, future)
        if state.inject_error():
            return refuse(500, f"injected failure (error_rate={config.error_rate})")
        results = await serve_alerts(state, alerts, decide)
        words = [r["status"] for r in results]
        for word, outcome in (("created", "accepted"), ("duplicate", "duplicate"),
                              ("rejected", "rejected")):  # fmt: skip
            if n := words.count(word):
                state.count_outcome(outcome, n)
        if len(results) == 1:
            code = {"created": 201, "duplicate": 202, "rejected": 200}[words[0]]
            state.metrics.count("webhook", code)
            return JSONResponse(results[0], code)
        state.metrics.count("webhook", 207)
        summary = {
            "total": len(results),
            "created": words.count("created"),
            "deduplicated": words.count("duplicate"),
            "rejected": words.count("rejected"),
            "failed": 0,
        }
        return JSONResponse({"results": results, "summary": summary}, 207)

    async def remediations(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
            limit = int(request.query_params.get("limit", str(REMEDIATIONS_MAX)))
        except ValueError:
            return JSONResponse({"error": "since and limit must be integers"}, 400)
        first = appended[0] - len(created)
        start = max(since, first)
        page = list(islice(created, start - first, start - first + max(0, limit)))
        items = [{**item, "index": i} for i, item in enumerate(page, start)]
        return JSONResponse(items, headers={"X-Total-Count": str(appended[0])})

    remediations_route = Route("/api/v1/remediations", remediations, methods=["GET"])
    return admitted(state, _handle, refuse), [remediations_route]


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

    def handle(alert: AlertIn) -> dict[str, Any]:
        status, reason = execute_action(state, alert)
        return {"fingerprint": alert.fingerprint, "action": alert.action,
                "status": status, "reason": reason}  # fmt: skip

    async def _handle(request: Request) -> Response:
        alerts = await read_alerts(state, request, "webhook", refuse)
        if isinstance(alerts, Response):
            return alerts
        if state.inject_error():
            return refuse(500, f"injected failure (error_rate={config.error_rate})")
        cooling = in_cooldown(alerts)
        if cooling:
            return refuse(500, cooling)
        results = await serve_alerts(state, alerts, handle)
        state.metrics.count("webhook", 200)
        state.count_outcome("accepted", len(results))
        return JSONResponse({"status": "success", "processed": len(results), "results": results})

    return admitted(state, _handle, refuse), []
