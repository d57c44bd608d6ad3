"""Did it change, or is it noise: a block bootstrap over time windows, and the verdict rule.

Latencies within a run are autocorrelated (a slow second makes its neighbours slow), so
resampling single requests (an iid bootstrap) understates the interval. Each run is cut
into time windows of its schedule (``intended_s``) and whole windows are resampled with
replacement, each run on its own; the statistic of NEW minus that of BASE, over the
resamples, gives the 95 % interval on the difference (percentile interval).

Quantiles of a resample come from per-window histograms on one geometric grid (0.1 %
wide bins, as fine as the HDR histograms the engine keeps): a resample's histogram is a
weighted sum of its windows', so a million records cost no more than a thousand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Resamples per comparison; seeded, so a comparison gives the same interval every time.
RESAMPLES = 2_000
CONFIDENCE = 0.95
#: Relative bin width of the latency grid (the HDR histograms' 3 significant digits).
RESOLUTION = 1e-3
MAX_BINS = 20_000
#: Windows per run: at least MIN_WINDOWS (else the bootstrap has nothing to resample), at
#: most MAX_WINDOWS, and never shorter than MIN_WINDOW_S (autocorrelation lasts seconds).
MIN_WINDOWS, MAX_WINDOWS, MIN_WINDOW_S = 8, 40, 1.0
#: Default smallest relative change that counts (``--min-effect``).
MIN_EFFECT = 0.05
#: Arrivals the generator never sent (``engine.client.GENERATOR_ERRORS``): not the service's.
UNSENT = ("late", "dropped", "cancelled")

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
#: Which way is worse for each records metric.
HIGHER_IS_WORSE = {
    "p50": True,
    "p95": True,
    "p99": True,
    "success_rate": False,
    "throughput_per_s": False,
}

REGRESSED, IMPROVED, NO_CHANGE, NOT_COMPARABLE = (
    "regressed",
    "improved",
    "no detectable change",
    "not comparable",
)


@dataclass(frozen=True)
class Windows:
    """One run's records cut into ``count`` windows of ``width_s`` seconds of schedule."""

    width_s: float
    index: np.ndarray  # each accepted request's window
    latency: np.ndarray  # each accepted request's latency (s)
    sent: np.ndarray  # requests sent per window
    accepted: np.ndarray  # requests accepted per window

    @property
    def count(self) -> int:
        return int(self.sent.size)


def window_width(span_s: float) -> float:
    """The window for a run spanning ``span_s`` seconds (see ``MIN_WINDOWS``)."""
    if span_s <= 0:
        return 1.0
    count = min(MAX_WINDOWS, max(MIN_WINDOWS, int(span_s // MIN_WINDOW_S)))
    return span_s / count


def windows(records: pd.DataFrame, width_s: float | None = None) -> Windows:
    """Cut ``records`` (``engine.records`` columns) into windows over the schedule."""
    rec = records[~records["error"].isin(UNSENT)]
    t = rec["intended_s"].to_numpy(dtype=float)
    span = float(t.max()) if t.size else 0.0
    count = max(1, round(span / (width_s or window_width(span))))
    width = span / count if span > 0 else 1.0  # the windows tile the run exactly
    idx = np.minimum((t / width).astype(int), count - 1) if t.size else t.astype(int)
    ok = (rec["outcome"] == "accepted").to_numpy()
    return Windows(
        width_s=width,
        index=idx[ok],
        latency=rec["latency_s"].to_numpy(dtype=float)[ok],
        sent=np.bincount(idx, minlength=count).astype(float),
        accepted=np.bincount(idx[ok], minlength=count).astype(float),
    )


def point(win: Windows, metric: str) -> float:
    """The metric over the whole run (what ``analysis.latency.summarise`` reports)."""
    if metric in QUANTILES:
        return float(np.quantile(win.latency, QUANTILES[metric])) if win.latency.size else math.nan
    if metric == "success_rate":
        total = win.sent.sum()
        return float(win.accepted.sum() / total) if total else math.nan
    if metric == "throughput_per_s":
        return float(win.accepted.sum() / (win.count * win.width_s))
    raise ValueError(f"unknown metric {metric!r}")


def _grid(*runs: Windows) -> np.ndarray:
    """Geometric bin edges covering every accepted latency of ``runs``."""
    values = np.concatenate([r.latency for r in runs])
    positive = values[values > 0]
    low = float(positive.min()) if positive.size else 1e-6
    high = float(values.max()) if values.size else 1.0
    high = max(high, low * (1 + RESOLUTION))
    bins = min(MAX_BINS, math.ceil(math.log(high / low) / math.log1p(RESOLUTION)) + 1)
    return np.geomspace(low, high * (1 + 1e-9), bins + 1)


def _resampled(
    win: Windows, metrics: list[str], edges: np.ndarray, rng: np.random.Generator, resamples: int
) -> dict[str, np.ndarray]:
    """Each metric over ``resamples`` block-bootstrap resamples of ``win``."""
    k = win.count
    picks = rng.integers(0, k, size=(resamples, k))
    flat = (picks + np.arange(resamples)[:, None] * k).ravel()
    weights = np.bincount(flat, minlength=resamples * k).reshape(resamples, k).astype(float)
    out: dict[str, np.ndarray] = {}
    sent, accepted = weights @ win.sent, weights @ win.accepted
    if "success_rate" in metrics:
        out["success_rate"] = np.divide(
            accepted, sent, out=np.full(resamples, np.nan), where=sent > 0
        )
    if "throughput_per_s" in metrics:
        out["throughput_per_s"] = accepted / (k * win.width_s)
    qs = [m for m in metrics if m in QUANTILES]
    if qs:
        nbins = edges.size - 1
        b = np.clip(np.searchsorted(edges, win.latency, side="right") - 1, 0, nbins - 1)
        cells = np.bincount(win.index * nbins + b, minlength=k * nbins)
        per_window = cells.reshape(k, nbins).astype(float)
        centres = np.sqrt(edges[:-1] * edges[1:])
        for m in qs:
            out[m] = np.empty(resamples)
        step = max(1, 4_000_000 // max(nbins, 1))  # bounded memory per chunk
        for start in range(0, resamples, step):
            cum = np.cumsum(weights[start : start + step] @ per_window, axis=1)
            total = cum[:, -1]
            for m in qs:
                rank = np.ceil(QUANTILES[m] * total).clip(min=1)
                at = (cum < rank[:, None]).sum(axis=1)
                vals = centres[np.minimum(at, nbins - 1)]
                out[m][start : start + step] = np.where(total > 0, vals, np.nan)
    return out


@dataclass(frozen=True)
class Difference:
    """One metric of two runs: values, relative change and the interval on NEW − BASE."""

    metric: str
    base: float
    new: float
    ci: tuple[float, float]

    @property
    def change(self) -> float | None:
        """(new − base) / base; None when base is 0 or unknown."""
        if not self.base or not math.isfinite(self.base) or not math.isfinite(self.new):
            return None
        return (self.new - self.base) / abs(self.base)


def compare_runs(
    base: pd.DataFrame,
    new: pd.DataFrame,
    metrics: list[str] | None = None,
    *,
    width_s: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Difference]:
    """Each metric of two runs' records with the block-bootstrap interval on the difference.

    Both runs are cut into windows of the same width (the wider of their defaults, or
    ``width_s``), so a window means the same stretch of time in each."""
    metrics = metrics or list(HIGHER_IS_WORSE)
    spans = [float(r["intended_s"].max()) if len(r) else 0.0 for r in (base, new)]
    width = width_s or max(window_width(s) for s in spans)
    wb, wn = windows(base, width), windows(new, width)
    edges = _grid(wb, wn)
    rng = np.random.default_rng(seed)
    boot_b = _resampled(wb, metrics, edges, rng, resamples)
    boot_n = _resampled(wn, metrics, edges, rng, resamples)
    alpha = 1 - confidence
    out: dict[str, Difference] = {}
    for m in metrics:
        b, n = point(wb, m), point(wn, m)
        diff = boot_n[m] - boot_b[m]
        diff = diff[np.isfinite(diff)]
        if not diff.size or not (math.isfinite(b) and math.isfinite(n)):
            out[m] = Difference(m, b, n, (math.nan, math.nan))
            continue
        lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
        d = n - b  # the interval holds the point difference (the grid's 0.1 % aside)
        out[m] = Difference(m, b, n, (float(min(lo, d)), float(max(hi, d))))
    return out


def verdict(
    change: float | None,
    ci: tuple[float, float] | None,
    higher_is_worse: bool,
    min_effect: float = MIN_EFFECT,
) -> str:
    """``regressed`` / ``improved`` when the interval on NEW − BASE excludes 0 and the
    relative change exceeds ``min_effect``; ``no detectable change`` otherwise."""
    if ci is None or change is None or not all(math.isfinite(v) for v in ci):
        return NO_CHANGE
    if (ci[0] <= 0 <= ci[1]) or abs(change) <= min_effect:
        return NO_CHANGE
    worse = (change > 0) == higher_is_worse
    return REGRESSED if worse else IMPROVED


def bracket_difference(base: tuple[float, float], new: tuple[float, float]) -> tuple[float, float]:
    """The interval on NEW − BASE of two values known only within bounds (a sweep's
    bracket, a probe's resolution): every difference the bounds allow."""
    return new[0] - base[1], new[1] - base[0]
