"""B2 — concurrent request capacity (the guide's B2), with a scalability model.

Closed-loop levels (N clients, each sending its next alert as soon as the last one is
answered) for ``duration_s`` each, a recovery pause between levels, stopping below
``stop_below_success`` or where the generator cannot hold N in flight (twice: one stall
of a busy machine is retried). A level is sustainable at success ≥ the SLO's rate and p95 < the
SLO's p95, provided the generator really held N in flight. Throughput against N is fitted
with the Universal Scalability Law (predicted peak, contention σ, coherency κ), and each
level is checked against Little's law (N = X·R): a level far off it was not the closed
loop it claims to be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from kubetest.analysis.capacity import (
    concurrency_capacity,
    judge_concurrency_level,
    measure_phase,
)
from kubetest.analysis.usl import UslFit
from kubetest.tls import verify
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import execute, make_plan
from kubetest.workbook.sweep import (
    Phase,
    Recovery,
    SweepViews,
    echo_phase,
    phases_table,
    relative,
    sweep_result,
    wait_for_health,
)

TYPES = ["high_memory", "high_cpu", "pod_crash"]
#: A generator-limited level is run this often before the sweep stops there.
LEVEL_TRIES = 2


@dataclass
class B2Result(SweepViews):
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
    ctx: TestContext, index: int, n: int, recovery: Recovery | None, progress: bool | None
) -> Phase:
    sec, slo = ctx.section, ctx.params.slo
    plan = make_plan(ctx, TYPES, mode="closed", concurrency=n, duration_s=sec.duration_s)
    outcome = execute(ctx, plan, f"{ctx.test}_p{index:02d}", progress)
    stats = measure_phase(
        outcome.records, index=index, kind="level", duration_s=sec.duration_s, concurrency=n,
        load_summary=outcome.load.summary, validity=outcome.validity(),
    )  # fmt: skip
    verdict = judge_concurrency_level(
        stats, p95_s=slo.p95_s, success_rate=slo.success_rate,
        stop_below_success=sec.stop_below_success,
    )  # fmt: skip
    return Phase(stats, verdict, outcome, relative(ctx, outcome.load.records_path), recovery)


def run(
    ctx: TestContext, progress: bool | None = None, echo: Callable[[str], None] = print
) -> B2Result:
    """Run the levels, judge each, fit the USL, save ``results/B2.json``."""
    sec = ctx.section
    started = datetime.now(UTC)
    phases: list[Phase] = []
    stopped = "every level ran"

    def save(complete: bool) -> B2Result:
        table = phases_table(phases)
        cap, fit = concurrency_capacity(table)
        ctx.save_result({
            **sweep_result(ctx, phases, table, title="B2 concurrency capacity",
                           started=started, complete=complete, stopped=stopped),
            "requirements": [],
            "capacity": cap,
            "usl": fit.as_dict() if fit else None,
        })  # fmt: skip
        return B2Result(phases, cap, fit, stopped)

    for n in sec.levels:
        phase = None
        for _ in range(LEVEL_TRIES):  # a generator-limited level is run once more
            recovery = (
                wait_for_health(ctx.health_url, sec.recovery_s,
                                verify=verify(ctx.params.target.tls))
                if phases else None
            )  # fmt: skip
            if recovery is not None and not recovery.healthy:
                stopped = (f"the service did not answer {ctx.health_url} healthy within "
                           f"recovery_s = {sec.recovery_s:g} s ({recovery.note})")  # fmt: skip
                phase = None
                break
            phase = _run_level(ctx, len(phases) + 1, int(n), recovery, progress)
            phases.append(phase)
            echo_phase(echo, phase)
            save(complete=False)
            if phase.verdict.status != "generator-limited" or phase.stats.interrupted:
                break
        if phase is None:
            break
        if phase.stats.interrupted:
            stopped = f"interrupted during {phase.label}"
            break
        if phase.verdict.broken:
            stopped = (f"limit reached: success {phase.stats.latency.success.value:.1%} < "
                       f"{sec.stop_below_success:.0%} at {phase.label}")  # fmt: skip
            break
        if phase.verdict.status == "generator-limited":
            stopped = f"the load generator could not hold {phase.label} in flight"
            break
    res = save(complete=bool(phases) and all(not p.stats.interrupted for p in phases))
    echo(res.capacity["concurrency_recommendation"])
    return res
