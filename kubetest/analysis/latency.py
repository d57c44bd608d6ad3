"""Latency distributions from the records: percentiles with confidence intervals.

Percentiles are judged on latency from the *intended* send time (``latency_s``), the
number a user of the service would see; the generator's own lag is summarised beside it.
Confidence intervals: a seeded percentile bootstrap for small samples, and for large ones
the distribution-free order-statistic interval (binomial), which the bootstrap converges
to and which costs nothing at a million samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

BOOTSTRAP_MAX_N = 5_000
BOOTSTRAP_RESAMPLES = 2_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (same unit)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def quantile_ci(
    values: np.ndarray, q: float, confidence: float = CONFIDENCE, seed: int = 0
) -> Estimate:
    """The ``q`` quantile (0..1) of ``values`` with a ``confidence`` interval."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    point = float(np.quantile(x, q))
    if n == 1:
        return Estimate(point, point, point)
    alpha = 1.0 - confidence
    if n <= BOOTSTRAP_MAX_N:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
        boot = np.quantile(x[idx], q, axis=1)
        low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        return Estimate(point, float(min(low, point)), float(max(high, point)))
    # Order statistics: ranks whose binomial(n, q) probability brackets the quantile.
    lo_rank = int(stats.binom.ppf(alpha / 2, n, q))
    hi_rank = int(stats.binom.ppf(1 - alpha / 2, n, q))
    return Estimate(point, float(x[max(lo_rank - 1, 0)]), float(x[min(hi_rank, n - 1)]))


def proportion_ci(successes: int, total: int, confidence: float = CONFIDENCE) -> Estimate:
    """A success rate with its Wilson score interval (sound near 0 and 1, unlike Wald)."""
    if total <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return Estimate(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


@dataclass(frozen=True)
class LatencySummary:
    """What a BR needs from a set of records."""

    count: int
    accepted: int
    success: Estimate
    p50: Estimate
    p95: Estimate
    p99: Estimate
    max: float
    mean: float
    lag_p99: float
    not_sent: int
    outcomes: dict[str, int]
    errors: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "accepted": self.accepted,
            "success_rate": self.success.as_dict(),
            "p50": self.p50.as_dict(),
            "p95": self.p95.as_dict(),
            "p99": self.p99.as_dict(),
            "max": self.max,
            "mean": self.mean,
            "schedule_lag_p99": self.lag_p99,
            "not_sent": self.not_sent,
            "outcomes": self.outcomes,
            "errors": self.errors,
        }

    def table(self) -> pd.DataFrame:
        """The latency table a notebook displays: estimate and 95 % CI per statistic."""
        rows = {"p50": self.p50, "p95": self.p95, "p99": self.p99}
        frame = pd.DataFrame(
            {k: [v.value, v.low, v.high] for k, v in rows.items()},
            index=["seconds", "ci_low", "ci_high"],
        ).T
        frame.loc["max"] = [self.max, np.nan, np.nan]
        frame.loc["mean"] = [self.mean, np.nan, np.nan]
        return frame


def summarise(records: pd.DataFrame) -> LatencySummary:
    """Summarise records (see ``kubetest.engine.records``): latency over accepted requests."""
    from kubetest.engine.client import GENERATOR_ERRORS
    from kubetest.engine.records import OUTCOMES

    # Arrivals the generator never sent (late/dropped/cancelled) say nothing about the
    # target: they are counted apart, and a run with any is marked saturated anyway.
    unsent = records["error"].isin(list(GENERATOR_ERRORS))
    not_sent = int(unsent.sum())
    records = records[~unsent]
    ok = records[records["outcome"] == "accepted"]
    lat = ok["latency_s"].to_numpy(dtype=float)
    outcomes = {o: int((records["outcome"] == o).sum()) for o in OUTCOMES}
    errors = {
        str(k): int(v)
        for k, v in records.loc[records["error"] != "", "error"].value_counts().items()
    }
    lag = records["lag_s"].to_numpy(dtype=float)
    return LatencySummary(
        count=len(records),
        accepted=len(ok),
        success=proportion_ci(len(ok), len(records)),
        p50=quantile_ci(lat, 0.50),
        p95=quantile_ci(lat, 0.95),
        p99=quantile_ci(lat, 0.99),
        max=float(lat.max()) if lat.size else float("nan"),
        mean=float(lat.mean()) if lat.size else float("nan"),
        lag_p99=float(np.quantile(lag, 0.99)) if lag.size else float("nan"),
        not_sent=not_sent,
        outcomes=outcomes,
        errors=errors,
    )
