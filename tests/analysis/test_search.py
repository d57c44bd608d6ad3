"""``search: auto`` (B1, B2): the early decisions and the search's steps on synthetic data
with known answers, then for real against simulated services of known capacity (the
embedded reference target): one above ``max_per_min`` ("at least"), one that fails at the
start rate, the issue's held-out M/M/4 case, and B2's search over N.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

import numpy as np
import pytest
from sweep_support import embedded_context, run_sweep

from kubetest.analysis import queueing, search
from kubetest.analysis.search import DecisionRule, Evidence, Point
from kubetest.workbook import b1_capacity, b2_concurrency
from kubetest.workbook.context import TestContext

# -- the search's steps ---------------------------------------------------------------------


def simulate(
    truth: float, start: float, max_rate: float | None = None, precision: float = 0.05
) -> list[tuple[float, str]]:
    """Run ``next_rate`` against a service sustainable exactly below ``truth``."""
    points: list[tuple[float, str]] = []
    for _ in range(40):
        nxt = search.next_rate(points, start, max_rate=max_rate, precision=precision)
        if nxt is None:
            return points
        rate = nxt[0]
        points.append((rate, "sustainable" if rate < truth else "unsustainable"))
    raise AssertionError(f"the search did not end: {points}")


@pytest.mark.parametrize("truth", [1234.0, 3000.5, 11000.0, 47000.0])
def test_growth_then_bisection_brackets_the_truth_within_the_precision(truth: float) -> None:
    points = simulate(truth, 1000.0)
    low, high = search.bracket(points)
    assert low is not None and high is not None
    assert low < truth <= high and (high - low) <= 0.05 * low
    grows = [r for r, _ in points if r >= 1000.0][:3]
    assert grows[:2] == [1000.0, 2000.0]  # geometric growth first


def test_a_capacity_above_the_cap_is_an_at_least() -> None:
    points = simulate(50000.0, 1000.0, max_rate=6000.0)
    assert [r for r, _ in points] == [1000.0, 2000.0, 4000.0, 6000.0]
    assert search.bracket(points) == (6000.0, None)
    assert simulate(50000.0, 9000.0, max_rate=6000.0) == [(6000.0, "sustainable")]


def test_a_service_failing_at_the_start_rate_is_searched_below_it() -> None:
    points = simulate(700.0, 4000.0, precision=0.1)
    assert points[0] == (4000.0, "unsustainable") and points[1][0] == 2000.0
    low, high = search.bracket(points)
    assert low is not None and high is not None and low < 700.0 <= high
    # below every rate the descent may try: unsustainable down to start / 2**3
    never = simulate(10.0, 4000.0)
    assert [r for r, _ in never] == [4000.0, 2000.0, 1000.0, 500.0]


def test_the_interval_widens_past_a_verdict_that_was_not_sure() -> None:
    pts = [Point(1000, "sustainable", True), Point(2000, "sustainable", True),
           Point(4000, "unsustainable", True), Point(3000, "sustainable", False),
           Point(3500, "unsustainable", False)]  # fmt: skip
    assert search.max_rate_interval(pts) == (2000, 4000)
    sure = [Point(p.load, p.status, True) for p in pts]
    assert search.max_rate_interval(sure) == (3000, 3500)
    at_least = [Point(1000, "sustainable", True), Point(2000, "sustainable", True)]
    assert search.max_rate_interval(at_least) == (2000, None)
    assert search.max_rate_interval([Point(500, "unsustainable", True)]) == (0.0, 500)


# -- early decisions ------------------------------------------------------------------------


def queue(rate_s: float, t_s: float, service_s: float, servers: int, seed: int = 0) -> Evidence:
    """A FIFO M/M/c queue fed Poisson arrivals, observed at ``t_s``: answers and in flight."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0, t_s, int(rate_s * t_s)))
    free = [0.0] * servers
    done = np.empty(arrivals.size)
    for i, a in enumerate(arrivals):
        start = max(a, heapq.heappop(free))
        done[i] = start + rng.exponential(service_s)
        heapq.heappush(free, done[i])
    answered = done <= t_s
    return Evidence(
        t_s, arrivals[answered], done[answered], np.ones(answered.sum(), bool), arrivals[~answered]
    )


RULE = DecisionRule(p95_s=0.25, success_rate=0.95, min_s=5.0, horizon_s=30.0)


def test_a_phase_well_below_capacity_is_sustainable_after_the_minimum_only() -> None:
    # M/M/4, D = 20 ms, ρ = 0.5: p95 ≈ 0.06 s, far under 0.8 × 0.25 s
    assert RULE.decide(queue(100, 4.0, 0.02, 4)) is None  # before min_s
    decision = RULE.decide(queue(100, 6.0, 0.02, 4))
    assert decision is not None and decision.status == "sustainable", decision
    soak = DecisionRule(p95_s=0.25, success_rate=0.95, min_s=5.0, soak=True)
    assert soak.decide(queue(100, 6.0, 0.02, 4)) is None  # a soak runs its length


def test_an_overloaded_phase_is_unsustainable_early_because_its_queue_grows() -> None:
    # ρ = 1.25: completions stay at 200/s while 250/s arrive
    decision = RULE.decide(queue(250, 4.0, 0.02, 4))
    assert decision is not None and decision.status == "unsustainable"
    assert "queue grows" in decision.reason or "p95 above" in decision.reason


def test_a_phase_near_the_slo_is_mostly_left_undecided_and_never_called_unsustainable() -> None:
    """M/M/4 at 185/s: p95 ≈ 0.21 s, between 0.8 × SLO = 0.2 s and the 0.25 s SLO. Eight
    seconds of it give no sure verdict on most sample paths (queueing makes them vary a
    lot); never the wrong one."""
    verdicts = [RULE.decide(queue(185, 8.0, 0.02, 4, seed=seed)) for seed in range(8)]
    assert all(v is None or v.status == "sustainable" for v in verdicts), verdicts
    assert sum(v is None for v in verdicts) >= 6, verdicts


def test_failures_make_a_phase_unsustainable() -> None:
    ev = queue(100, 6.0, 0.02, 4)
    ev.accepted[::5] = False  # 80 % success
    decision = RULE.decide(ev)
    assert decision is not None and decision.status == "unsustainable"
    assert "success" in decision.reason


def test_requests_stuck_in_flight_count_as_slow() -> None:
    """A server that stops answering: nothing completes, the requests in flight age."""
    arrivals = np.linspace(0, 6, 600)
    ev = Evidence(6.0, np.empty(0), np.empty(0), np.empty(0, bool), arrivals)
    decision = RULE.decide(ev)
    assert decision is not None and decision.status == "unsustainable"


# -- against the embedded reference target --------------------------------------------------


def context(
    tmp_path: Path, test: str, embedded: dict, p95_s: float, **sections: object
) -> TestContext:
    slo = {"p95_s": p95_s, "success_rate": 0.95}
    return embedded_context(
        tmp_path, test, embedded, slo, generator={"arrivals": "poisson"}, **sections
    )


def run_b1(tmp_path: Path, embedded: dict, p95_s: float, **b1: object) -> b1_capacity.B1Result:
    ctx = context(
        tmp_path, "B1", embedded, p95_s, b1_capacity={"search": "auto", "recovery_s": 5, **b1}
    )
    return run_sweep(ctx, b1_capacity)


@pytest.mark.timeout(360)
def test_b1_auto_finds_the_held_out_mm4_capacity_with_an_interval(tmp_path: Path) -> None:
    """The issue's case: M/M/4, D = 20 ms, p95 < 0.25 s (Erlang C: 11,247/min; measured
    10,780-11,150 on this machine), ``start_per_min: 3000``: the max sustainable rate lands
    in [10,000, 11,500]/min, with an interval around it, and the load time is recorded."""
    mm4 = {"workers": 4, "service_ms": 20, "service_dist": "exp"}
    run_dir = tmp_path / "first"
    run_dir.mkdir()
    res = run_b1(run_dir, mm4, 0.25, start_per_min=3000)
    if not 10_000 <= res.capacity["max_sustainable_rate_per_min"] <= 11_500:
        # Each early decision holds at 95 %, and a search makes about seven: now and then
        # one is wrong by design (seen: 10,125/min called unsustainable on a slope, about
        # one run in ten on a busy machine). A second, independent search must land.
        run_dir = tmp_path / "second"
        run_dir.mkdir()
        res = run_b1(run_dir, mm4, 0.25, start_per_min=3000)
    c, table = res.capacity, res.summary.to_string()
    # the theory the report shows beside it is Erlang C's for this target and SLO
    analytic = queueing.mmc_max_rate(50, 4, 0.25) * 60
    assert res.theory is not None
    assert res.theory["mmc_rate_at_slo_p95_per_min"] == pytest.approx(analytic)
    rate = c["max_sustainable_rate_per_min"]
    assert 10_000 <= rate <= 11_500, table
    low, high = c["max_sustainable_ci_per_min"]
    assert low <= rate < high, (c["max_sustainable_ci_per_min"], table)
    kinds = [p.stats.kind for p in res.phases]
    assert kinds[:2] == ["grow", "grow"] and "bisect" in kinds
    assert c["search"] == "auto" and 0 < c["search_load_s"] <= c["search_wall_s"]
    assert any(p.stats.decided for p in res.phases)  # phases stopped on their evidence
    saved = json.loads((run_dir / "session" / "results" / "B1.json").read_text())
    assert saved["capacity"]["max_sustainable_ci_per_min"] == [low, high]
    assert "Interval" in saved["capacity"]["recommendation"]


@pytest.mark.timeout(120)
def test_b1_auto_says_at_least_when_the_capacity_lies_above_the_cap(tmp_path: Path) -> None:
    """D/D/4 with D = 20 ms serves 12,000/min; the search stops at 3,000."""
    res = run_b1(tmp_path, {"workers": 4, "service_ms": 20, "service_dist": "const"}, 0.25,
                 start_per_min=1500, max_per_min=3000, min_phase_s=3)  # fmt: skip
    c = res.capacity
    assert [p.stats.offered_per_min for p in res.phases] == [1500, 3000]
    assert c["max_sustainable_rate_per_min"] == 3000 and c["max_sustainable_is_lower_bound"]
    assert c["max_sustainable_ci_per_min"] == [3000, None]
    assert "at least" in c["recommendation"] and "at least" in res.stopped


@pytest.mark.timeout(180)
def test_b1_auto_searches_below_a_start_rate_the_service_fails(tmp_path: Path) -> None:
    """One worker, D = 20 ms: 3,000/min at most; a 12,000/min start fails at once."""
    res = run_b1(tmp_path, {"workers": 1, "service_ms": 20, "service_dist": "const"}, 0.25,
                 start_per_min=12000, precision=0.2, min_phase_s=3, max_phase_s=8)  # fmt: skip
    c, table = res.capacity, res.summary.to_string()
    first = res.phases[0]
    assert first.stats.offered_per_min == 12000 and first.verdict.status == "unsustainable"
    assert first.stats.decided is not None and (first.stats.ran_s or 99) < 5, table
    assert "descend" in [p.stats.kind for p in res.phases]
    assert 1500 <= c["max_sustainable_rate_per_min"] < 3000, table
    assert c["first_unsustainable_rate_per_min"] <= 1.25 * 3000, table
    low, high = c["max_sustainable_ci_per_min"]
    assert low <= c["max_sustainable_rate_per_min"] and high is not None


@pytest.mark.timeout(180)
def test_b2_auto_grows_then_bisects_n(tmp_path: Path) -> None:
    """Closed loop on D/4, D = 20 ms: response N·D/4, so a 0.1 s SLO holds up to N ≈ 19."""
    ctx = context(tmp_path, "B2", {"workers": 4, "service_ms": 20, "service_dist": "const"},
                  0.1, b2_concurrency={"search": "auto", "start_concurrency": 4,
                                       "precision": 0.3, "duration_s": 4, "min_phase_s": 1.5,
                                       "recovery_s": 5})  # fmt: skip
    try:
        res = b2_concurrency.run(ctx, progress=False, echo=lambda _: None)
    finally:
        ctx.close()
    c, table = res.capacity, res.summary.to_string()
    levels = [p.stats.concurrency for p in res.phases]
    assert levels[:3] == [4, 8, 16], table
    assert 12 <= c["max_sustainable_concurrency"] <= 20, table
    assert c["first_unsustainable_concurrency"] <= 32, table
    assert c["max_sustainable_concurrency_ci"] is not None
    assert [p.stats.kind for p in res.phases].count("bisect") >= 1


@pytest.mark.timeout(180)
def test_b1_a_failed_soak_moves_the_result_down_one_step(tmp_path: Path) -> None:
    """The search sustains its 3,000/min cap within seconds; the target then goes down
    (a scheduled outage from 16 s after it started) during the 30 s soak at 3,000/min,
    so the soak fails and the result moves down to the step below, 1,500/min."""
    res = run_b1(tmp_path, {"workers": 4, "service_ms": 20, "service_dist": "const",
                            "outages": [[16.0, 60.0]]}, 0.25,
                 start_per_min=1500, max_per_min=3000, min_phase_s=3, confirm_s=30)  # fmt: skip
    c, table = res.capacity, res.summary.to_string()
    assert [p.stats.kind for p in res.phases] == ["grow", "grow", "confirm"], table
    soak = c["confirmation"]
    assert soak["rate_per_min"] == 3000 and soak["status"] == "unsustainable", table
    assert soak["moved_down_to_per_min"] == 1500
    assert c["max_sustainable_rate_per_min"] == 1500
    assert "soak at 3,000/min failed" in c["recommendation"]
