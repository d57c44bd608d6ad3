"""Business-requirement verdicts, the confidence rating and the GO / NO-GO decision.

Verdicts are data (``Requirement``), never strings grepped out of logs. The decision rule
is deliberately simple and printed in the report:

* GO only when every critical BR ran and PASSed and the generator never saturated;
* a BR is INCONCLUSIVE when the data cannot decide it (too few samples, the generator
  was the bottleneck, the run was cut short);
* confidence (0-100) starts at 100 and loses points for what weakens the evidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kubetest.analysis.latency import LatencySummary

Status = Literal["PASS", "FAIL", "NOT_RUN", "INCONCLUSIVE"]

#: The guide's critical requirements, in report order: id -> (title, test key, unit).
REQUIREMENTS: dict[str, tuple[str, str, str]] = {
    "BR-PA-003": ("Alert response time (p95)", "A1", "s"),
    "BR-PA-004": ("100 concurrent requests", "A2", "s"),
    "BR-PA-001": ("Availability", "A3", "%"),
    "BR-PA-011": ("Kubernetes actions executed", "A4", "%"),
}

#: Fewer accepted samples than this and a p95 says little: INCONCLUSIVE.
MIN_SAMPLES = 20

#: Confidence penalties (points off 100), shown in the report beside the rule.
PENALTIES: dict[str, int] = {
    "not_run": 25,
    "inconclusive": 25,
    "ci_straddles_threshold": 10,
    "generator_saturated": 30,
    "incomplete_session": 20,
}


@dataclass
class Requirement:
    """One row of ``summary.json["requirements"]``."""

    id: str
    measured: float | None
    unit: str
    threshold: str
    status: Status
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["measured"], float) and not math.isfinite(d["measured"]):
            d["measured"] = None
        return d


def not_run(br_id: str, reason: str = "test not selected in params") -> Requirement:
    title, _test, unit = REQUIREMENTS[br_id]
    return Requirement(br_id, None, unit, "", "NOT_RUN", {"title": title, "reason": reason})


def latency_requirement(
    br_id: str,
    summary: LatencySummary,
    *,
    p95_s: float,
    success_rate: float,
    saturated: bool,
    complete: bool = True,
    extra: dict[str, Any] | None = None,
) -> Requirement:
    """Judge a load-based BR on p95 (from intended send time) and the accepted rate."""
    title, _test, unit = REQUIREMENTS[br_id]
    p95 = summary.p95
    succ = summary.success
    reasons: list[str] = []
    if summary.accepted < MIN_SAMPLES:
        reasons.append(f"only {summary.accepted} accepted requests (< {MIN_SAMPLES})")
    if saturated:
        reasons.append("the load generator was saturated: latency may be the generator's")
    if not complete:
        reasons.append("the run was interrupted")
    meets = p95.value < p95_s and succ.value >= success_rate
    status: Status = "INCONCLUSIVE" if reasons else ("PASS" if meets else "FAIL")
    straddles = (p95.low < p95_s <= p95.high) or (succ.low < success_rate <= succ.high)
    details = {
        "title": title,
        "judged_on": "p95 of latency from intended send time, accepted requests only",
        "p95_ci": [p95.low, p95.high],
        "p50": summary.p50.value,
        "p99": summary.p99.value,
        "max": summary.max,
        "mean": summary.mean,
        "success_rate": succ.value,
        "success_rate_ci": [succ.low, succ.high],
        "success_threshold": success_rate,
        "samples": summary.count,
        "not_sent": summary.not_sent,
        "outcomes": summary.outcomes,
        "errors": summary.errors,
        "ci_straddles_threshold": bool(straddles),
        "reasons": reasons,
        **(extra or {}),
    }
    threshold = f"p95 < {p95_s:g} s and success ≥ {success_rate:.0%}"
    return Requirement(br_id, p95.value, unit, threshold, status, details)


def confidence(requirements: list[Requirement], *, saturated: bool, complete: bool) -> int:
    """0-100: how far the evidence can be trusted (see ``PENALTIES``)."""
    score = 100
    for req in requirements:
        if req.status == "NOT_RUN":
            score -= PENALTIES["not_run"]
        elif req.status == "INCONCLUSIVE":
            score -= PENALTIES["inconclusive"]
        elif req.details.get("ci_straddles_threshold"):
            score -= PENALTIES["ci_straddles_threshold"]
    if saturated:
        score -= PENALTIES["generator_saturated"]
    if not complete:
        score -= PENALTIES["incomplete_session"]
    return max(0, min(100, score))


def decision(requirements: list[Requirement], *, saturated: bool, complete: bool) -> str:
    """GO only when every critical BR ran and passed on a clean, complete run."""
    all_pass = all(r.status == "PASS" for r in requirements if r.id in REQUIREMENTS)
    return "GO" if all_pass and not saturated and complete else "NO-GO"


DECISION_RULE = (
    "GO when every critical business requirement (BR-PA-003, BR-PA-004, BR-PA-001, "
    "BR-PA-011) was measured and PASSed, the session completed, and the load generator was "
    "never saturated; otherwise NO-GO. A requirement is INCONCLUSIVE when the data cannot "
    f"decide it (fewer than {MIN_SAMPLES} samples, saturated generator, interrupted run). "
    "Confidence starts at 100 and loses "
    + ", ".join(f"{v} per {k.replace('_', ' ')}" for k, v in PENALTIES.items())
    + "."
)
