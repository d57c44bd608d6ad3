"""Percentile and proportion confidence intervals cover the truth as often as they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubetest.analysis.latency import proportion_ci, quantile_ci, summarise


@pytest.mark.parametrize("n", [200, 20_000])  # bootstrap and order-statistic paths
def test_quantile_ci_covers_the_true_p95(n: int) -> None:
    true_p95 = -np.log(0.05)  # exponential(1)
    rng = np.random.default_rng(1)
    trials = 60 if n == 200 else 100
    covered = 0
    for _ in range(trials):
        est = quantile_ci(rng.exponential(1.0, n), 0.95, seed=int(rng.integers(1 << 30)))
        assert est.low <= est.value <= est.high
        covered += est.low <= true_p95 <= est.high
    assert covered / trials >= 0.85  # nominal 95 %, generous for a finite number of trials


def test_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(2)
    small = quantile_ci(rng.exponential(1.0, 500), 0.95)
    large = quantile_ci(rng.exponential(1.0, 50_000), 0.95)
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_proportion_ci_is_wilson() -> None:
    est = proportion_ci(95, 100)
    assert est.value == 0.95
    assert est.low == pytest.approx(0.8882, abs=1e-3) and est.high == pytest.approx(
        0.9785, abs=1e-3
    )
    perfect = proportion_ci(50, 50)
    assert perfect.high == 1.0 and perfect.low < 1.0


def test_summarise_counts_only_accepted_latency() -> None:
    records = pd.DataFrame(
        {
            "outcome": ["accepted"] * 3 + ["failed", "throttled", "failed"],
            "latency_s": [0.1, 0.2, 0.3, 30.0, 0.001, 2.0],
            "lag_s": [0.0] * 6,
            "error": ["", "", "", "timeout", "", "late"],
        }
    )
    s = summarise(records)
    assert s.count == 5 and s.accepted == 3 and s.not_sent == 1  # "late" was never sent
    assert s.max == pytest.approx(0.3)
    assert s.outcomes["failed"] == 1 and s.outcomes["throttled"] == 1
    assert s.errors == {"timeout": 1}
    assert s.success.value == pytest.approx(0.6)
