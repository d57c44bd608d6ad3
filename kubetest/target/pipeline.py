"""What every API profile's webhook shares: reading the body within its limit and
parsing its alerts, the admission in front (outage, token, in-flight and rate limits),
the queue itself (``serve_alerts``: a worker slot, then one drawn service time per
alert), and recording each alert's action in the history (``execute_action``)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from kubetest.target.model import AlertIn, PayloadError, check_action, parse_webhook
from kubetest.target.state import EXECUTED, FAILED, TargetMetrics, TargetState


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it grows past ``limit`` (a lying Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(
    metrics: TargetMetrics, handler: str, code: int, reason: str, **headers: str
) -> Response:
    """A refusal as the target's own endpoints answer it (``{"error": reason}``), counted."""
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
    state: TargetState,
    alert: AlertIn,
    remediation: str | None = None,
    copies: int | None = None,
    *,
    failure: str | None = None,
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
        return error(
            413,
            f"body: {length} bytes exceed the limit of {max_body}: send fewer alerts per webhook",
        )
    try:
        body = await read_body(request, max_body)
    except ClientDisconnect:
        state.metrics.count(handler, 499)
        return Response(status_code=400)
    if body is None:
        return error(
            413, f"body: exceeds the limit of {max_body} bytes: send fewer alerts per webhook"
        )
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
            return error_response(state.metrics, name, 401, refused)
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


async def webhook_alerts(state: TargetState, request: Request, refuse: Any) -> Any:
    """The alerts of a ``webhook`` or ``kubernaut-legacy`` request, or its refusal built by
    ``refuse(code, reason)``: the body's (413 / 400), then an injected failure (500)."""
    alerts = await read_alerts(state, request, "webhook", refuse)
    if isinstance(alerts, Response) or not state.inject_error():
        return alerts
    return refuse(500, f"injected failure (error_rate={state.config.error_rate})")


def executed(state: TargetState, alert: AlertIn) -> dict[str, Any]:
    """Run the alert's action (``execute_action``): its entry in a webhook's ``results``."""
    status, reason = execute_action(state, alert)
    return {"fingerprint": alert.fingerprint, "action": alert.action,
            "status": status, "reason": reason}  # fmt: skip
