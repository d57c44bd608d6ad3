"""Business-requirement verdicts, the confidence rating and the GO / NO-GO decision.

Verdicts are data (``Requirement``), never strings grepped out of logs. The decision rule
is deliberately simple and printed in the report:

* GO only when every critical BR ran and PASSed and the generator never saturated;
* a BR is INCONCLUSIVE when the data cannot decide it (too few samples, the generator
  was the bottleneck, the run was cut short);
* a load test stopped by its SLO abort (``engine.abort``) FAILs with the abort's reason;
* the run's validity (``analysis.validity``) is kept beside the verdict and bounds it:
  an INVALID run is never judged PASS or FAIL, an INCONCLUSIVE one cannot PASS
  (``apply_validity``);
* confidence (0-100) starts at 100 and loses points for what weakens the evidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kubetest.analysis.latency import LatencySummary
from kubetest.analysis.validity import Validity

Status = Literal["PASS", "FAIL", "NOT_RUN", "INCONCLUSIVE"]

#: The guide's critical requirements, in report order: id -> (title, test key, unit).
REQUIREMENTS: dict[str, tuple[str, str, str]] = {
    "BR-PA-003": ("Alert response time (p95)", "A1", "s"),
    "BR-PA-004": ("100 concurrent requests", "A2", "s"),
    "BR-PA-001": ("Availability", "A3", "%"),
    "BR-PA-011": ("Kubernetes actions executed", "A4", "%"),
}

#: The guide's "no critical failures or data corruption": every accepted alert handled
#: exactly once (``kubetest.analysis.integrity``). Not a BR of the guide's table, but a
#: FAIL of it (an accepted alert lost or handled twice) is a NO-GO reason.
INTEGRITY_ID = "DATA-INTEGRITY"

#: Rows of the service's own suites (the guide's Step 1a, ``external_suites``) are
#: ``SUITE:<name>``: a FAIL is a NO-GO reason, an INCONCLUSIVE costs confidence.
SUITE_PREFIX = "SUITE:"

#: Fewer accepted samples than this and a p95 says little: INCONCLUSIVE.
MIN_SAMPLES = 20

#: The guide's alert-rate requirement (alerts/min) and the headroom a GO needs above it.
RATE_REQUIREMENT_PER_MIN = 1000.0
GO_HEADROOM = 1.5

#: Confidence penalties (points off 100), shown in the report beside the rule.
PENALTIES: dict[str, int] = {
    "not_run": 25,
    "inconclusive": 25,
    "ci_straddles_threshold": 10,
    "generator_saturated": 30,
    "incomplete_session": 20,
    "capacity_not_measured": 10,
    "headroom_below_go": 15,
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
    saturated: bool = False,  # the generator was (validity covers it too)
    complete: bool = True,
    extra: dict[str, Any] | None = None,
    aborted: str | None = None,
    validity: Validity | None = None,
) -> Requirement:
    """Judge a load-based BR on p95 (from intended send time) and the accepted rate.
    ``aborted``: the SLO abort's reason, when it stopped the run (a FAIL); ``validity``:
    the run's, applied last (``apply_validity``)."""
    title, _test, unit = REQUIREMENTS[br_id]
    p95 = summary.p95
    succ = summary.success
    reasons: list[str] = []
    if saturated:
        reasons.append("the load generator was saturated: latency may be the generator's")
    if not complete:
        reasons.append("the run was interrupted")
    # Each criterion is decided on enough samples of its own: the success rate on every
    # answered request, the p95 on accepted ones. A service that fails most requests has
    # FAILed the success criterion even though too few accepted latencies exist for a p95.
    success_known = summary.count >= MIN_SAMPLES
    p95_known = summary.accepted >= MIN_SAMPLES
    status: Status
    if reasons:
        status = "INCONCLUSIVE"
    elif (
        aborted  # the service breached the abort rule: FAIL, however few the samples
        or (success_known and succ.value < success_rate)
        or (p95_known and not p95.value < p95_s)
    ):
        status = "FAIL"
    elif success_known and p95_known:
        status = "PASS"
    else:
        status = "INCONCLUSIVE"
        reasons.append(
            f"only {summary.accepted} accepted of {summary.count} requests (< {MIN_SAMPLES})"
        )
    if aborted:
        reasons.insert(0, aborted)
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
    req = Requirement(br_id, p95.value, unit, threshold, status, details)
    return apply_validity(req, validity) if validity is not None else req


def apply_validity(req: Requirement, validity: Validity) -> Requirement:
    """Keep the run's validity in ``details["validity"]`` and bound the verdict by it:
    INVALID is never PASS or FAIL, INCONCLUSIVE never PASS (the reasons say why)."""
    req.details["validity"] = validity.as_dict()
    why = "; ".join(validity.reasons)
    reasons = req.details.setdefault("reasons", [])
    if validity.status == "INVALID" and req.status in ("PASS", "FAIL", "INCONCLUSIVE"):
        if req.status != "INCONCLUSIVE":
            reasons.append(f"not judged {req.status}: the run is INVALID ({why})")
        else:
            reasons.append(f"the run is INVALID ({why})")
        req.status = "INCONCLUSIVE"
    elif validity.status == "INCONCLUSIVE" and req.status == "PASS":
        req.status = "INCONCLUSIVE"
        reasons.append(f"not claimed PASS: the run is INCONCLUSIVE ({why})")
    return req


@dataclass(frozen=True)
class Decision:
    """The GO / NO-GO call, its confidence, and every reason that moved either."""

    decision: str
    confidence: int
    reasons: list[str]
    penalties: dict[str, int]


def decide(
    requirements: list[Requirement],
    *,
    saturated: bool,
    complete: bool,
    max_sustainable_rate_per_min: float | None = None,
) -> Decision:
    """Apply ``DECISION_RULE``: GO needs every critical BR PASSed on a clean, complete run
    and, when capacity was measured, headroom of at least 1× the 1,000/min requirement."""
    reasons: list[str] = []
    penalties: dict[str, int] = {}

    def penalise(key: str, why: str) -> None:
        penalties[why] = PENALTIES[key]

    for req in requirements:
        if req.id == INTEGRITY_ID and req.status == "FAIL":
            reasons.append(f"{req.id}: accepted alerts were lost or handled more than once")
        if req.id.startswith(SUITE_PREFIX):
            if req.status == "FAIL":
                reasons.append(f"the service's own suite {req.id[len(SUITE_PREFIX) :]} failed")
            elif req.status == "INCONCLUSIVE":
                penalise("inconclusive", f"{req.id} inconclusive")
            continue
        if req.id not in REQUIREMENTS:
            continue
        if req.status == "NOT_RUN":
            reasons.append(f"{req.id} was not measured")
            penalise("not_run", f"{req.id} not run")
        elif req.status == "INCONCLUSIVE":
            reasons.append(f"{req.id} is inconclusive")
            penalise("inconclusive", f"{req.id} inconclusive")
        elif req.status == "FAIL":
            reasons.append(f"{req.id} failed")
        elif req.details.get("ci_straddles_threshold"):
            penalise("ci_straddles_threshold", f"{req.id}: confidence interval straddles threshold")
    if saturated:
        reasons.append("the load generator was saturated")
        penalise("generator_saturated", "generator saturated")
    if not complete:
        reasons.append("the session did not complete")
        penalise("incomplete_session", "session incomplete")
    rate = max_sustainable_rate_per_min
    if rate is None:
        penalise("capacity_not_measured", "capacity (B1) not measured")
    else:
        headroom = rate / RATE_REQUIREMENT_PER_MIN
        if headroom < 1.0:
            reasons.append(
                f"max sustainable rate {rate:,.0f}/min is below the "
                f"{RATE_REQUIREMENT_PER_MIN:,.0f}/min requirement"
            )
        elif headroom < GO_HEADROOM:
            penalise("headroom_below_go", f"headroom {headroom:.2f}× < {GO_HEADROOM}×")
    score = max(0, min(100, 100 - sum(penalties.values())))
    return Decision("NO-GO" if reasons else "GO", score, reasons, penalties)


DECISION_RULE = (
    "GO when every critical business requirement (BR-PA-003, BR-PA-004, BR-PA-001, "
    "BR-PA-011) was measured and PASSed, the session completed, the load generator was "
    "never saturated, no accepted alert was lost or handled twice (DATA-INTEGRITY), the "
    "service's own suites (external_suites), when configured, all passed, and — "
    "when capacity was measured (B1) — the maximum sustainable rate "
    f"is at least the {RATE_REQUIREMENT_PER_MIN:,.0f} alerts/min requirement; otherwise "
    "NO-GO. A requirement is INCONCLUSIVE when the data cannot decide it (fewer than "
    f"{MIN_SAMPLES} samples, saturated generator, interrupted run, probes too coarse). "
    "Confidence starts at 100 and loses "
    + ", ".join(f"{v} per {k.replace('_', ' ')}" for k, v in PENALTIES.items())
    + f" (headroom below GO means under {GO_HEADROOM}× the requirement)."
)


def per_run(results: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The ``key`` block of every test's result and of each Phase B phase in it
    (``phases_service[].<key>``, labelled as ``B1 phase 3``), where there is one.
    ``results``: result dicts, or typed results (``as_dict()``: the JSON they hold)."""
    out: dict[str, dict[str, Any]] = {}
    for test, typed in sorted(results.items()):
        r = typed.as_dict() if hasattr(typed, "as_dict") else typed
        if isinstance(r.get(key), dict):
            out[test] = r[key]
        for ph in r.get("phases_service") or []:
            if isinstance(ph, dict) and isinstance(ph.get(key), dict):
                out[f"{test} phase {ph.get('phase')}"] = ph[key]
    return out
