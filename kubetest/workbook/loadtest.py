"""Shared steps of the load-based tests: build a plan from params, run it, summarise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kubetest.alerts import PayloadFactory
from kubetest.analysis.latency import LatencySummary, summarise
from kubetest.checks import preflight_auth
from kubetest.engine import LoadPlan, LoadResult, read_records, run_load, schedule
from kubetest.workbook.context import TestContext


@dataclass
class LoadOutcome:
    """A finished load run: the engine's own summary, the records and their analysis."""

    load: LoadResult
    records: pd.DataFrame
    latency: LatencySummary

    @property
    def saturated(self) -> bool:
        return bool(self.load.summary.get("saturated"))

    @property
    def complete(self) -> bool:
        return not self.load.interrupted

    def generator_health(self) -> dict[str, Any]:
        s = self.load.summary
        keys = ("target_rate_per_s", "achieved_rate_per_s", "schedule_lag_p99", "loop_busy",
                "late_or_dropped", "saturated", "saturation_reasons", "workers")  # fmt: skip
        return {k: s.get(k) for k in keys}


def open_loop_schedule(ctx: TestContext, rate_per_min: float, duration_min: float) -> np.ndarray:
    rate_s, duration_s = rate_per_min / 60.0, duration_min * 60.0
    if ctx.params.generator.arrivals == "poisson":
        return schedule.poisson(rate_s, duration_s)
    return schedule.constant(rate_s, duration_s)


def make_plan(ctx: TestContext, types: list[str], **mode: Any) -> LoadPlan:
    target, gen = ctx.params.target, ctx.params.generator
    return LoadPlan(
        url=ctx.target_url,
        api=target.api,
        timeout_s=target.timeout_s,
        max_in_flight=gen.max_in_flight,
        payload=PayloadFactory(
            types, unique=ctx.params.alerts.unique, api=target.api,
            namespace=ctx.params.alerts.namespace,
        ),  # fmt: skip
        auth_token_env=target.auth_token_env,
        **mode,
    )


def execute(
    ctx: TestContext, plan: LoadPlan, name: str, progress: bool | None = None
) -> LoadOutcome:
    gen = ctx.params.generator
    preflight_auth(ctx.params, plan.url)  # a refused token fails here, in one line
    load = run_load(
        plan, ctx.records_dir, name=name, workers=gen.workers, scheduler=gen.scheduler,
        records_url=gen.records_url, progress=progress,
    )  # fmt: skip
    records = read_records(load.records_path)
    return LoadOutcome(load, records, summarise(records))
