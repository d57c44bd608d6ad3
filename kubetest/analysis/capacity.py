"""Capacity analysis (Phase B): phase judgement, bisection, capacity summaries.

Pure functions over records and phase tables (no I/O), so every rule is testable on
synthetic data and checkable against queueing theory (``analysis.queueing``: Erlang C).
The knee, the USL fit and Little's law are in ``analysis.usl``.

A load phase only says something about the *target* when the generator kept its
schedule: a saturated (or interrupted, or nearly empty) phase is marked and kept out of
every capacity figure, never called the breaking point. An open-loop phase is
*sustainable* when, at once:

* success ≥ the SLO's rate and p95 (from intended send time) < the SLO's p95, both over
  the phase's steady window (requests due in its last 3/4; a closed-loop level's middle
  80 %), so a phase that starts on an empty queue is not judged on its quiet start;
* the service kept up: requests completed in the steady window (the last 3/4 of the
  phase) ≥ ``KEEP_UP`` (95 %) of those intended in it. In overload completions stay at
  the service's capacity while arrivals run ahead, so this catches a short overloaded
  phase whose queue has not yet grown past the SLO;
* latency is not trending up: a Theil-Sen slope of per-batch median latency against
  intended send time whose ``TREND_CONFIDENCE`` interval excludes 0, whose rise over the
  phase exceeds half the phase's early median (a growing queue, not noise) *and* which,
  continued for one more phase of the same length, would take p95 past the SLO. A small
  drift far below the SLO (a busy machine's hiccup) does not make a phase unsustainable;
  a queue growing towards the SLO does, before it gets there.

A phase stopped early by the SLO abort (params ``slo.abort``) is unsustainable, with the
abort's reason; its windows are taken over the part that ran. A phase whose run was not
VALID (``kubetest.analysis.validity``) is not evidence: INVALID counts as generator-limited,
INCONCLUSIVE (interrupted, a shard lost, the target restarted) as inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from kubetest.analysis.latency import LatencySummary, summarise
from kubetest.analysis.recommendations import (
    REQUIREMENT_PER_MIN,
    concurrency_recommendation,
    rate_recommendation,
)
from kubetest.analysis.usl import UslFit, find_knee, fit_usl, littles_law_error
from kubetest.analysis.validity import Validity, load_validity
from kubetest.analysis.verdicts import MIN_SAMPLES, Requirement, Status

#: Completions must reach this share of the offered rate (steady window).
KEEP_UP = 0.95
#: The guide's "performance degradation point": the first rate below 90 % success.
DEGRADED_SUCCESS = 0.90
#: Refine until the bracket [last sustainable, first unsustainable] is this narrow.
BRACKET = 0.05
#: At most this many refinement phases (each halves the bracket: 6 take 100 % to 1.6 %).
MAX_REFINE_PHASES = 6
#: A refinement midpoint that gives no evidence (generator-limited) is tried this often.
MIDPOINT_TRIES = 2
#: Refinement phases last half the shorter bracketing phase, but at least this long
#: (or that phase's own length, when shorter): enough samples for a p95 and a trend.
REFINE_MIN_S = 20.0
#: Open loop: throughput and in-flight are measured from this fraction of the phase on.
STEADY_FROM = 0.25
#: Closed loop: this fraction is cut at each end of a level (ramp-up and drain).
CLOSED_TRIM = 0.10
#: Latency trend: confidence of the Theil-Sen slope, and the rise that matters.
TREND_CONFIDENCE = 0.95
TREND_REL_RISE = 0.5
TREND_ABS_RISE_S = 0.001
#: Closed loop: a level counts only if the generator held this share of N in flight.
HELD_IN_FLIGHT = 0.90
#: Little's law: N and X·R further apart than this (relative) are flagged, on levels whose
#: steady window lasts at least ``LITTLE_MIN_WINDOW_R`` mean responses (shorter ones are
#: dominated by the first wave of N requests and the drain, and are not checked).
LITTLE_TOLERANCE = 0.10
LITTLE_MIN_WINDOW_R = 3.0

PhaseStatus = Literal["sustainable", "unsustainable", "generator-limited", "inconclusive"]
EVIDENCE: tuple[str, ...] = ("sustainable", "unsustainable")


# -- one phase -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """Theil-Sen slope of per-bin median latency vs intended send time (s per s)."""

    slope: float
    low: float
    high: float
    rise_s: float  # slope × phase duration
    baseline_s: float  # median latency over the first third of the phase
    significant: bool


def latency_trend(intended_s: np.ndarray, latency_s: np.ndarray, duration_s: float) -> Trend | None:
    """Is latency growing over the phase? ``None`` when there are too few samples to say.

    Latency is binned first (medians of 4-12 equal-time batches, ~50 requests or more
    each): Theil-Sen stays O(batches²) at any rate, ignores the odd slow request, and
    batch medians are far less autocorrelated than single requests (a queue's state
    persists for many arrivals), so its interval is not falsely narrow.
    """
    t = np.asarray(intended_s, dtype=float)
    y = np.asarray(latency_s, dtype=float)
    if t.size < 20 or duration_s <= 0:
        return None
    k = int(np.clip(t.size // 50, 4, 12))
    edges = np.linspace(0.0, duration_s, k + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, k - 1)
    centres, medians = [], []
    for b in range(k):
        sel = y[idx == b]
        if sel.size >= 3:
            centres.append((edges[b] + edges[b + 1]) / 2)
            medians.append(float(np.median(sel)))
    if len(centres) < 4:
        return None
    res = stats.theilslopes(medians, centres, alpha=TREND_CONFIDENCE)
    slope, low, high = float(res[0]), float(res[2]), float(res[3])
    early = y[t < duration_s / 3]
    baseline = float(np.median(early)) if early.size else float(np.median(y))
    rise = slope * duration_s
    significant = low > 0 and rise > max(TREND_REL_RISE * baseline, TREND_ABS_RISE_S)
    return Trend(slope, low, high, rise, baseline, bool(significant))


def _time_weighted_in_flight(records: pd.DataFrame, lo: float, hi: float) -> float:
    """Mean number of requests in flight over [lo, hi] (each request is [sent_s, done_s])."""
    if hi <= lo or records.empty:
        return 0.0
    s = records["sent_s"].to_numpy(dtype=float)
    d = records["done_s"].to_numpy(dtype=float)
    overlap = np.clip(np.minimum(d, hi) - np.maximum(s, lo), 0.0, None)
    return float(overlap.sum() / (hi - lo))


@dataclass
class PhaseStats:
    """What one phase (open-loop rate or closed-loop level) measured."""

    index: int
    kind: str  # grid | refine | level
    duration_s: float
    latency: LatencySummary  # the steady window's requests: what is judged
    whole: LatencySummary  # every request of the phase, for the record
    offered_per_min: float | None = None  # open loop
    concurrency: int | None = None  # closed loop
    throughput_per_min: float = 0.0  # requests answered, steady window
    goodput_per_min: float = 0.0  # accepted, steady window
    keep_up: float | None = None  # answered / intended in the steady window (open loop)
    trend: Trend | None = None
    in_flight_mean: float = 0.0
    window_s: float = 0.0  # the steady window's length
    mean_latency_s: float = float("nan")  # all answered requests of the steady window
    little_x_r: float = float("nan")  # X · R (Little's law: should equal N in flight)
    saturated: bool = False
    saturation_reasons: list[str] = field(default_factory=list)
    interrupted: bool = False
    aborted: str | None = None  # the SLO abort's reason: the phase ended early
    ran_s: float | None = None  # how long an aborted or decided phase ran (duration_s: planned)
    decided: dict[str, Any] | None = None  # the early decision that ended it (status, reason)
    validity: str = "VALID"
    validity_reasons: list[str] = field(default_factory=list)


def measure_phase(
    records: pd.DataFrame,
    *,
    index: int,
    kind: str,
    duration_s: float,
    offered_per_min: float | None = None,
    concurrency: int | None = None,
    load_summary: dict[str, Any] | None = None,
    validity: Validity | None = None,
) -> PhaseStats:
    """Reduce one phase's records (times relative to the phase's start) to ``PhaseStats``.
    ``validity``: the run's (default: from ``load_summary`` alone)."""
    from kubetest.engine.client import GENERATOR_ERRORS

    load = load_summary or {}
    if validity is None:
        validity = load_validity(load)
    aborted = load.get("aborted")
    ran_s = float(load["aborted_at_s"]) if aborted and load.get("aborted_at_s") else None
    decided = load.get("decided") or None  # the search's early decision (analysis.search)
    if decided and not aborted:
        ran_s = float(decided["at_s"])
    span = min(duration_s, ran_s) if ran_s else duration_s  # an aborted phase: what ran
    answered = records[~records["error"].isin(list(GENERATOR_ERRORS))]
    if concurrency is None:
        lo, hi = STEADY_FROM * span, span
    else:
        lo, hi = CLOSED_TRIM * span, (1 - CLOSED_TRIM) * span
    due_at = records["intended_s"].to_numpy(dtype=float)
    latency = summarise(records[(due_at >= lo) & (due_at < hi)])
    window = max(hi - lo, 1e-9)
    done = answered["done_s"].to_numpy(dtype=float)
    in_window = (done >= lo) & (done < hi)
    completed = int(in_window.sum())
    accepted = int((in_window & (answered["outcome"] == "accepted").to_numpy()).sum())
    x_per_s = completed / window
    latencies = answered["latency_s"].to_numpy(dtype=float)[in_window]
    r_s = float(latencies.mean()) if completed else float("nan")
    keep_up = None
    trend = None
    if concurrency is None:
        due = int(((due_at >= lo) & (due_at < hi)).sum())
        keep_up = completed / due if due else None
        ok = records[records["outcome"] == "accepted"]
        trend = latency_trend(ok["intended_s"].to_numpy(), ok["latency_s"].to_numpy(), span)
    return PhaseStats(
        index=index,
        kind=kind,
        duration_s=duration_s,
        latency=latency,
        whole=summarise(records),
        offered_per_min=offered_per_min,
        concurrency=concurrency,
        throughput_per_min=x_per_s * 60.0,
        goodput_per_min=accepted / window * 60.0,
        keep_up=keep_up,
        trend=trend,
        # every request sent: one a stop cancelled was in flight until then
        in_flight_mean=_time_weighted_in_flight(
            records[~records["error"].isin(["late", "dropped"])], lo, hi
        ),
        window_s=window,
        mean_latency_s=r_s,
        little_x_r=x_per_s * r_s if completed else float("nan"),
        saturated=bool(load.get("saturated")),
        saturation_reasons=list(load.get("saturation_reasons") or []),
        interrupted=bool(load.get("interrupted")),
        aborted=aborted,
        ran_s=ran_s,
        decided=decided,
        validity=validity.status,
        validity_reasons=list(validity.reasons),
    )


@dataclass(frozen=True)
class PhaseVerdict:
    status: PhaseStatus
    reasons: list[str]
    degraded: bool = False  # success < 90 % (the guide's degradation point)
    broken: bool = False  # success < stop_below_success (the guide's breaking point)


def _not_evidence(s: PhaseStats) -> PhaseVerdict | None:
    if s.saturated:
        why = "; ".join(s.saturation_reasons) or "the generator could not keep up"
        return PhaseVerdict(
            "generator-limited", [f"generator saturated ({why}): not evidence about the target"]
        )
    if s.validity == "INVALID":
        return PhaseVerdict(
            "generator-limited",
            [f"run INVALID ({'; '.join(s.validity_reasons)}): not evidence about the target"],
        )
    if s.interrupted:
        return PhaseVerdict("inconclusive", ["the phase was interrupted"])
    if s.validity == "INCONCLUSIVE":
        return PhaseVerdict("inconclusive", [f"run INCONCLUSIVE ({'; '.join(s.validity_reasons)})"])
    if s.aborted or (s.decided and s.decided["status"] == "unsustainable"):
        return None  # judged, however few its samples: the abort is the evidence
    if s.latency.count < MIN_SAMPLES:
        return PhaseVerdict("inconclusive", [f"only {s.latency.count} answers (< {MIN_SAMPLES})"])
    return None


def _slo_reasons(s: PhaseStats, p95_s: float, success_rate: float) -> list[str]:
    reasons = []
    succ = s.latency.success.value
    if not succ >= success_rate:
        reasons.append(f"success {succ:.1%} < {success_rate:.0%}")
    p95 = s.latency.p95.value
    if not p95 < p95_s:
        reasons.append(
            f"p95 {p95:.3g} s ≥ {p95_s:g} s" if math.isfinite(p95) else "no accepted request"
        )
    return reasons


def _abort_reasons(s: PhaseStats) -> list[str]:
    """The abort's reason, or an early decision's that the phase is unsustainable."""
    if s.aborted:
        return [s.aborted]
    d = s.decided
    return [f"stopped early: {d['reason']}"] if d and d["status"] == "unsustainable" else []


def _flags(s: PhaseStats, status: PhaseStatus, reasons: list[str], stop: float) -> PhaseVerdict:
    succ = s.latency.success.value
    return PhaseVerdict(
        status, reasons, degraded=bool(succ < DEGRADED_SUCCESS), broken=bool(succ < stop)
    )


def judge_rate_phase(
    s: PhaseStats, *, p95_s: float, success_rate: float, stop_below_success: float
) -> PhaseVerdict:
    """Sustainable, unsustainable, or not evidence (see the module docstring for the rules)."""
    if (verdict := _not_evidence(s)) is not None:
        return verdict
    reasons = _abort_reasons(s) + _slo_reasons(s, p95_s, success_rate)
    if s.keep_up is not None and s.keep_up < KEEP_UP:
        reasons.append(
            f"fell behind: completed {s.throughput_per_min:,.0f}/min, {s.keep_up:.0%} of "
            f"the offered rate (< {KEEP_UP:.0%})"
        )
    trend, p95 = s.trend, s.latency.p95.value
    if trend is not None and trend.significant and p95 + trend.rise_s >= p95_s:
        reasons.append(
            f"latency rising {trend.rise_s:.3g} s over the phase (Theil-Sen "
            f"{trend.slope:.3g} s/s, {TREND_CONFIDENCE:.0%} CI {trend.low:.3g}..{trend.high:.3g}): "
            f"p95 would pass {p95_s:g} s within another phase"
        )
    status: PhaseStatus = "unsustainable" if reasons else "sustainable"
    return _flags(s, status, reasons, stop_below_success)


def judge_concurrency_level(
    s: PhaseStats, *, p95_s: float, success_rate: float, stop_below_success: float
) -> PhaseVerdict:
    """A level is sustainable at ≥ the SLO's success rate and p95 < the SLO's p95, provided
    the generator really held N requests in flight."""
    if (verdict := _not_evidence(s)) is not None:
        return verdict
    n = s.concurrency or 0
    if n and s.in_flight_mean < HELD_IN_FLIGHT * n:
        return PhaseVerdict("generator-limited", [
            f"only {s.in_flight_mean:.1f} of {n} requests in flight on average "
            f"(< {HELD_IN_FLIGHT:.0%}): the level was not tested"])  # fmt: skip
    reasons = _abort_reasons(s) + _slo_reasons(s, p95_s, success_rate)
    status: PhaseStatus = "unsustainable" if reasons else "sustainable"
    return _flags(s, status, reasons, stop_below_success)


def phase_row(s: PhaseStats, v: PhaseVerdict, **extra: Any) -> dict[str, Any]:
    """One row of a result's ``phases`` table (flat, JSON-ready). Latency and success
    columns are the steady window's (what was judged); ``whole_*`` cover every request."""
    lat = s.latency
    n = s.concurrency
    row: dict[str, Any] = {
        "phase": s.index,
        "kind": s.kind,
        "offered_per_min": s.offered_per_min,
        "concurrency": n,
        "duration_s": s.duration_s,
        "status": v.status,
        "requests": s.whole.count,
        "steady_requests": lat.count,
        "accepted": lat.accepted,
        "not_sent": lat.not_sent,
        "success_rate": lat.success.value,
        "p50_s": lat.p50.value,
        "p95_s": lat.p95.value,
        "p95_ci_low_s": lat.p95.low,
        "p95_ci_high_s": lat.p95.high,
        "p99_s": lat.p99.value,
        "max_s": lat.max,
        "mean_s": lat.mean,
        "whole_success_rate": s.whole.success.value,
        "whole_p95_s": s.whole.p95.value,
        "whole_max_s": s.whole.max,
        "throughput_per_min": s.throughput_per_min,
        "goodput_per_min": s.goodput_per_min,
        "keep_up": s.keep_up,
        "trend_rise_s": s.trend.rise_s if s.trend else None,
        "trend_significant": s.trend.significant if s.trend else None,
        "in_flight_mean": s.in_flight_mean,
        "window_mean_latency_s": s.mean_latency_s,
        "little_x_r": s.little_x_r,
        "little_error": (
            littles_law_error(n, s.little_x_r)
            if n and s.window_s >= LITTLE_MIN_WINDOW_R * s.mean_latency_s
            else None
        ),
        "degraded": v.degraded,
        "broken": v.broken,
        "saturated": s.saturated,
        "aborted": s.aborted,
        "decided": s.decided["status"] if s.decided else None,  # stopped early, so judged
        "decided_reason": s.decided["reason"] if s.decided else None,
        "ran_s": s.ran_s,
        "validity": s.validity,
        "reasons": "; ".join(v.reasons),
        "outcomes": s.whole.outcomes,
    }
    row.update(extra)
    return row


# -- the sweep: bracket and bisection ------------------------------------------------------


def bracket(points: Sequence[tuple[float, str]]) -> tuple[float | None, float | None]:
    """``(L, U)``: U = the lowest unsustainable rate, L = the highest sustainable rate below
    it (or overall, when nothing failed). Phases that are not evidence are ignored; a
    sustainable rate above U (noise) never raises L."""
    evid = sorted((r, st) for r, st in points if st in EVIDENCE)
    upper = next((r for r, st in evid if st == "unsustainable"), None)
    ok = [r for r, st in evid if st == "sustainable" and (upper is None or r < upper)]
    return (max(ok) if ok else None), upper


def refine_next(points: Sequence[tuple[float, str]], tolerance: float = BRACKET) -> float | None:
    """The next rate to try (the bracket's midpoint), or ``None``: no bracket, or it is
    already within ``tolerance`` of L, or the midpoint gave no evidence twice. (A midpoint
    lies below U, which the generator did hold: one saturated try there is likely a
    transient stall of a busy machine, so it is retried once.)"""
    low, high = bracket(points)
    if low is None or high is None or (high - low) <= tolerance * low:
        return None
    mid = (low + high) / 2
    if sum(abs(r - mid) <= 1e-9 * mid for r, _ in points) >= MIDPOINT_TRIES:
        return None
    return mid


def refine_duration_s(bracketing_durations_s: Sequence[float]) -> float:
    """Half the shorter bracketing phase, but at least ``REFINE_MIN_S`` (or that phase's
    own length when it is shorter): refinement spends less time than the grid did."""
    shorter = min(bracketing_durations_s)
    return max(shorter / 2, min(shorter, REFINE_MIN_S))


# -- capacity summaries -------------------------------------------------------------------


def _evidence(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    return table[table["status"].isin(EVIDENCE)]


def rate_capacity(table: pd.DataFrame) -> dict[str, Any]:
    """B1's capacity figures from its phases table (``phase_row`` rows)."""
    ev = _evidence(table)
    points = list(zip(ev["offered_per_min"], ev["status"], strict=True)) if not ev.empty else []
    low, high = bracket(points)
    max_rate: float | None = low
    if max_rate is None and high is not None:
        max_rate = 0.0  # measured: even the lowest tested rate was unsustainable
    lower_bound = high is None and low is not None
    ev_sorted = ev.sort_values("offered_per_min") if not ev.empty else ev
    degraded = ev_sorted[ev_sorted["degraded"]] if not ev.empty else ev
    broken = ev_sorted[ev_sorted["broken"]] if not ev.empty else ev
    knee = find_knee(ev["offered_per_min"], ev["p95_s"], curve="convex") if not ev.empty else None
    tknee = (find_knee(ev["offered_per_min"], ev["throughput_per_min"], curve="concave")
             if not ev.empty else None)  # fmt: skip
    peak = ev.loc[ev["goodput_per_min"].idxmax()] if not ev.empty else None
    return {
        "max_sustainable_rate_per_min": max_rate,
        "max_sustainable_is_lower_bound": lower_bound,
        "first_unsustainable_rate_per_min": high,
        "bracket_width": (high - low) / low if low and high else None,
        "degradation_point_per_min": (
            float(degraded["offered_per_min"].iloc[0]) if len(degraded) else None
        ),
        "breaking_point_per_min": (
            float(broken["offered_per_min"].iloc[0]) if len(broken) else None
        ),
        "knee_rate_per_min": knee,
        "throughput_knee_per_min": tknee,
        "peak_goodput_per_min": float(peak["goodput_per_min"]) if peak is not None else None,
        "peak_goodput_at_rate_per_min": (
            float(peak["offered_per_min"]) if peak is not None else None
        ),
        "requirement_per_min": REQUIREMENT_PER_MIN,
        "headroom": max_rate / REQUIREMENT_PER_MIN if max_rate is not None else None,
        "phases_tested": int(len(table)),
        "generator_limited_phases": int((table["status"] == "generator-limited").sum())
        if not table.empty
        else 0,
        "recommendation": rate_recommendation(max_rate, lower_bound=lower_bound),
    }


def rate_requirement(
    cap: dict[str, Any], *, p95_s: float, success_rate: float, samples: int
) -> Requirement:
    """``CAP-1000``: does the service sustain the guide's 1,000 alerts/min?"""
    req = REQUIREMENT_PER_MIN
    rate = cap.get("max_sustainable_rate_per_min")
    upper = cap.get("first_unsustainable_rate_per_min")
    reasons: list[str] = []
    status: Status
    if rate is None:
        status = "INCONCLUSIVE"
        reasons.append("no phase gave evidence about the service (generator-limited or empty)")
    elif rate >= req:
        status = "PASS"
    elif upper is not None and upper <= req:
        status = "FAIL"
        reasons.append(f"unsustainable at {upper:,.0f}/min")
    else:
        status = "INCONCLUSIVE"
        where = (f"between the last sustainable {rate:,.0f}/min and the first unsustainable "
                 f"{upper:,.0f}/min" if upper is not None else
                 f"above the highest rate tested ({rate:,.0f}/min)")  # fmt: skip
        reasons.append(f"{req:,.0f}/min lies {where}")
    threshold = (
        f"sustains ≥ {req:,.0f} alerts/min (success ≥ {success_rate:.0%}, "
        f"p95 < {p95_s:g} s, completions ≥ {KEEP_UP:.0%} of offered, no latency trend)"
    )
    details = {
        "title": "Alert capacity (B1)",
        "judged_on": "open-loop phases; max sustainable rate, bisected between grid phases",
        "headroom": cap.get("headroom"),
        "recommendation": cap.get("recommendation"),
        "samples": samples,
        "reasons": reasons,
    }
    return Requirement("CAP-1000", rate, "alerts/min", threshold, status, details)


def concurrency_capacity(table: pd.DataFrame) -> tuple[dict[str, Any], UslFit | None]:
    """B2's capacity figures from its levels table, plus the USL fit (on evidence levels)."""
    ev = _evidence(table)
    points = list(zip(ev["concurrency"], ev["status"], strict=True)) if not ev.empty else []
    low, high = bracket(points)
    max_n: int | None = int(low) if low is not None else (0 if high is not None else None)
    lower_bound = high is None and low is not None
    # goodput (accepted per minute), not every answer: a service that throttles answers
    # 429 at once, and closed-loop workers then spin, "completing" refusals by the thousand
    fit = fit_usl(ev["concurrency"], ev["goodput_per_min"] / 60.0) if not ev.empty else None
    knee = (find_knee(ev["concurrency"], ev["goodput_per_min"], curve="concave")
            if not ev.empty else None)  # fmt: skip
    peak = ev.loc[ev["goodput_per_min"].idxmax()] if not ev.empty else None
    errors = [e for e in (ev["little_error"] if not ev.empty else []) if e is not None
              and math.isfinite(e)]  # fmt: skip
    n_max = float(ev["concurrency"].max()) if not ev.empty else None
    cap: dict[str, Any] = {
        "max_sustainable_concurrency": max_n,
        "max_sustainable_concurrency_is_lower_bound": lower_bound,
        "first_unsustainable_concurrency": int(high) if high is not None else None,
        "peak_throughput_per_min": float(peak["goodput_per_min"]) if peak is not None else None,
        "peak_throughput_concurrency": int(peak["concurrency"]) if peak is not None else None,
        "concurrency_knee": knee,
        "usl_peak_throughput_per_min": (
            fit.peak_throughput * 60.0 if fit and fit.peak_throughput else None
        ),
        "usl_peak_concurrency": fit.peak_concurrency if fit else None,
        "usl_peak_in_tested_range": bool(
            fit and fit.peak_concurrency and n_max and fit.peak_concurrency <= n_max
        ),
        "usl_sigma": fit.sigma if fit else None,
        "usl_kappa": fit.kappa if fit else None,
        "usl_lambda_per_min": fit.lam * 60.0 if fit else None,
        "usl_r2": fit.r2 if fit else None,
        "littles_law_max_error": max(errors) if errors else None,
        "littles_law_consistent": bool(errors) and max(errors) <= LITTLE_TOLERANCE,
        "littles_law_levels_checked": len(errors),
        "levels_tested": int(len(table)),
        "generator_limited_levels": int((table["status"] == "generator-limited").sum())
        if not table.empty
        else 0,
        "concurrency_recommendation": concurrency_recommendation(max_n, lower_bound=lower_bound),
    }
    return cap, fit
