"""The GO / NO-GO rule and the confidence rating."""

from __future__ import annotations

import numpy as np
import pytest

from kubetest.analysis.latency import LatencySummary, proportion_ci, quantile_ci
from kubetest.analysis.verdicts import (
    PENALTIES,
    REQUIREMENTS,
    Requirement,
    decide,
    latency_requirement,
    not_run,
)


def passing() -> list[Requirement]:
    return [Requirement(br, 1.0, "s", "", "PASS", {}) for br in REQUIREMENTS]


def test_go_needs_every_critical_requirement_and_a_clean_run() -> None:
    d = decide(passing(), saturated=False, complete=True, max_sustainable_rate_per_min=3000)
    assert (d.decision, d.confidence, d.reasons) == ("GO", 100, [])
    reqs = passing()
    reqs[2] = not_run("BR-PA-001")
    d = decide(reqs, saturated=False, complete=True, max_sustainable_rate_per_min=3000)
    assert d.decision == "NO-GO" and d.confidence == 100 - PENALTIES["not_run"]
    assert d.reasons == ["BR-PA-001 was not measured"]
    d = decide(passing(), saturated=True, complete=True, max_sustainable_rate_per_min=3000)
    assert d.decision == "NO-GO" and "saturated" in d.reasons[0]


def test_capacity_headroom() -> None:
    below = decide(passing(), saturated=False, complete=True, max_sustainable_rate_per_min=800)
    assert below.decision == "NO-GO" and "below the 1,000/min" in below.reasons[0]
    thin = decide(passing(), saturated=False, complete=True, max_sustainable_rate_per_min=1200)
    assert thin.decision == "GO" and thin.confidence == 100 - PENALTIES["headroom_below_go"]
    unknown = decide(passing(), saturated=False, complete=True)
    assert unknown.decision == "GO"
    assert unknown.confidence == 100 - PENALTIES["capacity_not_measured"]


def _summary(latencies: np.ndarray, accepted: int, total: int) -> LatencySummary:
    return LatencySummary(
        count=total, accepted=accepted, success=proportion_ci(accepted, total),
        p50=quantile_ci(latencies, 0.5), p95=quantile_ci(latencies, 0.95),
        p99=quantile_ci(latencies, 0.99), max=float(latencies.max()),
        mean=float(latencies.mean()), lag_p99=0.0, not_sent=0, outcomes={}, errors={},
    )  # fmt: skip


def test_latency_verdict_is_on_p95_not_the_mean() -> None:
    # mean 1.9 s (the guide would PASS) but p95 well above 5 s: FAIL
    lat = np.concatenate([np.full(900, 0.5), np.full(100, 14.5)])
    assert lat.mean() < 5.0
    req = latency_requirement(
        "BR-PA-003", _summary(lat, 1000, 1000), p95_s=5.0, success_rate=0.95, saturated=False
    )
    assert req.status == "FAIL" and req.measured == pytest.approx(14.5)


def test_inconclusive_when_the_data_cannot_decide() -> None:
    lat = np.full(10, 0.1)
    few = latency_requirement(
        "BR-PA-003", _summary(lat, 10, 10), p95_s=5.0, success_rate=0.95, saturated=False
    )
    assert few.status == "INCONCLUSIVE" and "only 10" in few.details["reasons"][0]
    # 2 accepted of 100: too few for a p95, but the success criterion has failed
    broken = latency_requirement("BR-PA-003", _summary(np.full(2, 0.1), 2, 100), p95_s=5.0,
                                 success_rate=0.95, saturated=False)  # fmt: skip
    assert broken.status == "FAIL"
    lat = np.full(500, 0.1)
    sat = latency_requirement(
        "BR-PA-003", _summary(lat, 500, 500), p95_s=5.0, success_rate=0.95, saturated=True
    )
    assert sat.status == "INCONCLUSIVE"
