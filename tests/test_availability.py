"""Availability from probe timestamps: downtime, bounds, budget, verdicts."""

from __future__ import annotations

import pandas as pd
import pytest

from kubetest.analysis.availability import availability_from_probes, downtime_budget
from kubetest.workbook.a3_availability import judge


def probes(pattern: str, interval: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"t_s": [i * interval for i in range(len(pattern))],
                         "ok": [c == "u" for c in pattern]})  # fmt: skip


def test_budget_is_computed_from_the_window_not_the_guides_18_s() -> None:
    assert downtime_budget(30 * 60, 0.999) == pytest.approx(1.8)


def test_downtime_runs_from_first_failed_to_next_successful_probe() -> None:
    a = availability_from_probes(probes("uuuddduuuu"), window_s=10, target=0.9, interval_s=1)
    assert len(a.outages) == 1
    o = a.outages[0]
    assert (o.start_s, o.end_s, o.probes) == (3, 6, 3)
    assert a.downtime_s == 3 and a.downtime_low_s == 2 and a.downtime_high_s == 4
    assert a.availability == pytest.approx(0.7)
    assert a.resolution_s == 1


def test_several_outages_and_one_still_open_at_the_end() -> None:
    a = availability_from_probes(probes("uduuuudd", 0.5), window_s=4.0, target=0.99, interval_s=0.5)
    assert [o.probes for o in a.outages] == [1, 2]
    assert a.outages[-1].open_ended and a.outages[-1].end_s == 4.0
    assert a.downtime_s == pytest.approx(0.5 + 1.0)


def test_verdicts() -> None:
    clean = availability_from_probes(probes("u" * 100, 0.1), 10, 0.95, 0.1)
    assert judge(clean).status == "PASS" and judge(clean).measured == 100
    down = availability_from_probes(probes("u" * 50 + "dd" + "u" * 48, 0.1), 10, 0.99, 0.1)
    assert down.downtime_s == pytest.approx(0.2) and down.budget_s == pytest.approx(0.1)
    assert judge(down).status == "FAIL"
    coarse = availability_from_probes(probes("u" * 10, 10.0), 100, 0.999, 10.0)
    verdict = judge(coarse)
    assert verdict.status == "INCONCLUSIVE" and "probe_interval_s" in verdict.details["reasons"][0]
