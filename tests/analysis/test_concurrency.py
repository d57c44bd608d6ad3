"""The in-flight sweep counts simultaneous requests exactly."""

from __future__ import annotations

import pandas as pd
import pytest

from kubetest.analysis.concurrency import in_flight_steps, sustained_concurrency


def test_in_flight_steps_counts_overlaps() -> None:
    records = pd.DataFrame({"sent_s": [0.0, 0.5, 1.0], "done_s": [1.0, 2.0, 1.5]})
    steps = in_flight_steps(records)
    # at t=1.0 one request ends and one starts: the end is counted first
    assert steps["in_flight"].tolist() == [1, 2, 1, 2, 1, 0]
    assert steps["in_flight"].max() == 2


def test_closed_loop_of_n_workers_is_sustained() -> None:
    n, per = 10, 50
    rows = [{"sent_s": k * 0.1, "done_s": (k + 1) * 0.1} for _ in range(n) for k in range(per)]
    c = sustained_concurrency(pd.DataFrame(rows), target=n)
    assert c.time_weighted_mean == pytest.approx(n)
    assert c.fraction_at_target == pytest.approx(1.0)
    half = sustained_concurrency(pd.DataFrame(rows[: n // 2 * per]), target=n)
    assert half.fraction_at_target == 0.0 and half.time_weighted_mean == pytest.approx(n / 2)
