"""B2 — concurrent request capacity (the guide's B2), with a scalability model.

Closed-loop levels (N clients, each sending its next alert as soon as the last one is
answered) for ``duration_s`` each, a recovery pause between levels, stopping below
``stop_below_success`` or where the generator cannot hold N in flight (twice: one stall
of a busy machine is retried). A level is sustainable at success ≥ the SLO's rate and p95 < the
SLO's p95, provided the generator really held N in flight. Throughput against N is fitted
with the Universal Scalability Law (predicted peak, contention σ, coherency κ), and each
level is checked against Little's law (N = X·R): a level far off it was not the closed
loop it claims to be. ``search: auto`` doubles N from ``start_concurrency`` instead, then
bisects, each level stopping once its verdict is sure (``kubetest.analysis.search``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kubetest.analysis.capacity import (
    bracket,
    concurrency_capacity,
    judge_concurrency_level,
    measure_phase,
)
from kubetest.analysis.search import DecisionRule, next_rate
from kubetest.analysis.usl import UslFit
from kubetest.workbook import sweep
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import execute, make_plan
from kubetest.workbook.sweep import Phase, SweepLoop

TYPES = ["high_memory", "high_cpu", "pod_crash"]
#: A generator-limited level is run this often before the sweep stops there.
LEVEL_TRIES = 2


@dataclass
class B2Result(sweep.SweepViews):
    phases: list[Phase]
    capacity: dict[str, Any]
    usl: UslFit | None
    stopped: str

    @property
    def summary(self) -> pd.DataFrame:
        cols = ["phase", "concurrency", "duration_s", "status", "success_rate", "p50_s", "p95_s",
                "p99_s", "throughput_per_min", "in_flight_mean", "reasons"]  # fmt: skip
        t = self.table
        return t if t.empty else t[cols]

    @property
    def littles_law(self) -> pd.DataFrame:
        """Per level: N, measured X and R, X·R and its distance from N."""
        t = self.table
        if t.empty:
            return t
        return t[["concurrency", "throughput_per_min", "window_mean_latency_s", "little_x_r",
                  "in_flight_mean", "little_error"]]  # fmt: skip


def _run_level(
    ctx: TestContext, index: int, n: int, recovery: sweep.Recovery | None, progress: bool | None,
    kind: str = "level", decide: DecisionRule | None = None,
) -> Phase:  # fmt: skip
    sec, slo = ctx.section, ctx.params.slo
    plan = make_plan(
        ctx, TYPES, mode="closed", concurrency=n, duration_s=sec.duration_s, decide=decide
    )
    outcome = execute(ctx, plan, f"{ctx.test}_p{index:02d}", progress)
    stats = measure_phase(
        outcome.records, index=index, kind=kind, duration_s=sec.duration_s, concurrency=n,
        load_summary=outcome.load.summary, validity=outcome.validity(),
    )  # fmt: skip
    verdict = judge_concurrency_level(
        stats,
        p95_s=slo.p95_s,
        success_rate=slo.success_rate,
        stop_below_success=sec.stop_below_success,
    )
    return Phase(stats, verdict, outcome, sweep.relative(ctx, outcome.load.records_path), recovery)


def next_level(
    phases: list[Phase], start: int, cap: int | None, precision: float
) -> tuple[int, str] | None:
    """``search: auto``'s next N (``analysis.search.next_rate`` on integers): ``None`` once
    the bracket is one level wide or within the precision."""
    points = [(float(p.stats.concurrency or 0), p.verdict.status) for p in phases]
    nxt = next_rate(points, float(start), max_rate=float(cap) if cap else None, precision=precision)
    if nxt is None:
        return None
    n = max(1, int(round(nxt[0])))
    low, high = bracket(points)
    if nxt[1] == "bisect" and (n <= (low or 0) or (high is not None and n >= high)):
        return None
    return n, nxt[1]


class _Levels(SweepLoop):
    """The B2 loop: ``SweepLoop`` over in-flight levels."""

    def __init__(self, ctx: TestContext, progress: bool | None, echo: Callable[[str], None]):
        super().__init__(ctx, progress, echo, stopped="every level ran")

    def save(self, complete: bool) -> B2Result:
        table = sweep.phases_table(self.phases)
        cap, fit = concurrency_capacity(table)
        low, high = sweep.interval(self.phases, self.rule)
        cap.update(
            {
                "concurrency_search": self.sec.search,
                "max_sustainable_concurrency_ci": [low, high] if low is not None else None,
                "concurrency_search_load_s": sweep.load_seconds(self.phases),
            }
        )
        self.ctx.save_result({
            **sweep.sweep_result(self.ctx, self.phases, table, title="B2 concurrency capacity",
                           started=self.started, complete=complete, stopped=self.stopped),
            "requirements": [],
            "capacity": cap,
            "usl": fit.as_dict() if fit else None,
        })  # fmt: skip
        return B2Result(self.phases, cap, fit, self.stopped)

    def level(self, n: int, kind: str) -> Phase | None:
        """Recover, run level N, record it; ``None`` when it should end the sweep."""
        rule = self.rule if self.sec.search == "auto" else None
        phase = self.advance(
            lambda index, recovery: _run_level(
                self.ctx, index, n, recovery, self.progress, kind, rule
            )
        )
        return None if phase is None or self.halted else phase

    def grid(self) -> None:
        for n in self.sec.levels:
            phase = None
            for _ in range(LEVEL_TRIES):  # a generator-limited level is run once more
                phase = self.level(int(n), "level")
                if phase is None or phase.verdict.status != "generator-limited":
                    break
            if phase is None:
                return
            if phase.verdict.broken:
                self.stopped = (
                    f"limit reached: success {phase.stats.latency.success.value:.1%} < "
                    f"{self.sec.stop_below_success:.0%} at {phase.label}"
                )
                return
            if phase.verdict.status == "generator-limited":
                self.stopped = f"the load generator could not hold {phase.label} in flight"
                return

    def auto(self) -> None:
        """Double N until a level is unsustainable, then bisect; each level stops early."""
        sec = self.sec
        while True:
            nxt = next_level(self.phases, sec.start_concurrency, sec.max_concurrency, sec.precision)
            if nxt is None:
                points = [(float(p.stats.concurrency or 0), p.verdict.status) for p in self.phases]
                self.stopped = sweep.auto_stopped(points, sec.max_concurrency)
                return
            n, why = nxt
            tries = [p for p in self.phases if p.stats.concurrency == n]
            if len(tries) >= LEVEL_TRIES:
                self.stopped = f"the load generator could not hold N={n:,} in flight"
                return
            if self.level(n, why) is None:
                return


def run(
    ctx: TestContext, progress: bool | None = None, echo: Callable[[str], None] = print
) -> B2Result:
    """Run the levels (``grid``) or search N (``auto``), judge each, fit the USL, save
    ``results/B2.json``."""
    loop = _Levels(ctx, progress, echo)
    if ctx.section.search == "auto":
        loop.auto()
    else:
        loop.grid()
    phases = loop.phases
    res = loop.save(complete=bool(phases) and all(not p.stats.interrupted for p in phases))
    echo(res.capacity["concurrency_recommendation"])
    ci = res.capacity.get("max_sustainable_concurrency_ci")
    if ctx.section.search == "auto" and ci:
        top = f"{ci[1]:,.0f}" if ci[1] is not None else "open above"
        echo(
            f"B2 search (auto): interval N = {ci[0]:,.0f} to {top}; "
            f"{res.capacity['concurrency_search_load_s']:.0f} s of load"
        )
    return res
