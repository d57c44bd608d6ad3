"""Shared steps of the load-based tests: build a plan from params, run it, summarise.

Every load is watched from the service's side too: its metrics are scraped while it runs
(``kubetest.metrics``) and, once it is over, what it accepted is reconciled with what the
service handled (``kubetest.analysis.integrity``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from kubetest import tls
from kubetest.analysis.gateway_counters import cross_check
from kubetest.analysis.integrity import IntegrityCheck, IntegrityWatch
from kubetest.analysis.latency import LatencySummary, summarise
from kubetest.analysis.service_metrics import read_metrics
from kubetest.analysis.validity import Validity, load_validity
from kubetest.checks import preflight_auth
from kubetest.engine import LoadPlan, LoadResult, read_records, run_load, schedule
from kubetest.engine.abort import AbortRule
from kubetest.engine.pool import WorkloadScheduler, needed_workloads
from kubetest.metrics import scrape_metrics
from kubetest.payloads import PayloadFactory
from kubetest.remediation import RemediationFollower, follower_from_params
from kubetest.workbook.context import TestContext, result_head


@dataclass
class LoadOutcome:
    """A finished load run: the engine's own summary, the records and their analysis."""

    load: LoadResult
    records: pd.DataFrame
    latency: LatencySummary
    service_metrics: dict[str, Any] = field(default_factory=dict)
    integrity: IntegrityCheck | None = None
    gateway_counters: dict[str, Any] | None = None  # a real Kubernaut gateway only
    pool: dict[str, Any] | None = None  # how the workload pool served it (pool_report)

    @property
    def saturated(self) -> bool:
        return bool(self.load.summary.get("saturated"))

    @property
    def complete(self) -> bool:
        return not self.load.interrupted

    @property
    def aborted(self) -> str | None:
        """The SLO abort's reason when it stopped the load (``slo.abort``)."""
        return self.load.summary.get("aborted")

    def validity(self) -> Validity:
        """Whether this load measured the service (``kubetest.analysis.validity``)."""
        return load_validity(self.load.summary, self.service_metrics)

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
        if self.pool is not None:
            out["workload_pool"] = self.pool
        if self.integrity is not None:
            out["integrity_check"] = self.integrity.as_dict()
            if self.integrity.checked:
                out["integrity"] = self.integrity.counts()
        return out

    def result_fields(self, ctx: TestContext, title: str, started: datetime) -> dict[str, Any]:
        """What every load test's result file holds about its run (A1, A2)."""
        return {
            **result_head(title, started, complete=self.complete),
            "aborted": self.aborted,
            "validity": self.validity().as_dict(),
            "latency": self.latency.as_dict(),
            "load": self.load.summary,
            "records": str(self.load.records_path.relative_to(ctx.session_dir)),
            "params": ctx.section.model_dump(),
            **self.service_result(),
        }


class LoadViews:
    """Tables every single-load result (A1, A2) shows, from its ``outcome``."""

    outcome: LoadOutcome

    @property
    def table(self) -> pd.DataFrame:
        return self.outcome.latency.table()

    @property
    def records(self) -> pd.DataFrame:
        return self.outcome.records


def open_loop_schedule(ctx: TestContext, rate_per_min: float, duration_min: float) -> np.ndarray:
    rate_s, duration_s = rate_per_min / 60.0, duration_min * 60.0
    if ctx.params.generator.arrivals == "poisson":
        return schedule.poisson(rate_s, duration_s)
    return schedule.constant(rate_s, duration_s)


def abort_rule(ctx: TestContext) -> AbortRule | None:
    """The params' ``slo.abort`` as the engine's rule (None: ``slo.abort: null``)."""
    a = ctx.params.slo.abort
    if a is None:
        return None
    p95 = a.p95_s if a.p95_s is not None else 2 * ctx.params.slo.p95_s
    return AbortRule(a.window_s, a.consecutive, p95, a.success_below)


def make_plan(ctx: TestContext, types: list[str], **mode: Any) -> LoadPlan:
    target, gen = ctx.params.target, ctx.params.generator
    mode.setdefault("abort", abort_rule(ctx))
    pool = ctx.pool()
    if pool is not None:  # unique: false names one workload on purpose (the dedup path)
        names = pool.names if ctx.params.alerts.unique else pool.names[:1]
        mode.setdefault("pool", WorkloadScheduler(names, pool.namespace))
    return LoadPlan(
        url=ctx.target_url,
        api=target.api,
        timeout_s=target.timeout_s,
        max_in_flight=gen.max_in_flight,
        max_body_bytes=gen.max_body_bytes,
        client=gen.client,
        records_max_per_s=ctx.params.records.max_per_s,
        hdr_interval_s=ctx.params.records.hdr_interval_s,
        payload=PayloadFactory(
            types,
            unique=ctx.params.alerts.unique,
            api=target.api,
            namespace=ctx.params.alerts.namespace,
        ),
        auth_token_env=target.auth_token_env,
        tls=tls.settings(target.tls),
        **mode,
    )


def connect_pool(follower: RemediationFollower, scheduler: WorkloadScheduler) -> None:
    """Let the follower tell the scheduler which workloads' RRs are live or ended, and
    the scheduler tell the follower the controller namespace the first 201 names."""
    terminal = set(follower.terminal)
    follower.on_phase(
        lambda obs: scheduler.remediation(obs.fingerprint, obs.name, obs.phase in terminal)
    )
    scheduler.on_controller_namespace(follower.add_namespace)


@contextmanager
def _pool_follower(
    ctx: TestContext, plan: LoadPlan, follower: RemediationFollower | None
) -> Iterator[RemediationFollower | None]:
    """With a workload pool, a follower must run during the load (workloads become free
    when their RR ends): the caller's, or one for this load alone."""
    if plan.pool is None:
        yield follower
        return
    own = None
    if follower is None:
        own = follower = follower_from_params(ctx.params)
    if follower is not None:
        connect_pool(follower, plan.pool)
        follower.start()
    try:
        yield follower
    finally:
        if own is not None:
            own.stop()


def pool_report(
    scheduler: WorkloadScheduler, load_summary: dict[str, Any], lifetime_s: float | None
) -> dict[str, Any]:
    """How the pool served the load; ``finding`` when alerts had to go to busy workloads:
    the pool was smaller than rate × time to terminal (Little's law)."""
    stats = scheduler.stats
    out: dict[str, Any] = {**stats.as_dict(), "lifetime_s": lifetime_s}
    # each alert the gateway took in would have made a RemediationRequest had its workload
    # been free: 201s and 202s; a throttled or refused answer (returned at once, by the
    # thousand in a closed loop) would not, and keeps no workload busy
    duration = float(load_summary.get("duration_s") or 0.0)
    outcomes = load_summary.get("outcomes") or {}
    taken = outcomes.get("accepted", 0) + outcomes.get("duplicate", 0)
    rate = taken / duration if duration > 0 else 0.0
    needed = needed_workloads(rate, lifetime_s) if lifetime_s else None
    out["needed"] = needed
    if stats.to_busy:
        if needed:
            why = f"rate × time to terminal ≈ {needed} needed"
        else:
            why = "time to terminal unknown (follow RRs with environment.kubeconfig)"
        out["finding"] = (
            f"pool too small: {stats.workloads} workloads, {why}; {stats.to_busy} alerts "
            "named a busy workload and were expected back as duplicates (202)"
        )
    return out


def execute(
    ctx: TestContext,
    plan: LoadPlan,
    name: str,
    progress: bool | None = None,
    follower: RemediationFollower | None = None,
) -> LoadOutcome:
    gen = ctx.params.generator
    preflight_auth(ctx.params, plan.url)  # a refused token fails here, in one line
    watch = IntegrityWatch.begin(ctx)  # the history's length before any alert is sent
    with _pool_follower(ctx, plan, follower) as following, scrape_metrics(ctx, name) as scrape:
        load = run_load(
            plan, ctx.records_dir, name=name, workers=gen.workers, scheduler=gen.scheduler,
            records_url=gen.records_url, progress=progress,
        )  # fmt: skip
        scrape.align(load.summary)
        lifetime = following.lifetime_s() if following is not None else None
    records = read_records(load.records_path)
    wait_s = 0.0 if load.interrupted else ctx.params.target.integrity_wait_s
    learned = plan.pool.stats.controller_namespace if plan.pool is not None else None
    if load.summary.get("records_sampled"):  # a sample cannot be reconciled alert by alert
        why = "records were sampled above records.max_per_s: set it to null to reconcile"
        check = IntegrityCheck("unavailable", watch.method, why)
    else:
        check = watch.check(records, plan.payload.run, wait_s, learned)
    counters = None  # the gateway's counters (the embedded target exports them too)
    if ctx.params.target.api == "kubernaut":
        counters = cross_check(read_metrics(scrape.path), load.summary, scrape.source)
    outcome = LoadOutcome(load, records, summarise(records), scrape.summary(), check, counters)
    if plan.pool is not None:
        outcome.pool = pool_report(plan.pool, load.summary, lifetime)
    return outcome
