"""A2 — concurrent load (BR-PA-004, the guide's A1.2).

Closed loop: ``concurrency`` workers each keep one request in flight for the duration.
The in-flight count is verified from the records (a generator that cannot hold N in
flight has not tested N), then success rate and p95 are judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from kubetest.analysis.concurrency import Concurrency, sustained_concurrency
from kubetest.analysis.verdicts import Requirement, latency_requirement
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import LoadOutcome, LoadViews, execute, make_plan

BR_ID = "BR-PA-004"
#: Share of the steady window that must have the full concurrency in flight.
MIN_TIME_AT_TARGET = 0.9


@dataclass
class A2Result(LoadViews):
    requirement: Requirement
    outcome: LoadOutcome
    concurrency: Concurrency


def run(ctx: TestContext, progress: bool | None = None) -> A2Result:
    sec = ctx.section
    started = datetime.now(UTC)
    plan = make_plan(
        ctx, ["high_memory", "high_cpu", "pod_crash"], mode="closed",
        concurrency=sec.concurrency, duration_s=sec.duration_min * 60.0,
    )  # fmt: skip
    outcome = execute(ctx, plan, "A2", progress)
    conc = sustained_concurrency(outcome.records, sec.concurrency)
    slo = ctx.params.slo
    req = latency_requirement(
        BR_ID, outcome.latency, p95_s=slo.p95_s, success_rate=slo.success_rate,
        complete=outcome.complete, aborted=outcome.aborted, validity=outcome.validity(),
        extra={"concurrency": sec.concurrency, "in_flight": asdict(conc),
               "generator": outcome.generator_health()},
    )  # fmt: skip
    req.threshold = f"{sec.concurrency} in flight, " + req.threshold
    if req.status == "PASS" and conc.fraction_at_target < MIN_TIME_AT_TARGET:
        req.status = "INCONCLUSIVE"
        req.details["reasons"].append(
            f"{sec.concurrency} requests were in flight only {conc.fraction_at_target:.0%} of "
            f"the time (mean {conc.time_weighted_mean:.1f}): the concurrency was not sustained"
        )
    ctx.save_result(
        {
            **outcome.result_fields(ctx, "A2 concurrent load", started),
            "requirements": [req.as_dict()],
            "concurrency": asdict(conc),
        }
    )
    return A2Result(req, outcome, conc)
