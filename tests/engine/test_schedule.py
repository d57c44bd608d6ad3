"""Arrival schedules: the plan the generator must keep, checked before any load is sent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kubetest.engine.schedule import constant, mean_rate, planned_duration, poisson, stages


def test_constant_is_evenly_spaced_from_zero() -> None:
    s = constant(50, 4)
    assert len(s) == 200
    assert s[0] == 0.0
    np.testing.assert_allclose(np.diff(s), 1 / 50)
    assert s[-1] < 4


def test_constant_counts_whole_arrivals_only() -> None:
    assert len(constant(0.1, 30)) == 3  # 0.1 * 30 is 3.0000000000000004 in floats
    assert len(constant(1, 2.5)) == 2
    assert len(constant(60 / 60, 10 * 60)) == 600  # the guide's A1: 60/min for 10 min
    assert len(constant(0, 10)) == 0
    assert len(constant(5, 0)) == 0


@pytest.mark.parametrize("bad", [(-1, 1), (1, -1), (float("nan"), 1), (float("inf"), 1)])
def test_constant_refuses_bad_numbers(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError):
        constant(*bad)


def test_poisson_count_and_gaps() -> None:
    rate, duration = 200.0, 50.0
    s = poisson(rate, duration, seed=7)
    n = rate * duration
    assert abs(len(s) - n) < 4 * np.sqrt(n)  # Poisson count: sd = sqrt(n)
    assert np.all(np.diff(s) >= 0) and s[0] >= 0 and s[-1] < duration
    gaps = np.diff(s)
    assert abs(gaps.mean() - 1 / rate) / (1 / rate) < 0.03
    # exponential gaps (KS against Exp(rate)); fixed seed, so deterministic
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.01


def test_poisson_is_reproducible_by_seed() -> None:
    np.testing.assert_array_equal(poisson(10, 20, seed=1), poisson(10, 20, seed=1))
    assert not np.array_equal(poisson(10, 20, seed=1), poisson(10, 20, seed=2))
    assert len(poisson(0, 10)) == 0


def test_stages_join_constant_rates_without_gap_or_double() -> None:
    s = stages([(10, 1), (20, 0.5)])
    assert len(s) == 10 + 10
    np.testing.assert_allclose(s[:10], np.arange(10) / 10)
    np.testing.assert_allclose(s[10:], 1 + np.arange(10) / 20)
    assert np.all(np.diff(s) > 0)


def test_stages_tagged_forms_and_pause() -> None:
    s = stages([("constant", 2, 1), ("pause", 3), ("constant", 2, 1)])
    np.testing.assert_allclose(s, [0, 0.5, 4, 4.5])
    p = stages([("poisson", 100, 2)], seed=3)
    np.testing.assert_array_equal(p, poisson(100, 2, seed=3))


def test_ramp_carries_the_integral_and_speeds_up() -> None:
    s = stages([("ramp", 0, 100, 10)])  # mean rate 50/s over 10 s
    assert len(s) == 500
    gaps = np.diff(s)
    assert np.all(np.diff(gaps) < 1e-12)  # gaps shrink as the rate grows
    # the local rate near the end approaches 100/s
    assert 1 / gaps[-1] == pytest.approx(100, rel=0.02)
    down = stages([("ramp", 100, 0, 10)])
    assert len(down) == 500 and down[-1] < 10


def test_flat_ramp_equals_constant() -> None:
    np.testing.assert_allclose(stages([("ramp", 10, 10, 3)]), constant(10, 3))


@pytest.mark.parametrize(
    "bad", [[("nope", 1, 2)], [("ramp", 1, 2)], [(1, 2, 3)], ["abc"], [(-1, 2)]]
)
def test_stages_refuse_malformed_items(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        stages(bad)  # type: ignore[arg-type]


def test_planned_duration_and_mean_rate() -> None:
    s = constant(5, 2)
    assert planned_duration(s) == pytest.approx(2.0)
    assert planned_duration(s, rate_hint=5) == pytest.approx(2.0)
    assert mean_rate(s) == pytest.approx(5.0)
    assert planned_duration(np.empty(0)) == 0.0
