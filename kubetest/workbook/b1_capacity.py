"""B1 — alert processing capacity (the guide's B1), found rather than stepped over.

Open-loop phases at the params' rates, a recovery pause between them (``/health`` probed
until it answers, at most ``recovery_s``), stopping at the breaking point (success below
``stop_below_success``) or when the generator itself saturates (higher rates would only
measure the generator; a saturated phase is first run once more, since one stall of a
busy machine says nothing about the next). With ``refine``, the rate is then bisected
between the last sustainable and the first unsustainable phase until that bracket is
within 5 %, in at most ``MAX_REFINE_PHASES`` extra phases, each half as long as the
shorter bracketing phase (at least ``REFINE_MIN_S`` s). The guide's ``max = avg × 1.5``
is not copied: every percentile is measured. Rules of a sustainable phase:
``kubetest.analysis.capacity``.

That is ``search: grid``. ``search: auto`` grows the rate ×2 from ``start_per_min`` until a
phase is unsustainable (descends when the start already is), then bisects to
``precision``; each phase stops as soon as its verdict is sure and recovery waits for the
service's in-flight count (``kubetest.analysis.search``). Either way the max sustainable
rate gets an interval and the load time is recorded; ``confirm_s`` soaks at the rate found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from kubetest.analysis.capacity import (
    MAX_REFINE_PHASES,
    bracket,
    judge_rate_phase,
    measure_phase,
    rate_capacity,
    rate_requirement,
    refine_duration_s,
    refine_next,
)
from kubetest.analysis.queueing import reference_theory
from kubetest.analysis.search import DecisionRule, next_rate
from kubetest.analysis.verdicts import Requirement, apply_validity
from kubetest.engine import schedule
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import execute, make_plan
from kubetest.workbook.sweep import (
    Phase,
    Recovery,
    SweepLoop,
    SweepViews,
    auto_stopped,
    interval,
    load_seconds,
    phases_table,
    relative,
    sweep_result,
    sweep_validity,
)

#: The guide's B1 sends random alert types.
TYPES = ["random"]
#: A generator-limited grid phase is run this often before the sweep stops there.
GRID_TRIES = 2


@dataclass
class B1Result(SweepViews):
    phases: list[Phase]
    capacity: dict[str, Any]
    requirement: Requirement
    stopped: str
    theory: dict[str, Any] | None = None

    @property
    def summary(self) -> pd.DataFrame:
        """The phases table's key columns, sorted by offered rate."""
        cols = ["phase", "kind", "label", "duration_s", "status", "success_rate", "p50_s",
                "p95_s", "p99_s", "max_s", "throughput_per_min", "keep_up", "reasons"]  # fmt: skip
        t = self.table
        return t if t.empty else t.sort_values(["offered_per_min", "phase"])[cols]


def arrivals(kind: str, rate_s: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """A phase's schedule. Poisson arrivals are drawn *given their count* (sorted uniform
    times: the same process, conditioned on n = rate × duration), so a short phase offers
    exactly its nominal rate; an unconditioned 3 s phase at 150/s is off by ±5 % (1 σ),
    which would blur the bisection."""
    if kind != "poisson":
        return schedule.constant(rate_s, duration_s)
    n = int(math.floor(rate_s * duration_s + 1e-9))
    return np.sort(np.random.default_rng(seed).uniform(0.0, duration_s, n))


def _run_phase(
    ctx: TestContext, index: int, kind: str, rate_per_min: float, duration_s: float,
    recovery: Recovery | None, progress: bool | None, decide: DecisionRule | None = None,
) -> Phase:  # fmt: skip
    rate_s = rate_per_min / 60.0
    sched = arrivals(ctx.params.generator.arrivals, rate_s, duration_s, seed=index)
    plan = make_plan(
        ctx, TYPES, mode="open", schedule=sched, target_rate_per_s=rate_s, decide=decide
    )
    outcome = execute(ctx, plan, f"{ctx.test}_p{index:02d}", progress)
    stats = measure_phase(
        outcome.records, index=index, kind=kind, duration_s=duration_s,
        offered_per_min=rate_per_min, load_summary=outcome.load.summary,
        validity=outcome.validity(),
    )  # fmt: skip
    slo, sec = ctx.params.slo, ctx.section
    verdict = judge_rate_phase(
        stats,
        p95_s=slo.p95_s,
        success_rate=slo.success_rate,
        stop_below_success=sec.stop_below_success,
    )
    return Phase(stats, verdict, outcome, relative(ctx, outcome.load.records_path), recovery)


def _theory(ctx: TestContext) -> dict[str, Any] | None:
    if not ctx.params.target.is_embedded:
        return None
    e = ctx.params.target.embedded
    return reference_theory(e.workers, e.service_ms / 1000.0, e.service_dist, ctx.params.slo.p95_s)


def search_figures(
    phases: list[Phase], rule: DecisionRule, cap: dict[str, Any], started: datetime,
    search: str, confirmation: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """The search's keys of B1's ``capacity``: the interval on the max sustainable rate,
    the load time it took, and the soak's outcome; the recommendation gets the interval."""
    low, high = interval(phases, rule)
    out: dict[str, Any] = {
        "search": search,
        "max_sustainable_ci_per_min": [low, high] if low is not None else None,
        "search_load_s": load_seconds(phases),
        "search_wall_s": (datetime.now(UTC) - started).total_seconds(),
        "confirmation": confirmation,
    }
    rate = cap.get("max_sustainable_rate_per_min")
    if rate is not None and low is not None:
        top = f"{high:,.0f}" if high is not None else "open above"
        out["recommendation"] = f"{cap['recommendation']} Interval: {low:,.0f} to {top}/min."
    if confirmation and confirmation.get("moved_down_to_per_min") is not None:
        out["recommendation"] = (
            f"{out.get('recommendation', cap['recommendation'])} The {confirmation['duration_s']:g}"
            f" s soak at {confirmation['rate_per_min']:,.0f}/min failed: the result moved down "
            f"one step, to {confirmation['moved_down_to_per_min']:,.0f}/min."
        )
    return out


def search_line(cap: dict[str, Any]) -> str:
    """The console's line on the search: the interval and what it cost."""
    ci = cap.get("max_sustainable_ci_per_min")
    span = "no interval"
    if ci:
        span = f"interval {ci[0]:,.0f} to " + (f"{ci[1]:,.0f}/min" if ci[1] else "open above")
    return (
        f"B1 search ({cap.get('search')}): {span}; {cap.get('search_load_s', 0):.0f} s of "
        f"load in {cap.get('phases_tested')} phases, {cap.get('search_wall_s', 0):.0f} s "
        "in all"
    )


class _Sweep(SweepLoop):
    """The B1 loop: ``SweepLoop`` over rates, with bisection and the confirmation soak."""

    def __init__(self, ctx: TestContext, progress: bool | None, echo: Callable[[str], None]):
        super().__init__(ctx, progress, echo, stopped="every phase ran")
        self.slo = ctx.params.slo
        self.theory = _theory(ctx)
        self.confirmation: dict[str, Any] | None = None

    def result(self, complete: bool = True) -> B1Result:
        table = phases_table(self.phases)
        cap = rate_capacity(table)
        cap.update(search_figures(self.phases, self.rule, cap, self.started, self.sec.search,
                                  self.confirmation))  # fmt: skip
        samples = int(table["requests"].sum()) if not table.empty else 0
        req = rate_requirement(
            cap, p95_s=self.slo.p95_s, success_rate=self.slo.success_rate, samples=samples
        )
        apply_validity(req, sweep_validity(self.phases, complete=complete))
        return B1Result(self.phases, cap, req, self.stopped, self.theory)

    def save(self, complete: bool) -> B1Result:
        res = self.result(complete)
        self.ctx.save_result({
            **sweep_result(self.ctx, self.phases, res.table, title="B1 alert capacity",
                           started=self.started, complete=complete, stopped=res.stopped),
            "requirements": [res.requirement.as_dict()],
            "capacity": res.capacity,
            "theory": self.theory,
        })  # fmt: skip
        return res

    def step(
        self, kind: str, rate: float, duration_s: float, decide: DecisionRule | None = None
    ) -> Phase | None:
        """Recover (after the first phase), run one phase, record it; ``None`` = halted."""
        return self.advance(
            lambda index, recovery: _run_phase(
                self.ctx, index, kind, rate, duration_s, recovery, self.progress, decide
            )
        )

    def grid(self) -> None:
        """The params' phases in order, until the breaking point or the generator's limit.
        A generator-limited phase is run once more first: a busy machine stalls briefly."""
        for rate, minutes in self.sec.phases:
            for _ in range(GRID_TRIES):
                phase = self.step("grid", float(rate), float(minutes) * 60.0)
                if phase is None or self.halted or phase.verdict.status != "generator-limited":
                    break
            if phase is None or self.halted:
                return
            if phase.verdict.status == "generator-limited":
                self.stopped = (
                    f"the load generator saturated at {phase.label}: higher rates would "
                    "measure the generator (add generator.workers)"
                )
                return
            if phase.verdict.broken:
                self.stopped = (
                    f"breaking point: success {phase.stats.latency.success.value:.1%} "
                    f"< {self.sec.stop_below_success:.0%} at {phase.label}"
                )
                return

    def refine(self) -> None:
        """Bisect the bracket [last sustainable, first unsustainable] down to 5 %."""
        for _ in range(MAX_REFINE_PHASES):
            points = [(p.stats.offered_per_min or 0.0, p.verdict.status) for p in self.phases]
            rate = refine_next(points)
            if rate is None:
                return
            ends = bracket(points)
            durations = [p.stats.duration_s for p in self.phases if p.stats.offered_per_min in ends]
            if self.step("refine", rate, refine_duration_s(durations)) is None or self.halted:
                return

    def auto(self) -> None:
        """Grow geometrically until a phase is unsustainable, then bisect to the precision;
        each phase stops once its verdict is clear (``kubetest.analysis.search``)."""
        sec = self.sec
        while not self.halted:
            points = [(p.stats.offered_per_min or 0.0, p.verdict.status) for p in self.phases]
            nxt = next_rate(
                points, sec.start_per_min, max_rate=sec.max_per_min, precision=sec.precision
            )
            if nxt is None:
                self.stopped = auto_stopped(points, sec.max_per_min)
                return
            rate, why = nxt
            tries = [p for p in self.phases if abs((p.stats.offered_per_min or 0) - rate) < 1e-6]
            if why != "bisect" and len(tries) >= GRID_TRIES:
                self.stopped = (
                    f"no evidence at {rate:,.0f}/min in {GRID_TRIES} tries "
                    f"({tries[-1].verdict.status}): {why} stopped there"
                )
                return
            if self.step(why, rate, sec.max_phase_s, self.rule) is None:
                return

    def confirm(self) -> None:
        """Soak at the rate found for ``confirm_s``; a failure moves the result down."""
        cap = rate_capacity(phases_table(self.phases))
        rate = cap["max_sustainable_rate_per_min"]
        if not rate or self.halted:
            return
        soak = replace(self.rule, min_s=self.sec.confirm_s, soak=True)
        phase = self.step("confirm", rate, self.sec.confirm_s, soak)
        if phase is None:
            return
        moved = rate_capacity(phases_table(self.phases))["max_sustainable_rate_per_min"]
        self.confirmation = {
            "rate_per_min": rate,
            "duration_s": self.sec.confirm_s,
            "status": phase.verdict.status,
            "reasons": phase.verdict.reasons,
            "moved_down_to_per_min": moved if moved != rate else None,
        }


def run(
    ctx: TestContext, progress: bool | None = None, echo: Callable[[str], None] = print
) -> B1Result:
    """Run the search (``auto``: grow, bisect; ``grid``: the phases, then bisection), judge
    every phase, optionally soak at the rate found, save ``results/B1.json``."""
    sweep = _Sweep(ctx, progress, echo)
    if ctx.section.search == "auto":
        sweep.auto()
    else:
        sweep.grid()
        if ctx.section.refine and not sweep.halted:
            sweep.refine()
    if ctx.section.confirm_s > 0 and not sweep.halted:
        sweep.confirm()
    done = bool(sweep.phases) and not any(p.stats.interrupted for p in sweep.phases)
    res = sweep.save(complete=done)
    echo(res.capacity["recommendation"])
    echo(search_line(res.capacity))
    return res
