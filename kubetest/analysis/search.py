"""Capacity search (``search: auto`` in B1 and B2): when a phase has said enough, where to
look next, and how sure the answer is. Pure logic, no I/O; the sweeps in ``workbook``
run it.

**Early decisions.** A phase is watched while it runs (``DecisionRule``: the shard feeds
each answer to a ``DecisionWatch`` and asks it every ``check_s``); it stops as soon as
its evidence allows, at 95 % one-sided confidence per rule:

* *unsustainable* (after ``min_s / 2``) when p95 is above the SLO (the lower bound of
  the share of requests slower than the SLO is above 5 %), success is below the SLO's
  rate (upper bound), or, open loop, the queue clearly grows: completions below
  ``KEEP_UP`` of the arrivals (upper bound), or, once p95 is within ``margin`` of the SLO,
  a latency slope whose interval lies above 0 and which, even at its lower bound, takes
  p95 past the SLO within ``horizon_s``;
* *sustainable* (after ``min_s``) when p95 sits below the SLO with ``margin`` (the upper
  bound of the share slower than ``(1 - margin) × SLO`` is below 5 %), success is at
  least the SLO's (lower bound), and, open loop, completions keep up and even the
  slope's upper bound keeps p95 under the SLO for ``horizon_s``.

Latencies in a queue are autocorrelated, so every bound is the wider of the binomial
(Clopper-Pearson) one and a batch-means one (``BATCHES`` equal-time batches, Student t).
A request still in flight counts as slow once older than the threshold; younger, it
counts as fast for the "above the SLO" bound and is left out of the "below" one (only
requests due at least the threshold ago are counted there): conservative both ways.

**The search** (``next_rate``): geometric growth (×``GROWTH``) from the start until a
phase is unsustainable (or ``max_per_min`` is sustained: "at least"), geometric descent
when the start already fails, then bisection of [last sustainable, first unsustainable]
down to ``precision`` (``capacity.refine_next``). **The interval** (``max_rate_interval``)
runs from the highest sustainable rate whose verdict was sure to the lowest unsustainable
one whose verdict was sure: each end holds at 95 %, the pair at ≥ 90 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from kubetest.analysis.capacity import (
    CLOSED_TRIM,
    KEEP_UP,
    STEADY_FROM,
    bracket,
    latency_trend,
    refine_next,
)

#: One-sided confidence of every early decision.
CONFIDENCE = 0.95
#: The SLO's percentile: p95 < SLO ⇔ fewer than 5 % of requests are slower.
TAIL = 0.05
#: Batch means over this many equal-time batches (fewer when the phase has few answers).
BATCHES = 8
#: Answers per batch, at least.
BATCH_MIN = 20
#: Geometric growth (and descent) factor of the search.
GROWTH = 2.0
#: At most this many growth steps, and descent steps below the start.
MAX_GROWTH_STEPS = 12
MAX_DESCENT_STEPS = 3

Verdict = Literal["sustainable", "unsustainable"]


@dataclass(frozen=True)
class Decision:
    status: Verdict
    reason: str


@dataclass
class Evidence:
    """A phase so far: every answer (generator-side classes left out) and what is in flight."""

    t_s: float
    intended: np.ndarray
    done: np.ndarray
    accepted: np.ndarray  # bool
    pending: np.ndarray  # intended times of requests still in flight at ``t_s``

    @property
    def latency(self) -> np.ndarray:
        return self.done - self.intended


def _batch_bounds(values: np.ndarray, weights: np.ndarray) -> tuple[float, float] | None:
    """Batch-means one-sided bounds of a ratio (Σ values / Σ weights over batches)."""
    ok = weights > 0
    if ok.sum() < 3:
        return None
    ratio = values[ok] / weights[ok]
    k = ratio.size
    mean = float(values[ok].sum() / weights[ok].sum())
    half = float(stats.t.ppf(CONFIDENCE, k - 1) * ratio.std(ddof=1) / math.sqrt(k))
    return mean - half, mean + half


def _binomial_bounds(x: int, n: int) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of x / n."""
    low = float(stats.beta.ppf(1 - CONFIDENCE, x, n - x + 1)) if x > 0 else 0.0
    high = float(stats.beta.ppf(CONFIDENCE, x + 1, n - x)) if x < n else 1.0
    return low, high


def _batches(times: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    k = int(np.clip(n // BATCH_MIN, 1, BATCHES))
    return np.clip(((times - lo) / max(hi - lo, 1e-9) * k).astype(int), 0, k - 1)


def share_slower(
    ev: Evidence, lo: float, threshold_s: float, *, settled: bool = False
) -> tuple[float, float, int]:
    """Bounds (low, high) of the share of requests due in [lo, t] slower than
    ``threshold_s``, and how many were counted. A request in flight and older than the
    threshold is slow; a younger one is counted fast (the low bound is then a true lower
    bound). ``settled``: only requests due by ``t - threshold_s``, whose side of the
    threshold is known (an upper bound free of the ones still on their way)."""
    hi = ev.t_s - threshold_s if settled else ev.t_s
    sel = ev.accepted & (ev.intended >= lo) & (ev.intended <= hi)
    pend = ev.pending[(ev.pending >= lo) & (ev.pending <= hi)]
    times = np.concatenate([ev.intended[sel], pend])
    slow = np.concatenate([ev.latency[sel] > threshold_s, ev.t_s - pend > threshold_s])
    n = times.size
    if n == 0:
        return 0.0, 1.0, 0
    b = _batches(times, lo, max(hi, lo + 1e-9), n)
    k = int(b.max()) + 1
    weights = np.bincount(b, minlength=k).astype(float)
    cp_low, cp_high = _binomial_bounds(int(slow.sum()), n)
    bb = _batch_bounds(np.bincount(b, weights=slow, minlength=k), weights)
    low = min(cp_low, bb[0]) if bb else cp_low
    high = max(cp_high, bb[1]) if bb else cp_high
    return max(low, 0.0), min(high, 1.0), n


def keep_up_bounds(ev: Evidence, lo: float) -> tuple[float, float, float] | None:
    """Completions in [lo, t] over arrivals due in it: (point, low, high)."""
    due_t = np.concatenate([ev.intended[ev.intended >= lo], ev.pending[ev.pending >= lo]])
    done_t = ev.done[(ev.done >= lo) & (ev.done <= ev.t_s)]
    if due_t.size < BATCH_MIN:
        return None
    b_due = _batches(due_t, lo, ev.t_s, due_t.size)
    k = int(b_due.max()) + 1
    b_done = np.clip(((done_t - lo) / max(ev.t_s - lo, 1e-9) * k).astype(int), 0, k - 1)
    due = np.bincount(b_due, minlength=k).astype(float)
    done = np.bincount(b_done, minlength=k).astype(float)
    point = float(done.sum() / due.sum())
    cp_low, cp_high = _binomial_bounds(min(int(done.sum()), due_t.size), due_t.size)
    bb = _batch_bounds(done, due)
    low = min(cp_low, bb[0]) if bb else cp_low
    high = max(cp_high, bb[1]) if bb else cp_high
    return point, low, high


@dataclass(frozen=True)
class DecisionRule:
    """When a phase may stop early (see the module docstring). Picklable: it travels
    with the load plan (``LoadPlan.decide``) to every shard."""

    p95_s: float
    success_rate: float
    margin: float = 0.2
    min_s: float = 5.0
    horizon_s: float = 30.0
    check_s: float = 1.0
    open_loop: bool = True
    min_answers: int = 20  # closed loop: at least a few rounds of N
    soak: bool = False  # a confirmation: runs its length unless it fails

    def start(self) -> DecisionWatch:
        return DecisionWatch(self)

    def decide(self, ev: Evidence, *, final: bool = False) -> Decision | None:
        """The verdict the evidence allows at ``ev.t_s``, or ``None`` (not yet).
        ``final``: judge a finished phase (no minimum duration)."""
        t = ev.t_s
        if not final and t < self.min_s / 2:
            return None
        lo = (STEADY_FROM if self.open_loop else CLOSED_TRIM) * t
        answered = int((ev.intended >= lo).sum())
        if answered + int((ev.pending >= lo).sum()) < max(BATCH_MIN, self.min_answers):
            return None
        if (bad := self._unsustainable(ev, lo)) is not None:
            return Decision("unsustainable", bad)
        if not final and (t < self.min_s or self.soak):
            return None
        good = self._sustainable(ev, lo)
        return Decision("sustainable", good) if good is not None else None

    def _success(self, ev: Evidence, lo: float) -> tuple[float, float, float]:
        sel = ev.intended >= lo
        x, n = int(ev.accepted[sel].sum()), int(sel.sum())
        low, high = _binomial_bounds(x, n) if n else (0.0, 1.0)
        return (x / n if n else float("nan")), low, high

    def _trend(self, ev: Evidence) -> tuple[float, float, float] | None:
        """(p95 of the accepted answers, slope low, slope high), or ``None``."""
        ok = ev.accepted
        tr = latency_trend(ev.intended[ok], ev.latency[ok], ev.t_s)
        if tr is None:
            return None
        return float(np.quantile(ev.latency[ok], 0.95)), tr.low, tr.high

    def _unsustainable(self, ev: Evidence, lo: float) -> str | None:
        low, _, n = share_slower(ev, lo, self.p95_s)
        if low > TAIL:
            return (
                f"p95 above {self.p95_s:g} s: ≥ {low:.1%} of {n} requests slower "
                f"({CONFIDENCE:.0%} bound)"
            )
        point, _, high = self._success(ev, lo)
        if high < self.success_rate:
            return f"success {point:.1%} < {self.success_rate:.0%} (upper bound {high:.1%})"
        if not self.open_loop:
            return None
        keep = keep_up_bounds(ev, lo)
        if keep is not None and keep[2] < KEEP_UP:
            return (
                f"the queue grows: completions {keep[0]:.0%} of arrivals (upper bound "
                f"{keep[2]:.0%} < {KEEP_UP:.0%})"
            )
        tr = self._trend(ev)
        # A slope is only evidence once p95 is already near the SLO: batch medians of a
        # queue near (not over) capacity wander for tens of seconds, and a short phase's
        # slope interval, extrapolated over horizon_s, would call such a phase unsustainable.
        near = tr is not None and tr[0] >= (1 - self.margin) * self.p95_s
        if near and tr[1] > 0 and tr[0] + tr[1] * self.horizon_s >= self.p95_s:
            return (
                f"the queue grows: latency slope ≥ {tr[1]:.3g} s/s ({CONFIDENCE:.0%} "
                f"interval above 0) takes p95 past {self.p95_s:g} s within "
                f"{self.horizon_s:g} s"
            )
        return None

    def _sustainable(self, ev: Evidence, lo: float) -> str | None:
        bar = (1 - self.margin) * self.p95_s
        _, high, n = share_slower(ev, lo, bar, settled=True)
        if n < BATCH_MIN or not high < TAIL:
            return None
        _, low, _ = self._success(ev, lo)
        if low < self.success_rate:
            return None
        if self.open_loop:
            keep = keep_up_bounds(ev, lo)
            if keep is None or keep[0] < KEEP_UP:
                return None
            tr = self._trend(ev)
            if tr is not None and tr[0] + max(tr[2], 0.0) * self.horizon_s >= self.p95_s:
                return None
        return (
            f"p95 below {bar:.3g} s ({self.margin:.0%} under the SLO): ≤ {high:.1%} of "
            f"{n} requests slower ({CONFIDENCE:.0%} bound)"
        )


@dataclass
class DecisionWatch:
    """One shard's running evidence for a ``DecisionRule``."""

    rule: DecisionRule
    next_check_s: float = field(init=False)
    _intended: list[float] = field(default_factory=list)
    _done: list[float] = field(default_factory=list)
    _accepted: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_check_s = self.rule.min_s / 2

    def answered(self, intended_s: float, done_s: float, accepted: bool) -> None:
        self._intended.append(intended_s)
        self._done.append(done_s)
        self._accepted.append(accepted)

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_check_s

    def evidence(self, now_s: float, pending: Iterable[float]) -> Evidence:
        return Evidence(now_s, np.asarray(self._intended, float), np.asarray(self._done, float),
                        np.asarray(self._accepted, bool), np.fromiter(pending, float))  # fmt: skip

    def check(self, now_s: float, pending: Iterable[float]) -> Decision | None:
        """The decision at ``now_s`` (``pending``: intended times of requests in flight)."""
        self.next_check_s = now_s + self.rule.check_s
        return self.rule.decide(self.evidence(now_s, pending))


# -- where to look next ---------------------------------------------------------------------


def next_rate(
    points: Sequence[tuple[float, str]],
    start: float,
    *,
    max_rate: float | None = None,
    precision: float = 0.05,
    growth: float = GROWTH,
) -> tuple[float, str] | None:
    """The next load to try and why (``grow``, ``descend``, ``bisect``), or ``None``: done.
    ``points``: (load, status) of every phase so far, in order; loads that gave no evidence
    are skipped (the caller retries or stops on those)."""
    low, high = bracket(points)
    tried = [r for r, _ in points]
    if high is None:  # nothing failed yet: grow (up to the cap)
        if low is None:
            first = min(start, max_rate) if max_rate is not None else start
            return (first, "grow") if not tried else None
        if max_rate is not None and low >= max_rate * (1 - 1e-9):
            return None  # the cap was sustained: "at least"
        steps = sum(1 for r in tried if r > start * (1 - 1e-9))
        if steps > MAX_GROWTH_STEPS:
            return None
        nxt = low * growth
        return (min(nxt, max_rate) if max_rate is not None else nxt), "grow"
    if low is None:  # even the lowest rate tried failed: descend
        if sum(1 for r in tried if r < start * (1 - 1e-9)) >= MAX_DESCENT_STEPS:
            return None
        return high / growth, "descend"
    mid = refine_next(points, tolerance=precision)
    return (mid, "bisect") if mid is not None else None


@dataclass(frozen=True)
class Point:
    """One phase for the interval: its load, verdict, and whether that verdict was sure."""

    load: float
    status: str
    sure: bool


def max_rate_interval(points: Sequence[Point]) -> tuple[float | None, float | None]:
    """[low, high] around the max sustainable load: the highest surely-sustainable load
    below the first unsustainable one (0 when none), and the lowest surely-unsustainable
    load at or above it (``None``: open above, an "at least")."""
    low, high = bracket([(p.load, p.status) for p in points])
    sure_ok = [p.load for p in points if p.sure and p.status == "sustainable"
               and (high is None or p.load < high)]  # fmt: skip
    sure_bad = [p.load for p in points if p.sure and p.status == "unsustainable"
                and (high is None or p.load >= high)]  # fmt: skip
    if low is None and high is None:
        return None, None
    return (max(sure_ok) if sure_ok else 0.0), (min(sure_bad) if sure_bad else None)


def evidence_of(records: pd.DataFrame, t_s: float) -> Evidence:
    """A finished phase's records as ``Evidence`` at ``t_s`` (what it ran): requests the
    stop cancelled count as still in flight."""
    from kubetest.engine.client import GENERATOR_ERRORS

    err = records["error"]
    answered = records[~err.isin(list(GENERATOR_ERRORS))]
    cancelled = records[err == "cancelled"]
    return Evidence(
        t_s,
        answered["intended_s"].to_numpy(dtype=float),
        answered["done_s"].to_numpy(dtype=float),
        (answered["outcome"] == "accepted").to_numpy(),
        cancelled["intended_s"].to_numpy(dtype=float),
    )


def is_sure(rule: DecisionRule, records: pd.DataFrame, t_s: float, status: str,
            decided: dict[str, Any] | None) -> bool:  # fmt: skip
    """Whether a phase's verdict ``status`` holds at the rule's confidence: it was decided
    early, or the rule, asked once more over the whole phase, says the same."""
    if decided is not None:
        return bool(decided.get("status") == status)
    if status not in ("sustainable", "unsustainable") or records.empty:
        return False
    verdict = rule.decide(evidence_of(records, t_s), final=True)
    return verdict is not None and verdict.status == status
