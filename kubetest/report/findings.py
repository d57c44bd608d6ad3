"""Strengths, concerns and recommendations: each sentence derived from a measured number.

Read from a session's typed summary and results only (``kubetest.results``); the report
view (``report/view.py``) shows them, the Markdown report lists them.
"""

from __future__ import annotations

import math
from typing import Any

from kubetest.analysis.gateway_counters import counter_findings
from kubetest.analysis.verdicts import RATE_REQUIREMENT_PER_MIN, REQUIREMENTS, SUITE_PREFIX
from kubetest.results import StoredResult, Summary

#: Capacity keys holding the guide's recommendation texts (B1, B2).
CAPACITY_RECOMMENDATIONS = ("recommendation", "concurrency_recommendation")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def findings_lists(
    summary: Summary, results: dict[str, StoredResult], slo_p95_s: float
) -> tuple[list[str], list[str], list[str]]:
    """Strengths, concerns and recommendations, each derived from a measured number."""
    strengths: list[str] = []
    concerns: list[str] = []
    recs: list[str] = []
    slo_p95 = slo_p95_s
    for r in (req.as_dict() for req in summary.requirements):
        d, status = r.get("details", {}), r["status"]
        name = f"{r['id']} ({d.get('title', '')})"
        if r["id"].startswith(SUITE_PREFIX):
            _suite_findings(r, strengths, concerns, recs)
            continue
        if status == "PASS":
            extra = ""
            if r["unit"] == "s" and _num(r.get("measured")) is not None:
                margin = slo_p95 / max(r["measured"], 1e-9)
                extra = f": p95 {r['measured']:.3f} s, {margin:.0f}× under the SLO"
            strengths.append(f"{name} met{extra}.")
        elif status == "FAIL":
            concerns.append(
                f"{name} failed: measured {r.get('measured')!s} {r['unit']} "
                f"against {r.get('threshold')}."
            )
            recs.append(f"Investigate {r['id']} before a pilot; rerun its notebook after a fix.")
        elif status == "INCONCLUSIVE":
            why = "; ".join(d.get("reasons") or [d.get("reason", "")])
            concerns.append(f"{name} could not be decided: {why}.")
            recs.append(
                f"Rerun {REQUIREMENTS.get(r['id'], ('', r['id']))[1]} with the cause fixed."
            )
        elif status == "NOT_RUN" and r["id"] in REQUIREMENTS:
            recs.append(f"Measure {r['id']}: add its section to the params file.")
        errors = d.get("errors") or {}
        if errors:
            top = ", ".join(
                f"{k}: {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:3]
            )
            concerns.append(f"{r['id']}: request errors seen ({top}).")
    cap = summary.capacity
    rate = _num(cap.get("max_sustainable_rate_per_min"))
    if rate is not None:
        headroom = rate / RATE_REQUIREMENT_PER_MIN
        (strengths if headroom >= 1.5 else concerns).append(
            f"Alert capacity {rate:,.0f}/min: headroom {headroom:.1f}× the requirement."
        )
        if headroom < 1.5:
            recs.append(
                "Scale the analysers (or the LLM backend) before the pilot: headroom is under 1.5×."
            )
    recs += [str(cap[k]) for k in CAPACITY_RECOMMENDATIONS if cap.get(k)]
    if summary.generator.saturated:
        concerns.append(
            "The load generator was saturated: add generator workers (generator.workers) and rerun."
        )
    integ = summary.integrity
    if integ.get("lost"):
        concerns.append(f"{integ['lost']} accepted alerts were never handled (data loss).")
    mismatches = counter_findings({t: r.as_dict() for t, r in results.items()})
    concerns += [f"Gateway counters disagree with kubetest: {m}." for m in mismatches]
    if mismatches:
        recs.append(
            "Reconcile the gateway's counters with kubetest's counts before "
            "trusting either (see Data integrity: gateway counters)."
        )
    for test, result in sorted(results.items()):  # the RR follower's faults, one line each
        rem = result.remediation if isinstance(result.remediation, dict) else {}
        concerns += [
            f"{test}: RemediationRequest follower: {e}" for e in (rem.get("errors") or [])[:3]
        ]
    for test, pool in pool_reports(results):
        if pool.get("finding"):
            concerns.append(f"{test}: {pool['finding']}.")
            if pool.get("needed"):
                recs.append(
                    f"Give the alerts a larger workload pool (alerts.workloads."
                    f"create: {pool['needed']}) and rerun {test}."
                )
    return strengths, concerns, recs


def pool_reports(results: dict[str, StoredResult]) -> list[tuple[str, dict[str, Any]]]:
    """``(test, workload_pool)`` of every load and sweep phase that used a pool."""
    out: list[tuple[str, dict[str, Any]]] = []
    for test, result in sorted(results.items()):
        if isinstance(result.workload_pool, dict):
            out.append((test, result.workload_pool))
        for phase in result.phases_service or []:
            if isinstance(phase, dict) and isinstance(phase.get("workload_pool"), dict):
                out.append(
                    (f"{test} {phase.get('label') or phase.get('phase')}", phase["workload_pool"])
                )
    return out


def _suite_findings(
    r: dict[str, Any], strengths: list[str], concerns: list[str], recs: list[str]
) -> None:
    name, d = r["id"][len(SUITE_PREFIX) :], r.get("details", {})
    counts = d.get("counts") or {}
    why = "; ".join(d.get("reasons") or [])
    if r["status"] == "PASS":
        strengths.append(
            f"The service's own suite {name}: all {counts.get('passed', 0)} "
            f"tests passed ({counts.get('skipped', 0)} skipped)."
        )
    elif r["status"] == "FAIL":
        concerns.append(f"The service's own suite {name} FAILED: {why}.")
        log = (d.get("logs") or {}).get("stdout", "its log")
        recs.append(
            f"Fix the failing tests of suite {name} (log: {log}) and rerun it "
            "(kubetest run --only EXT)."
        )
    else:
        concerns.append(f"The service's own suite {name} decided nothing: {why}.")
        recs.append(f"Make suite {name} run and report results (go test -json or JUnit).")
