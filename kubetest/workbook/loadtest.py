"""Shared steps of the load-based tests: build a plan from params, run it, summarise.

Every load is watched from the service's side too: its metrics are scraped while it runs
(``kubetest.metrics``) and, once it is over, what it accepted is reconciled with what the
service handled (``kubetest.analysis.integrity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from kubetest.alerts import PayloadFactory
from kubetest.analysis.gateway_counters import cross_check
from kubetest.analysis.integrity import IntegrityCheck, IntegrityWatch
from kubetest.analysis.latency import LatencySummary, summarise
from kubetest.checks import preflight_auth
from kubetest.engine import LoadPlan, LoadResult, read_records, run_load, schedule
from kubetest.metrics import read_metrics, scrape_metrics
from kubetest.workbook.context import TestContext


@dataclass
class LoadOutcome:
    """A finished load run: the engine's own summary, the records and their analysis."""

    load: LoadResult
    records: pd.DataFrame
    latency: LatencySummary
    service_metrics: dict[str, Any] = field(default_factory=dict)
    integrity: IntegrityCheck | None = None
    gateway_counters: dict[str, Any] | None = None  # a real Kubernaut gateway only

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

    def service_result(self) -> dict[str, Any]:
        """The result-file keys of the service's side: ``service_metrics``, and
        ``integrity`` (the counts, only when reconciled) with ``integrity_check``, and
        ``gateway_counters`` (the gateway's counters against kubetest's counts)."""
        out: dict[str, Any] = {"service_metrics": self.service_metrics}
        if self.gateway_counters is not None:
            out["gateway_counters"] = self.gateway_counters
        if self.integrity is not None:
            out["integrity_check"] = self.integrity.as_dict()
            if self.integrity.checked:
                out["integrity"] = self.integrity.counts()
        return out

    def result_fields(self, ctx: TestContext, title: str, started: datetime) -> dict[str, Any]:
        """What every load test's result file holds about its run (A1, A2)."""
        return {
            "title": title,
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "complete": self.complete,
            "latency": self.latency.as_dict(),
            "load": self.load.summary,
            "records": str(self.load.records_path.relative_to(ctx.session_dir)),
            "params": ctx.section.model_dump(),
            **self.service_result(),
        }


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
    watch = IntegrityWatch.begin(ctx)  # the history's length before any alert is sent
    with scrape_metrics(ctx, name) as scrape:
        load = run_load(
            plan, ctx.records_dir, name=name, workers=gen.workers, scheduler=gen.scheduler,
            records_url=gen.records_url, progress=progress,
        )  # fmt: skip
        scrape.align(load.summary)
    records = read_records(load.records_path)
    wait_s = 0.0 if load.interrupted else ctx.params.target.integrity_wait_s
    check = watch.check(records, plan.payload.run, wait_s)
    counters = None  # a real gateway's counters (the embedded target keeps its own)
    if ctx.params.target.api == "kubernaut" and not ctx.params.target.is_embedded:
        counters = cross_check(read_metrics(scrape.path), load.summary, scrape.source)
    return LoadOutcome(load, records, summarise(records), scrape.summary(), check, counters)
