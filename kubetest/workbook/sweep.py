"""Running Phase B's sweeps: one load phase at a time, with a recovery pause between.

Shared by B1 (open-loop rates) and B2 (closed-loop levels). Each phase is a separate
engine run with its own records file (``records/<test>_pNN.csv``) and start instant, so
a phase's numbers never mix with its neighbours' drain; the judgement rules live in
``kubetest.analysis.capacity``.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from kubetest import control
from kubetest.analysis.capacity import EVIDENCE, PhaseStats, PhaseVerdict, bracket, phase_row
from kubetest.analysis.search import DecisionRule, Point, is_sure, max_rate_interval
from kubetest.analysis.validity import Validity, combine
from kubetest.engine.progress import session_note
from kubetest.metrics import _target_auth as metrics_auth
from kubetest.metrics import parse_exposition
from kubetest.tls import verify
from kubetest.workbook.context import TestContext, result_head
from kubetest.workbook.loadtest import LoadOutcome

#: Health probes during a recovery pause, this far apart.
RECOVERY_PROBE_S = 0.25


@dataclass
class Recovery:
    """How a recovery pause ended: ``healthy`` after ``waited_s``, or not within the limit."""

    healthy: bool
    waited_s: float
    note: str = ""


def wait_for_health(
    url: str,
    max_s: float,
    interval_s: float = RECOVERY_PROBE_S,
    verify: ssl.SSLContext | bool = True,
) -> Recovery:
    """Probe ``url`` until it answers 2xx or ``max_s`` passes (at least one probe).

    A service without a health endpoint (404/405) gets the guide's fixed pause instead.
    Control plane, so plain httpx: a few requests, never part of the measurement.
    """
    start = time.monotonic()
    deadline = start + max_s
    last = "no answer"
    with control.client(timeout_s=max(min(2.0, max_s), 0.2), verify=verify) as client:
        while True:
            try:
                status = client.get(url).status_code
            except httpx.HTTPError as exc:
                status, last = 0, type(exc).__name__
            if 200 <= status < 300:
                return Recovery(True, time.monotonic() - start)
            if status in (404, 405):
                time.sleep(max(0.0, deadline - time.monotonic()))
                note = f"{url} answers {status}: paused the full recovery time"
                return Recovery(True, time.monotonic() - start, note)
            if status:
                last = f"HTTP {status}"
            if time.monotonic() + interval_s > deadline:
                return Recovery(False, time.monotonic() - start, f"{url}: {last}")
            time.sleep(interval_s)


IN_FLIGHT_METRIC = re.compile(r"in_?flight")


def service_in_flight(
    url: str, verify: ssl.SSLContext | bool = True, headers: dict[str, str] | None = None
) -> float | None:
    """The service's own in-flight count (the sum of its ``*in_flight*`` gauges), or
    ``None`` when its metrics cannot say."""
    try:
        with control.client(timeout_s=2.0, verify=verify) as client:
            resp = client.get(url, headers=headers)
        if resp.status_code != 200:
            return None
        rows = parse_exposition(resp.text)
    except (httpx.HTTPError, ValueError):
        return None
    values = [v for name, _, v, kind in rows if kind == "gauge" and IN_FLIGHT_METRIC.search(name)]
    return float(sum(values)) if values else None


def wait_for_drain(
    metrics_url: str | None, baseline: float | None, backlog_s: float, max_s: float,
    verify: ssl.SSLContext | bool = True, headers: dict[str, str] | None = None,
) -> Recovery:  # fmt: skip
    """Recovery from an overload, at most ``max_s``: until the service's in-flight gauge
    is back to ``baseline`` (its metrics), or, when it has none, for ``backlog_s`` (the
    client's estimate: the requests the stop cancelled over the rate the service
    completed them). Never a fixed pause when the service can say it is idle."""
    start = time.monotonic()
    deadline = start + max_s
    if metrics_url and baseline is not None:
        while True:
            now_in = service_in_flight(metrics_url, verify, headers)
            if now_in is None or now_in <= baseline:
                break
            if time.monotonic() + RECOVERY_PROBE_S > deadline:
                return Recovery(False, time.monotonic() - start,
                                f"still {now_in:g} in flight (baseline {baseline:g})")  # fmt: skip
            time.sleep(RECOVERY_PROBE_S)
        if now_in is not None:
            return Recovery(True, time.monotonic() - start, "in flight back to baseline")
    wait = min(max(backlog_s, 0.0), max_s)
    time.sleep(wait)
    return Recovery(True, time.monotonic() - start, f"waited {wait:.1f} s for the backlog")


@dataclass
class Phase:
    """One phase of a sweep: what it measured, the verdict, and where its records are."""

    stats: PhaseStats
    verdict: PhaseVerdict
    outcome: LoadOutcome
    records_path: str  # relative to the session folder
    recovery: Recovery | None

    @property
    def label(self) -> str:
        s = self.stats
        if s.concurrency is not None:
            return f"N={s.concurrency:,}"
        return f"{s.offered_per_min:,.0f}/min"

    def row(self) -> dict[str, Any]:
        rec = self.recovery
        return phase_row(
            self.stats, self.verdict, label=self.label, records=self.records_path,
            recovery_s=rec.waited_s if rec else None,
        )  # fmt: skip


def phases_table(phases: list[Phase]) -> pd.DataFrame:
    return pd.DataFrame([p.row() for p in phases])


def phases_load(phases: list[Phase]) -> list[dict[str, Any]]:
    """The engine's summary of each phase, tagged with the phase number and verdict, so a
    reader can tell a generator-limited phase (kept out of the evidence) from the rest."""
    return [
        {**p.outcome.load.summary, "phase": p.stats.index, "phase_status": p.verdict.status}
        for p in phases
    ]


def phases_service(phases: list[Phase]) -> list[dict[str, Any]]:
    """Per phase, the service's side: its metrics file and the reconciliation of what it
    accepted (``kubetest.analysis.integrity`` counts every phase, like a load test)."""
    return [{"phase": p.stats.index, "label": p.label,
             "start_epoch": p.outcome.load.summary.get("start_epoch"),
             "records": p.records_path, **p.outcome.service_result()}
            for p in phases]  # fmt: skip


def sweep_result(
    ctx: TestContext, phases: list[Phase], table: pd.DataFrame, *, title: str,
    started: datetime, complete: bool, stopped: str,
) -> dict[str, Any]:  # fmt: skip
    """What every sweep's result file holds (B1, B2); each adds its capacity keys."""
    return {
        **result_head(title, started, complete=complete),
        "stopped": stopped,
        "validity": sweep_validity(phases, complete=complete).as_dict(),
        "phases": table.to_dict(orient="records"),
        "phases_load": phases_load(phases),
        "phases_service": phases_service(phases),
        "slo": ctx.params.slo.model_dump(),
        "params": ctx.section.model_dump(),
    }


def sweep_validity(phases: list[Phase], *, complete: bool) -> Validity:
    """A sweep is judged on its evidence phases, each VALID by then (a phase that is not
    is kept out of the evidence): VALID with at least one; with none, the worst of its
    phases' (INVALID when the generator limited every one); INCONCLUSIVE when the sweep
    was interrupted (the phases after it were never run)."""
    if any(p.verdict.status in EVIDENCE for p in phases) or not phases:
        v = Validity()
    else:
        v = combine({f"phase {p.stats.index} ({p.label})": Validity.from_dict(
                         {"status": p.stats.validity, "reasons": p.stats.validity_reasons})
                     for p in phases})  # fmt: skip
    if not complete:
        v.add("INCONCLUSIVE", "incomplete: the sweep was interrupted")
    return v


def phase_records(phases: list[Phase]) -> pd.DataFrame:
    """All phases' records in one frame, with the phase's number, ``label`` and ``load``
    (offered rate or concurrency)."""
    frames = [
        p.outcome.records.assign(
            phase=p.stats.index, label=p.label, load=p.stats.concurrency or p.stats.offered_per_min
        )
        for p in phases
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def generator_table(phases: list[Phase]) -> pd.DataFrame:
    """Generator health per phase: a saturated phase is not evidence about the target."""
    return pd.DataFrame(
        [{"phase": p.stats.index, "label": p.label, **p.outcome.generator_health()} for p in phases]
    )


def echo_phase(echo: Callable[[str], None], phase: Phase) -> None:
    """The phase's verdict in one line, to the notebook and to a listening session."""
    s, v = phase.stats, phase.verdict
    why = f" ({'; '.join(v.reasons)})" if v.reasons else ""
    if s.decided and s.decided["status"] == "sustainable":
        why = f" (stopped early: {s.decided['reason']})"
    ran = min(s.ran_s or s.duration_s, s.duration_s)
    line = (
        f"phase {s.index} {s.kind:<6} {phase.label:>12} {ran:6.1f} s: {v.status:<17} "
        f"success {s.latency.success.value:.1%}, p95 {s.latency.p95.value:.3f} s, "
        f"{s.throughput_per_min:,.0f}/min done{why}"
    )
    echo(line)
    session_note(line)


def relative(ctx: TestContext, path: Any) -> str:
    try:
        return str(path.relative_to(ctx.session_dir))
    except ValueError:
        return str(path)


class SweepViews:
    """Tables every sweep result (B1, B2) shows, from its ``phases`` and ``capacity``."""

    phases: list[Phase]
    capacity: dict[str, Any]

    @property
    def table(self) -> pd.DataFrame:
        """Every phase, in the order run: load, verdict, latency, throughput."""
        return phases_table(self.phases)

    @property
    def capacity_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"metric": k, "value": v} for k, v in self.capacity.items()])

    @property
    def records(self) -> pd.DataFrame:
        return phase_records(self.phases)

    @property
    def generator(self) -> pd.DataFrame:
        return generator_table(self.phases)


# -- search: auto (kubetest.analysis.search) ------------------------------------------------


def decision_rule(ctx: TestContext) -> DecisionRule:
    """The early-decision rule of a sweep's ``search: auto`` (B1 open loop, B2 closed)."""
    sec, slo = ctx.section, ctx.params.slo
    open_loop = hasattr(sec, "max_phase_s")
    return DecisionRule(
        p95_s=slo.p95_s, success_rate=slo.success_rate, margin=sec.margin,
        min_s=sec.min_phase_s, horizon_s=sec.max_phase_s if open_loop else sec.duration_s,
        open_loop=open_loop,
    )  # fmt: skip


def _metrics_headers(ctx: TestContext) -> dict[str, str]:
    return metrics_auth(ctx.params.target.auth_token_env, ctx.metrics_url, ctx.target_url)


def baseline_in_flight(ctx: TestContext) -> float | None:
    """The service's in-flight count before the search (``search: auto`` only)."""
    if getattr(ctx.section, "search", "grid") != "auto" or not ctx.metrics_url:
        return None
    return service_in_flight(ctx.metrics_url, verify(ctx.params.target.tls), _metrics_headers(ctx))


def recover(ctx: TestContext, last: Phase, baseline: float | None) -> Recovery:
    """The pause before the next phase. ``grid``: until ``/health`` answers (at most
    ``recovery_s``). ``auto``: first until the service's in-flight count is back to
    ``baseline`` (or the cancelled backlog is worked off), then ``/health``; both within
    ``recovery_s`` in all."""
    sec, tls_verify = ctx.section, verify(ctx.params.target.tls)
    if getattr(sec, "search", "grid") != "auto":
        return wait_for_health(ctx.health_url, sec.recovery_s, verify=tls_verify)
    records = last.outcome.records
    cancelled = int((records["error"] == "cancelled").sum()) if not records.empty else 0
    rate_s = last.stats.throughput_per_min / 60.0
    backlog_s = cancelled / rate_s if rate_s > 0 else 0.0
    drained = wait_for_drain(
        ctx.metrics_url, baseline, backlog_s, sec.recovery_s, tls_verify, _metrics_headers(ctx)
    )
    left = max(sec.recovery_s - drained.waited_s, RECOVERY_PROBE_S)
    health = wait_for_health(ctx.health_url, left, verify=tls_verify)
    notes = [n for n in (drained.note, health.note) if n]
    return Recovery(health.healthy, drained.waited_s + health.waited_s, "; ".join(notes))


def load_seconds(phases: list[Phase]) -> float:
    """Load time the phases used (each until it stopped: decided, aborted or its end)."""
    return float(sum(min(p.stats.ran_s or p.stats.duration_s, p.stats.duration_s) for p in phases))


def interval(phases: list[Phase], rule: DecisionRule) -> tuple[float | None, float | None]:
    """[low, high] around the max sustainable load (``analysis.search.max_rate_interval``),
    each phase's verdict counted sure only when the decision rule backs it."""
    points = []
    for p in phases:
        s = p.stats
        load = float(s.concurrency if s.concurrency is not None else s.offered_per_min or 0)
        ran = min(s.ran_s or s.duration_s, s.duration_s)
        sure = is_sure(rule, p.outcome.records, ran, p.verdict.status, s.decided)
        points.append(Point(load, p.verdict.status, sure))
    return max_rate_interval(points)


def auto_stopped(points: list[tuple[float, str]], cap: float | None) -> str:
    """Why ``search: auto`` stopped, in one line."""
    low, high = bracket(points)
    if high is None and low is not None:
        return f"sustained the cap ({low:,.0f}): the capacity is at least that"
    if low is None and high is not None:
        return f"unsustainable at every load tried, down to {high:,.0f}"
    if low is None:
        return "no phase gave evidence"
    return f"bisected to the precision: between {low:,.0f} and {high:,.0f}"


class SweepLoop:
    """The loop B1 (rates) and B2 (levels) share: phases so far, why it stopped, and the
    result file kept current after every phase, so an interrupt loses nothing."""

    def __init__(
        self, ctx: TestContext, progress: bool | None, echo: Callable[[str], None], stopped: str
    ):
        self.ctx, self.progress, self.echo, self.sec = ctx, progress, echo, ctx.section
        self.started = datetime.now(UTC)
        self.phases: list[Phase] = []
        self.stopped = stopped
        self.halted = False  # interrupted, or the service did not recover
        self.rule = decision_rule(ctx)
        self.baseline = baseline_in_flight(ctx)

    def save(self, complete: bool) -> Any:
        raise NotImplementedError

    def advance(self, run_phase: Callable[[int, Recovery | None], Phase]) -> Phase | None:
        """Recover after the last phase, run the next (``run_phase(index, recovery)``),
        record and save it; ``None`` when the service did not recover in time."""
        recovery = None
        if self.phases:
            recovery = recover(self.ctx, self.phases[-1], self.baseline)
            if not recovery.healthy:
                self.stopped = (
                    f"the service did not answer {self.ctx.health_url} healthy within "
                    f"recovery_s = {self.sec.recovery_s:g} s ({recovery.note})"
                )
                self.halted = True
                return None
        phase = run_phase(len(self.phases) + 1, recovery)
        self.phases.append(phase)
        echo_phase(self.echo, phase)
        self.save(complete=False)
        if phase.stats.interrupted:
            self.stopped = f"interrupted during {phase.label}"
            self.halted = True
        return phase
