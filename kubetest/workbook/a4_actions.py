"""A4 — Kubernetes actions (BR-PA-011, the guide's A3).

The guide counted HTTP 200 as "action succeeded". Here each action's alert is sent, and
the action is counted only when the service's action history shows it *executed* for
that alert's fingerprint. Destructive actions against a real service need
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

from kubetest.alerts import ACTIONS, DESTRUCTIVE_ACTIONS, action_alert, webhook
from kubetest.analysis.latency import proportion_ci
from kubetest.analysis.verdicts import REQUIREMENTS, Requirement, Status
from kubetest.engine.client import classify
from kubetest.workbook.context import TestContext

BR_ID = "BR-PA-011"
MIN_ACTIONS = 25
VERIFY_TIMEOUT_S = 60.0


@dataclass
class A4Result:
    requirement: Requirement
    actions: pd.DataFrame


def plan_actions(ctx: TestContext) -> tuple[list[str], dict[str, str]]:
    """Actions to send, and those skipped with why (the destructive guard)."""
    sec = ctx.section
    wanted = list(ACTIONS) if sec.actions == "all" else list(sec.actions)
    unknown = [a for a in wanted if a not in ACTIONS]
    skipped = {a: "unknown action" for a in unknown}
    guarded = not ctx.params.target.is_embedded and not sec.allow_destructive
    for a in wanted:
        if a in DESTRUCTIVE_ACTIONS and guarded:
            skipped[a] = "destructive: set a4_actions.allow_destructive to run it"
    return [a for a in wanted if a not in skipped], skipped


def _headers(ctx: TestContext) -> dict[str, str]:
    env = ctx.params.target.auth_token_env
    return {"Authorization": f"Bearer {os.environ[env]}"} if env and env in os.environ else {}


def _history(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    resp = client.get(url)
    resp.raise_for_status()
    data = resp.json()
    return data if isinstance(data, list) else data.get("items", [])


def run(ctx: TestContext) -> A4Result:
    sec = ctx.section
    started = datetime.now(UTC)
    actions, skipped = plan_actions(ctx)
    namespace = sec.namespaces[0]
    rows: list[dict[str, Any]] = []
    base = int(time.time() * 1000) % 10**9  # fresh fingerprints for every run
    with httpx.Client(timeout=ctx.params.target.timeout_s, headers=_headers(ctx)) as client:
        for i, action in enumerate(actions):
            alert = action_alert(action, base + i, namespace=namespace)
            t0 = time.monotonic()
            try:
                resp = client.post(ctx.target_url, json=webhook([alert]))
                outcome, error = classify(ctx.params.target.api, resp.status_code, resp.content)
                status = resp.status_code
            except httpx.HTTPError as exc:
                outcome, error, status = "failed", type(exc).__name__, 0
            rows.append({"action": action, "fingerprint": alert.fingerprint, "http_status": status,
                         "outcome": outcome, "error": error, "latency_s": time.monotonic() - t0,
                         "destructive": action in DESTRUCTIVE_ACTIONS})  # fmt: skip
        frame = pd.DataFrame(rows)
        verified = _verify(client, ctx, frame) if sec.verify == "history" else {}
    frame["verified"] = frame["fingerprint"].map(lambda f: verified.get(f, {}).get("status", ""))
    frame["reason"] = frame["fingerprint"].map(lambda f: verified.get(f, {}).get("reason", ""))
    for action, why in skipped.items():
        frame.loc[len(frame)] = {
            "action": action,
            "outcome": "skipped",
            "error": why,
            "verified": "",
        }
    req = judge(frame, sec.verify)
    ctx.save_result(
        {
            "title": "A4 Kubernetes actions",
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "complete": True,
            "requirements": [req.as_dict()],
            "actions": frame.fillna("").to_dict(orient="records"),
            "params": sec.model_dump(),
        }
    )
    return A4Result(req, frame)


def _verify(
    client: httpx.Client, ctx: TestContext, frame: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Poll the action history until every accepted alert shows up, or the timeout."""
    want = set(frame.loc[frame["outcome"] == "accepted", "fingerprint"])
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + VERIFY_TIMEOUT_S
    while want - set(found) and time.monotonic() < deadline:
        try:
            for entry in _history(client, ctx.actions_url):
                fp = entry.get("fingerprint")
                if fp in want:
                    found[fp] = entry
        except (httpx.HTTPError, ValueError):
            pass
        if want - set(found):
            time.sleep(0.5)
    return found


def judge(frame: pd.DataFrame, verify: str) -> Requirement:
    """PASS when ≥ 25 distinct actions were tested and ≥ 95 % were verified executed."""
    tested = frame[frame["outcome"] != "skipped"]
    n = int(tested["action"].nunique())
    ok = tested["verified"] == "executed" if verify != "none" else tested["outcome"] == "accepted"
    executed = int(tested.loc[ok, "action"].nunique())
    rate = proportion_ci(executed, n) if n else None
    guarded = int(frame["error"].astype(str).str.startswith("destructive").sum())
    reasons: list[str] = []
    if verify == "none":
        reasons.append("verify: none counts HTTP acceptance only, not execution")
    elif verify == "kubernetes":
        reasons.append("verify: kubernetes is not supported yet: use verify: history")
    if n < MIN_ACTIONS and guarded:
        reasons.append(f"only {n} actions tested (< {MIN_ACTIONS}): {guarded} destructive "
                       "actions were held back by the guard")  # fmt: skip
    status: Status
    if reasons:
        status = "INCONCLUSIVE"
    else:
        status = "PASS" if n >= MIN_ACTIONS and rate and rate.value >= 0.95 else "FAIL"
    measured = rate.value * 100 if rate else None
    return Requirement(
        BR_ID, measured, "%", f"≥ {MIN_ACTIONS} actions, ≥ 95 % verified executed", status,
        {
            "title": REQUIREMENTS[BR_ID][0],
            "judged_on": f"action history ({verify}): executed per alert fingerprint",
            "actions_tested": n, "actions_verified": executed,
            "actions_skipped": int((frame["outcome"] == "skipped").sum()),
            "success_rate_ci": [rate.low, rate.high] if rate else None,
            "outcomes": tested["outcome"].value_counts().to_dict(),
            "failed_actions": sorted(set(tested.loc[~ok, "action"])),
            "samples": n, "reasons": reasons,
        },
    )  # fmt: skip
