"""Did the generator keep up? The engine's judgement of its own measurement.

A run's summary says whether the *generator* kept up (``saturated``), because a
generator that falls behind reports its own delays as target latency. It is saturated when:

* achieved send rate < ``RATE_SHORTFALL`` (95 %) of the schedule's rate. Counted on
  requests *sent*, whatever their answer: a slow or failing target with in-flight room
  left does not flag the generator;
* schedule lag p99 > ``LAG_P99_LIMIT_S`` (50 ms), with at least ``LAG_LATE_MIN`` (3)
  arrivals that late in at least ``LAG_LATE_SECONDS`` (2) different seconds of the run:
  below 100 arrivals a p99 is the maximum, and one stall of a busy machine (a page
  fault, a neighbour's burst) delays the few arrivals due during it without making a
  generator that cannot keep up (its latencies, measured from the intended time, carry
  the stall: conservative); or lag growing by more than ``LAG_GROWTH_LIMIT_S`` (25 ms,
  median of the per-second max lag, last vs first quarter);
* event-loop thread busy > ``LOOP_BUSY_LIMIT`` (90 % CPU of wall time), or its 25 ms
  ticker oversleeping by more than ``LOOP_LAG_P99_LIMIT_S`` (50 ms) at p99 in at least
  ``LAG_LATE_MIN`` ticks (one tick oversleeps once per stall: three are three stalls);
* any arrival not sent (``dropped`` at the in-flight cap, ``late`` beyond ``max_lag_s``).
  A target too slow for rate × latency to fit under ``max_in_flight`` lands here: the
  numbers then describe what was sent, and the reason says to raise the cap.

Sharded runs are judged overall and shard by shard (``per_worker``: a shard that falls
behind distorts the union of the schedule even when the total looks fine). A shard whose
worker died is *lost*: its flushed records still count, the run is ``complete: false``,
and the rate judgement covers the shards that finished, so a death is never reported as
generator saturation nor hidden in a lower achieved rate.

``run.summarise_shards`` asks ``judge`` once over the shards that finished and once over all of
them, and ``per_worker`` shard by shard. The constants are the engine's own limits;
``analysis.validity`` reads ``LAG_P99_LIMIT_S`` and ``CLOCK_WARN_S`` from here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from kubetest.engine.plan import LoadPlan
from kubetest.engine.records import new_histogram
from kubetest.engine.result import ShardInfo, ShardResult
from kubetest.engine.schedule import mean_rate, planned_duration

RATE_SHORTFALL = 0.95
LAG_P99_LIMIT_S = 0.050
#: Arrivals later than LAG_P99_LIMIT_S needed before the p99 rule speaks.
LAG_LATE_MIN = 3
#: ... in at least this many different seconds of the run (one stall is one second).
LAG_LATE_SECONDS = 2
LAG_GROWTH_LIMIT_S = 0.025
LOOP_BUSY_LIMIT = 0.90
LOOP_LAG_P99_LIMIT_S = 0.050
#: A worker clock further than this from the client's gets a warning (engine.cluster).
CLOCK_WARN_S = 0.005


# -- HDR histograms in seconds -------------------------------------------------------------


def merged(encoded: list[bytes]) -> HdrHistogram:
    """One histogram of several shards' encoded ones."""
    hist = new_histogram()
    for blob in encoded:
        hist.decode_and_add(blob)
    return hist


def quantile_s(hist: HdrHistogram, pct: float) -> float | None:
    """The ``pct`` percentile in seconds; None for an empty histogram."""
    if hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(pct) / 1e6


def count_above(hist: HdrHistogram, limit_s: float) -> int:
    """How many recorded values exceed ``limit_s`` (to the histogram's precision)."""
    edge = hist.get_highest_equivalent_value(int(limit_s * 1e6))
    return sum(
        item.count_at_value_iterated_to
        for item in hist.get_recorded_iterator()
        if item.value_iterated_to > edge
    )


def max_s(hist: HdrHistogram) -> float | None:
    """The largest value in seconds; None for an empty histogram."""
    return hist.get_max_value() / 1e6 if hist.get_total_count() else None


def _lag_growth(per_second: np.ndarray) -> float | None:
    seen = per_second[per_second >= 0]
    if len(seen) < 8:
        return None
    quarter = len(seen) // 4
    return float(np.median(seen[-quarter:]) - np.median(seen[:quarter]))


# -- the judgement ------------------------------------------------------------------------


@dataclass
class Judgement:
    """The generator's self-judgement over a set of shards (all of them, or one)."""

    achieved: float
    reasons: list[str]
    lag: HdrHistogram
    loop_lag_p99: float | None
    growth: float | None
    loop_busy: float


def judge(
    results: list[ShardResult], plan: LoadPlan, *, interrupted: bool, share: float
) -> Judgement:
    """Did these shards, carrying ``share`` of the plan, keep up? (module docstring rules)"""
    lag = merged([r.lag_hdr for r in results])
    loop_lag = merged([r.loop_lag_hdr for r in results])
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    sent = sum(r.dispatched for r in results)
    scheduled = sum(r.scheduled for r in results)
    dispatch_end = max((r.dispatch_end_s for r in results), default=0.0)
    last_sent = max((r.last_sent_s for r in results), default=0.0)
    loop_busy = max((r.loop_busy for r in results), default=0.0)
    n_sec = max((len(r.lag_max_by_second) for r in results), default=0)
    per_second = np.full(n_sec, -1.0)
    for r in results:
        arr = np.asarray(r.lag_max_by_second)
        per_second[: len(arr)] = np.maximum(per_second[: len(arr)], arr)

    reasons: list[str] = []
    growth: float | None = None
    if plan.mode == "open":
        assert plan.schedule is not None
        target = plan.target_rate_per_s or mean_rate(plan.schedule)
        gap = 1.0 / (target * share) if target else 0.0
        full_span = planned_duration(plan.schedule, plan.target_rate_per_s)
        span = dispatch_end if interrupted else full_span
        window = max(span, last_sent + gap, 1e-9)
        achieved = sent / window
        expected = scheduled / max(span, 1e-9)
        if scheduled and achieved < RATE_SHORTFALL * expected:
            reasons.append(
                f"sent {achieved:.1f}/s, {achieved / expected:.0%} of the scheduled "
                f"{expected:.1f}/s (limit {RATE_SHORTFALL:.0%})"
            )
        lag_p99 = quantile_s(lag, 99)
        if (
            lag_p99 is not None
            and lag_p99 > LAG_P99_LIMIT_S
            and count_above(lag, LAG_P99_LIMIT_S) >= LAG_LATE_MIN
            and (n_sec == 0 or int((per_second > LAG_P99_LIMIT_S).sum()) >= LAG_LATE_SECONDS)
        ):
            reasons.append(
                f"schedule lag p99 {lag_p99 * 1e3:.0f} ms > {LAG_P99_LIMIT_S * 1e3:.0f} ms"
            )
        growth = _lag_growth(per_second)
        if growth is not None and growth > LAG_GROWTH_LIMIT_S:
            reasons.append(f"schedule lag grew by {growth * 1e3:.0f} ms over the run")
    else:
        achieved = sum(r.completed for r in results) / max(dispatch_end, 1e-9)
    if loop_busy > LOOP_BUSY_LIMIT:
        reasons.append(f"event loop busy {loop_busy:.0%} > {LOOP_BUSY_LIMIT:.0%} (CPU-bound)")
    loop_lag_p99 = quantile_s(loop_lag, 99)
    if (
        loop_lag_p99 is not None
        and loop_lag_p99 > LOOP_LAG_P99_LIMIT_S
        and count_above(loop_lag, LOOP_LAG_P99_LIMIT_S) >= LAG_LATE_MIN
    ):
        reasons.append(f"event loop stalls: ticker lag p99 {loop_lag_p99 * 1e3:.0f} ms")
    if errors.get("dropped"):
        cap = sum(r.max_in_flight for r in results)
        reasons.append(
            f"{errors['dropped']} arrivals dropped: {cap} requests already in flight "
            "(the target is slower than rate x latency allows; raise max_in_flight)"
        )
    if errors.get("late"):
        reasons.append(
            f"{errors['late']} arrivals late by more than {plan.max_lag_s:g} s, not sent"
        )
    return Judgement(achieved, reasons, lag, loop_lag_p99, growth, loop_busy)


def per_worker(
    results: list[ShardResult], shards: list[ShardInfo], plan: LoadPlan, interrupted: bool
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Per-shard rows of the summary, with the shard-level saturation and clock warnings.
    Returns (rows, reasons to add to the overall judgement, notes)."""
    by_shard = {r.shard: r for r in results}
    n = max(1, len(shards))
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    notes: list[str] = []
    for info in shards:
        r = by_shard.get(info.shard)
        row: dict[str, Any] = {
            "worker": info.shard,
            "address": info.address,
            "status": "lost" if info.lost else "ok",
            "sent_count": r.dispatched if r else 0,
            "achieved_rate_per_s": None,
            "schedule_lag_p99": None,
            "loop_busy": None,
            "clock_offset_s": info.clock_offset_s,
            "clock_uncertainty_s": info.clock_uncertainty_s,
            "saturated": None,
            "saturation_reasons": [],
            "records": info.records,
        }
        if info.lost:
            row["lost_reason"] = info.lost
        if r is not None:
            j = judge([r], plan, interrupted=interrupted or bool(info.lost), share=1.0 / n)
            row["achieved_rate_per_s"] = j.achieved
            row["schedule_lag_p99"] = quantile_s(j.lag, 99) if plan.mode == "open" else None
            row["loop_busy"] = None if info.lost else j.loop_busy
            if not info.lost:
                row["saturated"] = bool(j.reasons)
                row["saturation_reasons"] = j.reasons
                if j.reasons and n > 1:
                    reasons.append(f"worker {info.shard}: " + "; ".join(j.reasons))
        where = f"worker {info.shard}" + (f" ({info.address})" if info.address else "")
        if abs(info.clock_offset_s) > CLOCK_WARN_S:
            notes.append(
                f"{where}: clock {info.clock_offset_s * 1e3:+.1f} ms off the client's "
                f"(±{info.clock_uncertainty_s * 1e3:.1f} ms); its start was shifted to match, "
                "but its timestamps only agree with other hosts' to that precision: sync "
                "clocks (chrony/NTP)"
            )
        elif info.clock_uncertainty_s > CLOCK_WARN_S:
            notes.append(
                f"{where}: clock offset known only to ±{info.clock_uncertainty_s * 1e3:.1f} ms "
                "(slow scheduler round trips); shards may start that far apart"
            )
        notes.extend(info.notes)
        rows.append(row)
    return rows, reasons, notes
