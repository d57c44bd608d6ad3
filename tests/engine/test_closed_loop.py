"""Closed loop: N workers keep exactly N requests in flight (A2/B2), alone or sharded."""

from __future__ import annotations

from pathlib import Path

from engine_servers import WebServer, ok_handler

from kubetest.engine import LoadPlan, read_records, run_load


def test_closed_loop_keeps_n_in_flight(tmp_path: Path, engine_client: str) -> None:
    with WebServer(ok_handler(delay_s=0.1)) as server:
        plan = LoadPlan(
            url=server.url, mode="closed", concurrency=8, duration_s=1.0, client=engine_client
        )
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert server.max_in_flight == 8
    assert s["max_in_flight_seen"] == 8
    # 8 workers x ~1 s / 0.1 s; generous lower bound for a loaded machine
    assert s["success_count"] >= 40
    assert s["sent_count"] == s["completed_count"] == s["success_count"]
    assert s["target_rate_per_s"] is None and s["schedule_lag_p99"] is None
    assert s["concurrency"] == 8 and s["mode"] == "closed"
    df = read_records(result.records_path)
    assert len(df) == s["sent_count"]
    assert (df.intended_s == df.sent_s).all()  # closed loop: due when the worker is free
    assert set(df.worker) == set(range(8))
    assert df.seq.is_unique


def test_closed_loop_sharded_over_two_processes(tmp_path: Path) -> None:
    with WebServer(ok_handler(delay_s=0.1)) as server:
        plan = LoadPlan(url=server.url, mode="closed", concurrency=5, duration_s=1.0)
        result = run_load(plan, tmp_path, workers=2, progress=False)
    s = result.summary
    assert server.max_in_flight == 5
    assert s["workers"] == 2 and s["max_in_flight"] == 5
    df = read_records(result.records_path)
    assert len(df) == s["sent_count"] >= 20
    assert df.seq.is_unique and set(df.worker) == set(range(5))
    assert not list(tmp_path.glob("*.part*.csv"))  # shard files joined into one
