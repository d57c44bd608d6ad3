"""A4 — Kubernetes actions (BR-PA-011, the guide's A3).

The guide counted HTTP 200 as "action succeeded". Here each action's alert is sent, and
the action is counted only when it is verified *executed*: ``verify: history`` reads the
service's action history for that alert's fingerprint; ``verify: kubernetes`` (the
``kubernaut`` profile with ``environment.kubeconfig``) follows the RemediationRequest
named in the 201 answer through the Kubernetes API and counts the action only when it
reached ``Completed``. Destructive actions against a real service need
``allow_destructive`` and are confined to the namespace allow-list.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from kubetest import control
from kubetest.actions import BR_MIN_ACTIONS, action_namespace, planned_actions
from kubetest.alerts import DESTRUCTIVE_ACTIONS, action_alert, webhook
from kubetest.analysis.integrity import ActionHistory
from kubetest.analysis.latency import proportion_ci
from kubetest.analysis.verdicts import REQUIREMENTS, Requirement, Status
from kubetest.checks import preflight_auth
from kubetest.engine.client import classify
from kubetest.engine.pool import WorkloadScheduler
from kubetest.errors import HistoryUnavailable
from kubetest.remediation import RemediationFollower
from kubetest.remediation import follower_from_params as _follower
from kubetest.remediation_result import COMPLETED, FollowResult, Signal
from kubetest.secrets import scrub_then_cut
from kubetest.tls import tls_problem, verify
from kubetest.workbook.context import TestContext, result_head
from kubetest.workbook.loadtest import connect_pool

BR_ID = "BR-PA-011"
MIN_ACTIONS = BR_MIN_ACTIONS
VERIFY_TIMEOUT_S = 60.0

JUDGED_ON = {
    "history": "action history: the alert's action executed, per alert fingerprint",
    "kubernetes": "Kubernetes API: the alert's RemediationRequest reached Completed",
    "none": "HTTP acceptance only (not execution)",
}


@dataclass
class A4Result:
    requirement: Requirement
    actions: pd.DataFrame


def plan_actions(ctx: TestContext) -> tuple[list[str], dict[str, str]]:
    """Actions to send, and those skipped with why (the destructive guard)."""
    return planned_actions(ctx.params, ctx.section)


def _namespace(ctx: TestContext) -> str:
    return action_namespace(ctx.params, ctx.section)


def _headers(ctx: TestContext) -> dict[str, str]:
    env = ctx.params.target.auth_token_env
    return {"Authorization": f"Bearer {os.environ[env]}"} if env and env in os.environ else {}


def _history(ctx: TestContext) -> ActionHistory:
    """The service's action history, read page by page from where it stood before A4
    sent anything: after a whole plan it holds thousands of entries, more than one
    control-plane answer may carry (``control.JSON_CAP``)."""
    target = ctx.params.target
    return ActionHistory(
        ctx.actions_url, _headers(ctx), target.timeout_s, verify(target.tls), proxy=target.proxy
    )


def _mark(history: ActionHistory) -> int | None:
    try:
        return history.mark()
    except (httpx.HTTPError, ValueError, HistoryUnavailable):
        return None  # read from the start, as a history without X-Total-Count is


def _kube_follower(
    ctx: TestContext, namespaces: list[str] | None
) -> tuple[RemediationFollower | None, list[str]]:
    """The follower for ``verify: kubernetes``, or the reasons it cannot run."""
    if ctx.params.target.api != "kubernaut":
        return None, [
            f"verify: kubernetes follows RemediationRequests, which target.api "
            f"{ctx.params.target.api} does not create: use target.api kubernaut"
        ]
    try:
        follower = _follower(ctx.params, namespaces, force=True)
    except Exception as exc:
        said = scrub_then_cut(f"{type(exc).__name__}: {exc}", 300)
        return None, [f"verify: kubernetes: cannot read the kubeconfig: {said}"]
    if follower is None:
        return None, ["verify: kubernetes needs environment.kubeconfig"]
    return follower.start(), []


def _answer(resp: httpx.Response) -> dict[str, Any]:
    """The RemediationRequest named in a kubernaut answer (empty for other profiles)."""
    try:
        doc = resp.json()
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        "remediation": str(doc.get("remediationRequestName") or ""),
        "remediation_namespace": str(doc.get("remediationRequestNamespace") or ""),
        "signal_fingerprint": str(doc.get("fingerprint") or ""),
    }


def run(ctx: TestContext) -> A4Result:
    sec = ctx.section
    started = datetime.now(UTC)
    preflight_auth(ctx.params, ctx.target_url)  # a refused token fails here, in one line
    actions, skipped = plan_actions(ctx)
    namespace = _namespace(ctx)
    rows: list[dict[str, Any]] = []
    base = int(time.time() * 1000) % 10**9  # fresh fingerprints for every run
    pool = ctx.pool()
    scheduler = WorkloadScheduler(pool.names, pool.namespace) if pool is not None else None
    # with a pool the controller namespace is learned from the first 201 (or given)
    watch = None if scheduler is not None or ctx.params.remediation.namespace else [namespace]
    follower, missing = _kube_follower(ctx, watch) if sec.verify == "kubernetes" else (None, [])
    if follower is not None and scheduler is not None:
        connect_pool(follower, scheduler)
    followed: FollowResult | None = None
    history = _history(ctx) if sec.verify == "history" else None
    since = _mark(history) if history is not None else None
    try:
        with control.client(timeout_s=ctx.params.target.timeout_s, headers=_headers(ctx),
                            verify=verify(ctx.params.target.tls),
                            proxy=ctx.params.target.proxy) as client:  # fmt: skip
            for i, action in enumerate(actions):
                workload = scheduler.acquire() if scheduler is not None else None
                alert = action_alert(action, base + i, namespace=namespace, workload=workload)
                t0, sent = time.monotonic(), time.time()
                answer: dict[str, Any] = {}
                try:
                    resp = client.post(ctx.target_url, json=webhook([alert]))
                    outcome, error = classify(ctx.params.target.api, resp.status_code, resp.content)
                    status = resp.status_code
                    answer = _answer(resp)
                except httpx.HTTPError as exc:
                    error = "tls" if tls_problem(exc) else control.error_class(exc)
                    outcome, status = "failed", 0
                if scheduler is not None and workload is not None:
                    scheduler.answered(workload, outcome, resp.content if status else b"")
                rows.append({"action": action, "fingerprint": alert.fingerprint,
                             "http_status": status, "outcome": outcome, "error": error,
                             "latency_s": time.monotonic() - t0, "sent_epoch": sent,
                             "destructive": action in DESTRUCTIVE_ACTIONS,
                             **answer})  # fmt: skip
            frame = pd.DataFrame(rows)
            timeout = sec.verify_timeout_s or VERIFY_TIMEOUT_S
            verified = _verify(history, since, frame, timeout) if history is not None else {}
        if follower is not None and len(frame):
            timeout = sec.verify_timeout_s or ctx.params.remediation.timeout_min * 60.0
            verified, followed = _verify_kubernetes(follower, frame, namespace, timeout)
    finally:
        if follower is not None:
            follower.stop()
        if history is not None:
            history.close()
    frame["verified"] = frame["fingerprint"].map(lambda f: verified.get(f, {}).get("status", ""))
    frame["reason"] = frame["fingerprint"].map(lambda f: verified.get(f, {}).get("reason", ""))
    frame["time_to_execution_s"] = [
        _time_to_execution(verified.get(fp, {}), sent)
        for fp, sent in zip(frame["fingerprint"], frame["sent_epoch"], strict=True)
    ]
    for action, why in skipped.items():
        frame.loc[len(frame)] = {
            "action": action,
            "outcome": "skipped",
            "error": why,
            "verified": "",
        }
    req = judge(
        frame, sec.verify, reasons=missing, remediation=followed, min_actions=sec.min_actions
    )
    ctx.save_result(
        {
            **result_head("A4 Kubernetes actions", started, complete=True),
            "requirements": [req.as_dict()],
            "actions": frame.astype(object).where(frame.notna(), None).to_dict(orient="records"),
            "remediation": followed.summary() if followed else None,
            "params": sec.model_dump(),
        }
    )
    return A4Result(req, frame)


def _time_to_execution(entry: dict[str, Any], sent_epoch: float) -> float | None:
    """From sending the alert to the service recording the action (history ``time``)."""
    try:
        done = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None
    return max(0.0, done - float(sent_epoch))


def _verify_kubernetes(
    follower: RemediationFollower, frame: pd.DataFrame, namespace: str, timeout_s: float
) -> tuple[dict[str, dict[str, Any]], FollowResult]:
    """Follow each accepted alert's RemediationRequest (by the name in its 201 answer,
    else its fingerprint) to a terminal phase; ``executed`` only for ``Completed``."""
    signals: dict[str, Signal] = {}
    for i, row in enumerate(frame[frame["outcome"] == "accepted"].to_dict("records")):
        signals[row["fingerprint"]] = Signal(
            i,
            float(row["sent_epoch"]),
            str(row.get("remediation_namespace") or namespace),
            name=str(row.get("remediation") or "") or None,
            fingerprint=str(row.get("signal_fingerprint") or "") or None,
        )
    result = follower.wait_for(list(signals.values()), timeout_s)
    by_seq = {f.signal.seq: f for f in result.followed}
    verified: dict[str, dict[str, Any]] = {}
    for fp, sig in signals.items():
        f = by_seq[sig.seq]
        phase = f.phase or "not found"
        verified[fp] = {
            "status": "executed" if phase == COMPLETED else phase,
            "reason": " > ".join(f.observation.phases)
            if f.observation
            else "no RemediationRequest seen",
        }
    return verified, result


def _verify(
    history: ActionHistory, since: int | None, frame: pd.DataFrame, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Poll the action history until every accepted alert shows up, or the timeout."""
    want = set(frame.loc[frame["outcome"] == "accepted", "fingerprint"]) if len(frame) else set()
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while want - set(found) and time.monotonic() < deadline:
        try:
            for entry in history.read(since):
                fp = entry.get("fingerprint")
                if fp in want:
                    found[fp] = entry
        except (httpx.HTTPError, ValueError, HistoryUnavailable):
            pass
        if want - set(found):
            time.sleep(0.5)
    return found


def judge(
    frame: pd.DataFrame,
    verify: str,
    *,
    reasons: list[str] | None = None,
    remediation: FollowResult | None = None,
    min_actions: int = MIN_ACTIONS,
) -> Requirement:
    """PASS when ≥ ``min_actions`` (BR-PA-011: 25) distinct actions were tested and ≥ 95 %
    were verified executed. A lowered ``min_actions`` (``a4_actions.min_actions``) is named
    in the criterion, so a verdict on the safe actions alone never reads as the guide's.

    ``reasons`` are prerequisites that failed (they make the verdict INCONCLUSIVE)."""
    tested = frame[frame["outcome"] != "skipped"]
    n = int(tested["action"].nunique())
    ok = tested["verified"] == "executed" if verify != "none" else tested["outcome"] == "accepted"
    executed = int(tested.loc[ok, "action"].nunique())
    rate = proportion_ci(executed, n) if n else None
    guarded = int(frame["error"].astype(str).str.startswith("destructive").sum())
    reasons = list(reasons or [])
    if verify == "none":
        reasons.append("verify: none counts HTTP acceptance only, not execution")
    if n < min_actions and guarded:
        reasons.append(
            f"only {n} actions tested (< {min_actions}): {guarded} destructive "
            "actions were held back by the guard (set allow_destructive, or "
            "judge the safe ones with a lowered a4_actions.min_actions)"
        )
    status: Status
    if reasons:
        status = "INCONCLUSIVE"
    else:
        status = "PASS" if n >= min_actions and rate and rate.value >= 0.95 else "FAIL"
    measured = rate.value * 100 if rate else None
    count = f"≥ {min_actions} actions"
    if min_actions < MIN_ACTIONS:
        count += f" (a4_actions.min_actions, lowered from BR-PA-011's {MIN_ACTIONS})"
    return Requirement(
        BR_ID, measured, "%", f"{count}, ≥ 95 % verified executed", status,
        {
            "title": REQUIREMENTS[BR_ID][0],
            "judged_on": JUDGED_ON[verify],
            "actions_tested": n, "actions_verified": executed, "min_actions": min_actions,
            "actions_skipped": int((frame["outcome"] == "skipped").sum()),
            "success_rate_ci": [rate.low, rate.high] if rate else None,
            "outcomes": tested["outcome"].value_counts().to_dict(),
            "failed_actions": sorted(set(tested.loc[~ok, "action"])),
            "samples": n, "reasons": reasons,
            **({"time_to_remediation": remediation.summary()} if remediation else {}),
        },
    )  # fmt: skip
