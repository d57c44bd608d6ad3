"""Phase B: the capacity analysis on synthetic data with known answers, then B1/B2 for real
against the embedded reference target, checked against queueing theory.

The end-to-end tests use a target whose truth is computable: c workers, service time D.
* M/D/c with evenly spaced arrivals (D/D/c): no queue at all below c/D, a linearly growing
  one above it; the max sustainable rate must land just under c/D.
* M/M/c with Poisson arrivals: Erlang C gives the rate at which p95 reaches the SLO.
* B2 closed loop on M/D/c: throughput min(N, c)/D, so the USL peak is c/D, the knee at
  N = c, and the mean response N·D/c for N ≥ c (Little's law).
Bounds are generous: CI is a busy 2-core box and the phases last seconds.
"""

from __future__ import annotations

import heapq
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_support import embedded_context, run_sweep

from kubetest.analysis import capacity as cap
from kubetest.analysis import queueing, usl
from kubetest.engine.records import DTYPES
from kubetest.workbook import b1_capacity, b2_concurrency
from kubetest.workbook.context import TestContext

SLO = {"p95_s": 0.1, "success_rate": 0.95, "stop_below_success": 0.5}


# -- synthetic phases ---------------------------------------------------------------------


def queue_records(
    rate_s: float, duration_s: float, service_s: float, servers: int = 1,
    fail_every: int = 0, seed: int = 0, exp: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Records of a FIFO queue with ``servers`` servers fed evenly spaced arrivals."""
    rng = np.random.default_rng(seed)
    arrivals = np.arange(int(rate_s * duration_s)) / rate_s
    free = [0.0] * servers
    rows = []
    for i, a in enumerate(arrivals):
        start = max(a, heapq.heappop(free))
        done = start + (rng.exponential(service_s) if exp else service_s)
        heapq.heappush(free, done)
        failed = bool(fail_every) and i % fail_every == 0
        rows.append((i, 0, a, a, done, done - a, done - a, 0.0, 500 if failed else 200,
                     "failed" if failed else "accepted", "http_5xx" if failed else "",
                     "high_cpu", f"f{i}"))  # fmt: skip
    return pd.DataFrame(rows, columns=list(DTYPES)).astype(DTYPES)


def judged(
    records: pd.DataFrame, rate_s: float, duration_s: float, load: dict | None = None
) -> cap.PhaseVerdict:
    stats = cap.measure_phase(records, index=1, kind="grid", duration_s=duration_s,
                              offered_per_min=rate_s * 60, load_summary=load)  # fmt: skip
    return cap.judge_rate_phase(stats, **SLO)


def test_a_phase_below_capacity_is_sustainable() -> None:
    # 40/s on 2 servers of 20 ms: ρ = 0.4, no queue
    v = judged(queue_records(40, 10, 0.02, servers=2), 40, 10)
    assert v.status == "sustainable" and not v.reasons and not v.degraded


def test_an_overloaded_phase_falls_behind_and_trends_up_before_breaching_the_slo() -> None:
    # 110/s on 2 × 20 ms (100/s): p95 stays under a 1.5 s SLO for 10 s, but the queue grows
    rec = queue_records(110, 10, 0.02, servers=2)
    stats = cap.measure_phase(rec, index=1, kind="grid", duration_s=10, offered_per_min=6600)
    assert stats.latency.p95.value < 1.5
    assert stats.keep_up == pytest.approx(100 / 110, rel=0.02)
    assert stats.trend is not None and stats.trend.significant
    assert stats.trend.slope == pytest.approx(0.1, rel=0.15)  # ρ − 1 seconds per second
    v = cap.judge_rate_phase(stats, p95_s=1.5, success_rate=0.95, stop_below_success=0.5)
    assert v.status == "unsustainable"
    assert any("fell behind" in r for r in v.reasons) and any("rising" in r for r in v.reasons)
    # the same growth far below a 30 s SLO is still a queue that does not keep up...
    far = cap.judge_rate_phase(stats, p95_s=30.0, success_rate=0.95, stop_below_success=0.5)
    assert far.status == "unsustainable" and not any("rising" in r for r in far.reasons)


def test_a_trend_counts_when_it_would_take_p95_past_the_slo_within_another_phase() -> None:
    # a slow leak: throughput keeps up, latency grows from 0.2 s to 1.4 s over 60 s
    rec = queue_records(20, 60, 0.01, servers=4)
    rec["latency_s"] = 0.2 + 0.02 * rec["intended_s"]
    rec["done_s"] = rec["intended_s"] + rec["latency_s"]
    stats = cap.measure_phase(rec, index=1, kind="grid", duration_s=60, offered_per_min=1200)
    assert stats.keep_up is not None and stats.keep_up > 0.95
    near = cap.judge_rate_phase(stats, p95_s=2.0, success_rate=0.95, stop_below_success=0.5)
    assert near.status == "unsustainable" and "rising" in near.reasons[0]
    far = cap.judge_rate_phase(stats, p95_s=5.0, success_rate=0.95, stop_below_success=0.5)
    assert far.status == "sustainable"


def test_a_stable_noisy_phase_shows_no_trend() -> None:
    rec = queue_records(60, 20, 0.02, servers=2, exp=True, seed=3)  # M/M/2-like, ρ = 0.6
    stats = cap.measure_phase(rec, index=1, kind="grid", duration_s=20, offered_per_min=3600)
    assert stats.trend is not None and not stats.trend.significant
    assert cap.judge_rate_phase(stats, **SLO).status == "sustainable"


def test_failures_and_slow_answers_make_a_phase_unsustainable_and_flag_degradation() -> None:
    v = judged(queue_records(40, 10, 0.02, servers=2, fail_every=5), 40, 10)  # 80 % success
    assert v.status == "unsustainable" and v.degraded and not v.broken
    assert any("success 80.0%" in r for r in v.reasons)
    v = judged(queue_records(40, 10, 0.02, servers=2, fail_every=2), 40, 10)  # 50 % success
    assert v.degraded and not v.broken  # the guide stops *below* 50 %
    slow = judged(queue_records(10, 10, 0.2, servers=4), 10, 10)  # p95 0.2 s > SLO 0.1 s
    assert slow.status == "unsustainable" and any("p95" in r for r in slow.reasons)


def test_a_saturated_generator_is_not_evidence() -> None:
    rec = queue_records(110, 10, 0.02, servers=2)
    v = judged(rec, 110, 10, load={"saturated": True, "saturation_reasons": ["lag p99 80 ms"]})
    assert v.status == "generator-limited" and not v.broken and "lag p99 80 ms" in v.reasons[0]
    few = judged(queue_records(1, 10, 0.02), 1, 10)
    assert few.status == "inconclusive"


def test_an_aborted_phase_is_unsustainable_on_what_ran() -> None:
    """Stopped 4 s into a planned 10 s: judged over the 4 s it ran, whatever its samples."""
    why = "aborted at t = 4.0 s: p95 0.9 s > 0.2 s in 3 windows of 0.5 s"
    rec = queue_records(40, 4, 0.02, servers=2)  # healthy answers: the abort alone decides
    load = {"aborted": why, "aborted_at_s": 4.0}
    stats = cap.measure_phase(
        rec, index=1, kind="grid", duration_s=10, offered_per_min=2400, load_summary=load
    )
    assert stats.ran_s == 4.0 and stats.duration_s == 10 and stats.aborted == why
    assert stats.keep_up == pytest.approx(1.0, rel=0.05)  # its window is [1 s, 4 s)
    v = cap.judge_rate_phase(stats, **SLO)
    assert v.status == "unsustainable" and v.reasons[0] == why
    few = cap.measure_phase(
        rec.head(5), index=1, kind="grid", duration_s=10, offered_per_min=2400, load_summary=load
    )
    assert cap.judge_rate_phase(few, **SLO).status == "unsustainable"
    row = cap.phase_row(stats, v, label="2,400/min")
    assert row["aborted"] == why and row["ran_s"] == 4.0 and row["validity"] == "VALID"


def test_a_phase_whose_run_is_not_valid_is_not_evidence() -> None:
    from kubetest.analysis.validity import Validity

    rec = queue_records(40, 10, 0.02, servers=2)
    for status, verdict in (("INVALID", "generator-limited"), ("INCONCLUSIVE", "inconclusive")):
        v = Validity()
        v.add(status, "clock: worker 1 offset known only to ±80 ms")  # type: ignore[arg-type]
        stats = cap.measure_phase(
            rec, index=1, kind="grid", duration_s=10, offered_per_min=2400, validity=v
        )
        judged_ = cap.judge_rate_phase(stats, **SLO)
        assert judged_.status == verdict and "±80 ms" in judged_.reasons[0]


def test_a_sweep_is_valid_with_one_evidence_phase_and_inconclusive_when_interrupted() -> None:
    from kubetest.workbook.sweep import Phase, sweep_validity

    def phase(load: dict, rate: float = 2400) -> Phase:
        rec = queue_records(rate / 60, 10, 0.02, servers=2)
        stats = cap.measure_phase(
            rec, index=1, kind="grid", duration_s=10, offered_per_min=rate, load_summary=load
        )
        return Phase(stats, cap.judge_rate_phase(stats, **SLO), None, "", None)  # type: ignore[arg-type]

    limited = phase({"saturated": True, "saturation_reasons": ["lag p99 80 ms"]})
    good = phase({})
    assert sweep_validity([good, limited], complete=True).status == "VALID"
    alone = sweep_validity([limited], complete=True)
    assert alone.status == "INVALID"
    assert alone.reasons == ["phase 1 (2,400/min): generator: lag p99 80 ms"]
    cut = sweep_validity([good], complete=False)
    assert cut.status == "INCONCLUSIVE" and "interrupted" in cut.reasons[0]


def test_a_closed_level_needs_its_concurrency_held() -> None:
    rec = queue_records(40, 10, 0.02, servers=2)
    stats = cap.measure_phase(rec, index=1, kind="level", duration_s=10, concurrency=50)
    v = cap.judge_concurrency_level(stats, **SLO)
    assert v.status == "generator-limited" and "in flight" in v.reasons[0]


# -- bracket and bisection ----------------------------------------------------------------


def sweep(truth: float, grid: list[float]) -> list[tuple[float, str]]:
    """The B1 loop with an oracle: sustainable iff rate < truth."""
    points = [(r, "sustainable" if r < truth else "unsustainable") for r in grid]
    for _ in range(cap.MAX_REFINE_PHASES):
        nxt = cap.refine_next(points)
        if nxt is None:
            break
        points.append((nxt, "sustainable" if nxt < truth else "unsustainable"))
    return points


@pytest.mark.parametrize("truth", [700, 1234, 3456, 4999, 9000])
def test_bisection_brackets_the_truth_within_5_percent(truth: float) -> None:
    points = sweep(truth, [500, 1000, 2000, 5000, 10000])
    low, high = cap.bracket(points)
    assert low is not None and high is not None
    assert low < truth <= high
    assert (high - low) / low <= cap.BRACKET
    assert len(points) - 5 <= cap.MAX_REFINE_PHASES


def test_bracket_ignores_non_evidence_and_noise_above_the_first_failure() -> None:
    pts = [(500, "sustainable"), (1000, "generator-limited"), (2000, "unsustainable"),
           (5000, "sustainable")]  # fmt: skip
    assert cap.bracket(pts) == (500, 2000)
    assert cap.refine_next(pts) == 1250
    assert cap.refine_next([(500, "sustainable"), (1000, "sustainable")]) is None  # no upper
    assert cap.refine_next([(500, "unsustainable")]) is None  # nothing sustainable
    assert cap.refine_next([(1000, "sustainable"), (1040, "unsustainable")]) is None  # 4 %
    stalled = [(1000, "sustainable"), (2000, "unsustainable"), (1500, "generator-limited")]
    assert cap.refine_next(stalled) == 1500  # retried once
    assert cap.refine_next([*stalled, (1500, "generator-limited")]) is None


def test_refinement_phases_are_shorter_than_the_grid() -> None:
    assert cap.refine_duration_s([300, 180]) == 90  # the guide's 5 and 3 min phases
    assert cap.refine_duration_s([30, 30]) == 20
    assert cap.refine_duration_s([2, 3]) == 2  # seconds-long phases (tests) stay as long


# -- knee, USL, Little's law --------------------------------------------------------------


def test_knee_of_a_hockey_stick_and_of_a_queue_curve() -> None:
    n = [1, 2, 4, 8, 16, 32]
    assert usl.find_knee(n, np.minimum(n, 4) * 50.0, curve="concave") == 4
    # M/M/1 mean response 1/(μ − λ), μ = 100: convex, bending near ρ ≈ 0.8-0.9
    lam = np.arange(10, 100, 10, dtype=float)
    knee = usl.find_knee(lam, 1 / (100 - lam), curve="convex")
    assert knee is not None and 70 <= knee <= 90
    assert usl.find_knee([1, 2, 3, 4], [2, 4, 6, 8], curve="concave") is None  # a line
    assert usl.find_knee([1, 2], [1, 5], curve="convex") is None


def test_usl_fit_recovers_known_coefficients() -> None:
    n = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
    truth = usl.usl(n, 100.0, 0.05, 0.001)
    noisy = truth * (1 + 0.01 * np.random.default_rng(1).standard_normal(n.size))
    fit = usl.fit_usl(n, noisy)
    assert fit is not None and fit.r2 > 0.99
    assert fit.sigma == pytest.approx(0.05, abs=0.01)
    assert fit.kappa == pytest.approx(0.001, rel=0.2)
    peak_n = math.sqrt(0.95 / 0.001)
    assert fit.peak_concurrency == pytest.approx(peak_n, rel=0.15)
    assert fit.peak_throughput == pytest.approx(float(usl.usl(peak_n, 100, 0.05, 0.001)), rel=0.03)


def test_usl_without_coherency_peaks_at_its_asymptote() -> None:
    n = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    fit = usl.fit_usl(n, usl.usl(n, 10.0, 0.1, 0.0))
    assert fit is not None and fit.kappa < 1e-6
    assert fit.peak_throughput == pytest.approx(100.0, rel=0.02)  # λ / σ
    assert usl.fit_usl([1, 2], [1, 2]) is None


def test_littles_law_error() -> None:
    assert usl.littles_law_error(100, 95.0) == pytest.approx(0.05)
    assert usl.littles_law_error(None, 95.0) is None
    assert usl.littles_law_error(10, float("nan")) is None


# -- recommendations and capacity summaries -----------------------------------------------


@pytest.mark.parametrize(("rate", "words"), [
    (2500, "excellent"), (2000, "excellent"), (1999, "adequate"), (1500, "adequate"),
    (1200, "limited headroom"), (1000, "limited headroom"), (999, "may not sustain"),
    (0, "may not sustain"),
])  # fmt: skip
def test_rate_recommendation_uses_the_guides_thresholds(rate: float, words: str) -> None:
    text = cap.rate_recommendation(rate)
    assert words in text and f"{rate:,.0f} alerts/min" in text
    assert "not measured" in cap.rate_recommendation(None)
    assert "at least" in cap.rate_recommendation(3000, lower_bound=True)
    assert "not judged" in cap.rate_recommendation(800, lower_bound=True)


@pytest.mark.parametrize(("n", "words"), [
    (800, "excellent"), (500, "excellent"), (200, "good"), (100, "adequate"), (99, "insufficient"),
])  # fmt: skip
def test_concurrency_recommendation_uses_the_guides_thresholds(n: int, words: str) -> None:
    assert words in cap.concurrency_recommendation(n)
    assert "add higher levels" in cap.concurrency_recommendation(32, lower_bound=True)


def phases(rows: list[tuple[float, str, float]]) -> pd.DataFrame:
    """(offered/min, status, success) → a phases table as ``phase_row`` writes it."""
    return pd.DataFrame([{
        "offered_per_min": r, "status": st, "success_rate": s, "degraded": s < 0.9,
        "broken": s < 0.5, "p95_s": 0.1 + r / 10000, "throughput_per_min": min(r, 3000),
        "goodput_per_min": min(r, 3000) * s,
    } for r, st, s in rows])  # fmt: skip


def test_rate_capacity_and_its_requirement() -> None:
    t = phases([(500, "sustainable", 1), (1000, "sustainable", 1), (2000, "sustainable", 1),
                (5000, "unsustainable", 0.85), (10000, "generator-limited", 0.2)])  # fmt: skip
    c = cap.rate_capacity(t)
    assert c["max_sustainable_rate_per_min"] == 2000
    assert c["first_unsustainable_rate_per_min"] == 5000
    assert c["degradation_point_per_min"] == 5000
    assert c["breaking_point_per_min"] is None  # the 20 % phase was the generator's
    assert c["generator_limited_phases"] == 1 and c["headroom"] == 2.0
    assert "excellent" in c["recommendation"]
    req = cap.rate_requirement(c, p95_s=5, success_rate=0.95, samples=10)
    assert (req.id, req.status, req.measured) == ("CAP-1000", "PASS", 2000)

    low = cap.rate_capacity(phases([(500, "unsustainable", 0.4)]))
    assert low["max_sustainable_rate_per_min"] == 0 and low["breaking_point_per_min"] == 500
    assert cap.rate_requirement(low, p95_s=5, success_rate=0.95, samples=1).status == "FAIL"

    short = cap.rate_capacity(phases([(500, "sustainable", 1), (800, "sustainable", 1)]))
    assert short["max_sustainable_is_lower_bound"] is True
    assert (
        cap.rate_requirement(short, p95_s=5, success_rate=0.95, samples=1).status == "INCONCLUSIVE"
    )
    none = cap.rate_capacity(phases([(500, "generator-limited", 1)]))
    assert none["max_sustainable_rate_per_min"] is None


# -- queueing theory ------------------------------------------------------------------------


def test_erlang_c_known_values() -> None:
    assert queueing.erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = ρ
    assert queueing.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # M/M/1 response time is exponential with rate μ − λ
    assert queueing.mmc_response_quantile(5, 10, 1) == pytest.approx(math.log(20) / 5)
    lam = queueing.mmc_max_rate(50, 4, 0.1)
    assert queueing.mmc_response_quantile(lam, 50, 4) == pytest.approx(0.1, rel=1e-6)


def test_erlang_c_quantile_matches_a_simulated_mmc_queue() -> None:
    rng = np.random.default_rng(7)
    lam, mu, c, n = 160.0, 50.0, 4, 60_000
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    free = [0.0] * c
    resp = np.empty(n)
    for i, a in enumerate(arrivals):
        start = max(a, heapq.heappop(free))
        done = start + rng.exponential(1 / mu)
        heapq.heappush(free, done)
        resp[i] = done - a
    simulated = float(np.quantile(resp[n // 10 :], 0.95))
    assert simulated == pytest.approx(queueing.mmc_response_quantile(lam, mu, c), rel=0.05)


# -- end to end against the embedded reference target ---------------------------------------


def context(
    tmp_path: Path, test: str, embedded: dict, slo_p95_s: float = SLO["p95_s"], **sections: object
) -> TestContext:
    slo = {"p95_s": slo_p95_s, "success_rate": SLO["success_rate"]}
    return embedded_context(tmp_path, test, embedded, slo, **sections)


def run_b1(
    tmp_path: Path, embedded: dict, grid: list[list[float]], arrivals: str = "constant",
    slo_p95_s: float = SLO["p95_s"],
) -> b1_capacity.B1Result:  # fmt: skip
    ctx = context(tmp_path, "B1", embedded, slo_p95_s, generator={"arrivals": arrivals},
                  b1_capacity={"phases": grid, "recovery_s": 5, "stop_below_success": 0.5,
                               "refine": True})  # fmt: skip
    return run_sweep(ctx, b1_capacity)


@pytest.mark.timeout(120)
def test_b1_finds_the_capacity_of_an_md_c_target(tmp_path: Path) -> None:
    """D/D/4 with D = 20 ms: no queue below c/D = 12,000/min, so it is sustainable just
    under it and unsustainable above it, whatever the 0.1 s SLO."""
    res = run_b1(tmp_path, {"workers": 4, "service_ms": 20, "service_dist": "const"},
                 [[9000, 3 / 60], [11000, 3 / 60], [16000, 3 / 60]])  # fmt: skip
    c = res.capacity
    theory = res.theory
    assert theory is not None and theory["capacity_per_min"] == pytest.approx(12000)
    assert 0.6 * 12000 <= c["max_sustainable_rate_per_min"] <= 1.05 * 12000
    assert c["first_unsustainable_rate_per_min"] is not None
    assert c["bracket_width"] <= cap.BRACKET  # refinement ran to the 5 % bracket
    assert c["knee_rate_per_min"] is not None
    assert res.requirement.status == "PASS" and res.requirement.id == "CAP-1000"
    kinds = [p.stats.kind for p in res.phases]
    assert kinds[:3] == ["grid"] * 3 and "refine" in kinds
    saved = json.loads((tmp_path / "session" / "results" / "B1.json").read_text())
    assert saved["complete"] is True and saved["requirements"][0]["id"] == "CAP-1000"
    assert len(saved["phases"]) == len(saved["phases_load"]) == len(res.phases)
    assert {"max_sustainable_rate_per_min", "degradation_point_per_min",
            "knee_rate_per_min"} <= set(saved["capacity"])  # fmt: skip
    assert all((tmp_path / "session" / p["records"]).is_file() for p in saved["phases"])


@pytest.mark.timeout(120)
def test_b2_usl_peak_and_knee_match_an_md_c_target(tmp_path: Path) -> None:
    """Closed loop on D/4 with D = 20 ms: X = min(N, 4) / D, so the USL peak is near 200/s,
    the knee at N = 4, and with a 0.1 s SLO (mean response N·D/4) N = 16 passes, 32 not."""
    ctx = context(tmp_path, "B2", {"workers": 4, "service_ms": 20, "service_dist": "const"},
                  b2_concurrency={"levels": [1, 4, 8, 16, 32], "duration_s": 1.5,
                                  "recovery_s": 5, "stop_below_success": 0.75})  # fmt: skip
    try:
        res = b2_concurrency.run(ctx, progress=False, echo=lambda _: None)
    finally:
        ctx.close()
    c = res.capacity
    assert c["usl_peak_throughput_per_min"] == pytest.approx(12000, rel=0.15), res.summary
    assert 2 <= c["concurrency_knee"] <= 8
    assert c["max_sustainable_concurrency"] == 16
    assert c["first_unsustainable_concurrency"] == 32
    assert c["littles_law_consistent"], res.littles_law
    saved = json.loads((tmp_path / "session" / "results" / "B2.json").read_text())
    assert saved["requirements"] == [] and len(saved["phases_load"]) == 5
    assert saved["usl"]["sigma"] == pytest.approx(c["usl_sigma"])


# -- figures --------------------------------------------------------------------------------


def test_figures_draw_from_a_phases_table_and_survive_empty_input() -> None:
    from kubetest import capacity_plots as cp

    rows = []
    for i, (rate, n) in enumerate([(6000, 2), (9000, 4), (12000, 8), (15000, 16)], start=1):
        rec = queue_records(rate / 60, 5, 0.02, servers=4)
        stats = cap.measure_phase(rec, index=i, kind="grid", duration_s=5, offered_per_min=rate)
        row = cap.phase_row(stats, cap.judge_rate_phase(stats, **SLO), label=f"{rate}/min")
        rows.append(row | {"concurrency": n})
    table = pd.DataFrame(rows)
    c = cap.rate_capacity(table)
    fit = usl.fit_usl(table["concurrency"], table["throughput_per_min"] / 60)
    records = pd.concat(
        [
            queue_records(r / 60, 5, 0.02, servers=4).assign(phase=i, label=f"{r}/min", load=r)
            for i, r in enumerate([6000, 9000], start=1)
        ]
    )
    figs = [
        cp.latency_vs_rate(table, 0.1, c),
        cp.throughput_vs_offered(table, c, 12000),
        cp.concurrency_curve(table, fit, 0.1),
        cp.phase_distributions(records, 0.1),
    ]
    assert all(f.axes for f in figs)
    empty = pd.DataFrame()
    assert cp.latency_vs_rate(empty, 0.1).axes and cp.concurrency_curve(empty, None, 0.1).axes
    assert cp.phase_distributions(empty, 0.1).axes
    # a sweep where nothing was accepted (every alert refused) has no latency at all: the
    # figures still draw (a log axis needs a positive value), with a linear latency axis
    blank = table.assign(
        **{
            k: float("nan")
            for k in ("p50_s", "p95_s", "p99_s", "mean_s", "p95_ci_low_s", "p95_ci_high_s")
        }
    )
    for fig in (cp.latency_vs_rate(blank, 0.1, c), cp.concurrency_curve(blank, None, 0.1)):
        fig.savefig(io.BytesIO(), format="png")  # drawing is where matplotlib would raise
        assert fig.axes[-1].get_yscale() == "linear"
    assert figs[0].axes[0].get_yscale() == "log"


def test_b2_peak_counts_accepted_work_not_instant_refusals() -> None:
    """A gateway that throttles answers 429 at once and closed-loop workers spin on it:
    the level 'completes' refusals by the thousand. Peak and USL are on goodput."""
    table = pd.DataFrame([
        {"concurrency": 8, "status": "sustainable", "throughput_per_min": 3100.0,
         "goodput_per_min": 3100.0, "little_error": 0.01},
        {"concurrency": 32, "status": "sustainable", "throughput_per_min": 3150.0,
         "goodput_per_min": 3150.0, "little_error": 0.01},
        {"concurrency": 128, "status": "unsustainable", "throughput_per_min": 205000.0,
         "goodput_per_min": 3000.0, "little_error": 0.01},
    ])  # fmt: skip
    c, fit = cap.concurrency_capacity(table)
    assert c["peak_throughput_per_min"] == 3150.0 and c["peak_throughput_concurrency"] == 32
    assert fit is not None and fit.predict([128])[0] * 60 < 10_000
