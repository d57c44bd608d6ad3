"""The run summary's self-judgement, on synthetic shard results (no network, no clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_servers import hdr, outcomes, shard_result

from kubetest.engine import LoadPlan, ShardResult, summarise_shards
from kubetest.engine.schedule import constant


def _summary(results: list[ShardResult], plan: LoadPlan | None = None, **kw: Any) -> dict:
    plan = plan or LoadPlan(url="http://127.0.0.1:1/x", schedule=constant(10, 10))
    s, _ = summarise_shards(
        results,
        plan,
        start_epoch=0.0,
        workers=len(results),
        interrupted=kw.get("interrupted", False),
        records_path=Path("r.csv"),
    )
    return s


def test_healthy_run_is_not_saturated() -> None:
    s = _summary([shard_result()])
    assert s["saturated"] is False and s["saturation_reasons"] == []
    assert s["achieved_rate_per_s"] == pytest.approx(10, rel=0.01)
    assert s["p50"] == pytest.approx(0.1, rel=0.01) and s["success_rate"] == 1.0
    assert s["complete"] is True


def test_target_failures_do_not_flag_the_generator() -> None:
    failed = outcomes(10, throttled=30, failed=60)
    s = _summary(
        [shard_result(outcomes=failed, errors={"http_5xx": 60, "http_4xx": 30},
                      latency_hdr=hdr([0.1] * 10))]
    )  # fmt: skip
    assert s["success_rate"] == pytest.approx(0.1)
    assert s["saturated"] is False


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        (dict(dispatched=80, last_sent_s=9.9), "of the scheduled"),
        (dict(last_sent_s=14.0), "of the scheduled"),  # sent everything, but 40 % too slowly
        (dict(lag_hdr=hdr([0.2] * 100), lag_max_by_second=[0.2] * 12), "schedule lag p99"),
        (dict(lag_max_by_second=[0.001] * 6 + [0.04] * 6), "lag grew"),
        (dict(loop_busy=0.97), "event loop busy"),
        (dict(loop_lag_hdr=hdr([0.2] * 40)), "ticker lag"),
        (dict(errors={"dropped": 5}), "dropped"),
        (dict(errors={"late": 5}), "late"),
    ],
)
def test_each_saturation_signal(over: dict[str, Any], needle: str) -> None:
    s = _summary([shard_result(**over)])
    assert s["saturated"] is True
    assert any(needle in r for r in s["saturation_reasons"]), s["saturation_reasons"]


def test_one_stall_is_not_saturation_late_sends_in_two_seconds_are() -> None:
    """Below 100 arrivals the lag's p99 is its maximum: a stall (a busy neighbour) that
    delays the arrivals due during it does not make the generator saturated; late sends
    in two different seconds of the run, three or more of them, do."""
    calm = [0.001] * 12
    two = _summary(
        [
            shard_result(
                lag_hdr=hdr([0.001] * 98 + [0.09] * 2),
                lag_max_by_second=[*calm[:5], 0.09, 0.09, *calm[7:]],
            )
        ]
    )
    assert two["saturated"] is False and two["schedule_lag_p99"] > 0.05  # only two late
    stall = _summary(
        [
            shard_result(
                lag_hdr=hdr([0.001] * 95 + [0.09] * 5),
                lag_max_by_second=[*calm[:5], 0.09, *calm[6:]],
            )
        ]
    )
    assert stall["saturated"] is False  # five late, all in one second: one stall
    twice = _summary(
        [
            shard_result(
                lag_hdr=hdr([0.001] * 95 + [0.09] * 5),
                lag_max_by_second=[*calm[:3], 0.09, 0.001, 0.09, *calm[6:]],
            )
        ]
    )
    assert any("schedule lag p99" in r for r in twice["saturation_reasons"])
    ticks = _summary([shard_result(loop_lag_hdr=hdr([0.001] * 38 + [0.2] * 2))])
    assert ticks["saturated"] is False  # two oversleeps: two stalls, not a busy loop


def test_shards_merge_counts_and_histograms() -> None:
    a = shard_result(n=50, latency_hdr=hdr([0.1] * 50), lag_max_by_second=[0.001] * 12)
    b = shard_result(
        n=50,
        shard=1,
        n_shards=2,
        latency_hdr=hdr([0.3] * 50),
        lag_max_by_second=[0.002] * 12,
        max_in_flight_seen=4,
    )
    s = _summary([a, b])
    assert s["sent_count"] == 100 and s["success_count"] == 100 and s["workers"] == 2
    assert s["p50"] == pytest.approx(0.1, rel=0.01) and s["p99"] == pytest.approx(0.3, rel=0.01)
    assert s["max_in_flight_seen"] == 7 and s["max_in_flight"] == 200
    assert s["saturated"] is False


def test_interrupted_run_judges_only_what_came_due() -> None:
    # stopped at 4 s: 40 of the 100 arrivals came due and were sent on time
    s = _summary(
        [shard_result(scheduled=40, dispatched=40, completed=40, last_sent_s=3.9,
                      dispatch_end_s=4.0, interrupted=True, outcomes=outcomes(40))],
        interrupted=True,
    )  # fmt: skip
    assert s["complete"] is False and s["interrupted"] is True
    assert s["saturated"] is False, s["saturation_reasons"]
    assert s["achieved_rate_per_s"] == pytest.approx(10, rel=0.05)


def test_generator_errors_stay_out_of_outcomes_and_success_rate() -> None:
    s = _summary(
        [shard_result(completed=90, dispatched=95, outcomes=outcomes(90),
                      errors={"cancelled": 5, "dropped": 5})]
    )  # fmt: skip
    assert s["success_rate"] == 1.0 and sum(s["outcomes"].values()) == 90
    assert s["late_or_dropped"] == 5 and s["errors"]["cancelled"] == 5


def test_closed_loop_has_no_rate_target() -> None:
    plan = LoadPlan(url="http://127.0.0.1:1/x", mode="closed", concurrency=4, duration_s=10)
    s = _summary([shard_result(mode="closed", lag_hdr=hdr([0.0] * 100))], plan)
    assert s["target_rate_per_s"] is None and s["schedule_lag_p99"] is None
    assert s["achieved_rate_per_s"] == pytest.approx(100 / 9.9)
    assert s["saturated"] is False
