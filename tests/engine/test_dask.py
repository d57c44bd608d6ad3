"""Load on Dask distributed (issue 10): shards on a local cluster or an existing one.

Loopback only: the target, the scheduler and the workers all listen on 127.0.0.1. The
local cluster is created once per test process and reused, as in a notebook.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
from engine_servers import WebServer, hdr, histogram_of, interrupt_cli, ok_handler, shard_result

from kubetest.engine import LoadPlan, ShardResult, read_records, run_load, summarise_shards
from kubetest.engine import cluster as dask_cluster
from kubetest.engine.hdrlog import merge_logs
from kubetest.engine.result import ShardInfo
from kubetest.engine.schedule import constant, poisson


def test_two_local_workers_run_the_plan_exactly_once(tmp_path: Path) -> None:
    sched = poisson(150, 2.0, seed=7)
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(url=server.url, schedule=sched, target_rate_per_s=150)
        result = run_load(plan, tmp_path, workers=2, progress=False)
    s = result.summary
    n = len(sched)
    assert s["complete"] is True and s["workers"] == 2 and s["shards"] == 2
    assert s["sent_count"] == s["success_count"] == n == server.requests
    assert s["cluster"].startswith("tcp://127.0.0.1:")

    # records: one Parquet part per shard, one dataset for pandas, pyarrow and read_records
    folder = Path(result.records_path)
    assert folder == tmp_path / "records" and folder.is_dir()
    # the HDR interval logs start with "_": pyarrow and pandas skip them
    assert sorted(p.name for p in folder.iterdir()) == PARTS_AND_LOGS
    assert len(pd.read_parquet(folder)) == pads.dataset(folder).count_rows() == n
    df = read_records(folder)
    assert {"worker", "shard"} <= set(df.columns)
    # the union of the shards is the plan: every arrival once, at its single-process time
    df = df.sort_values("seq").reset_index(drop=True)
    assert df.seq.tolist() == list(range(n))
    np.testing.assert_allclose(df.intended_s.to_numpy(), sched, atol=1e-6)
    assert (df.shard == df.seq % 2).all() and (df.worker == df.shard).all()
    assert (df.lag_s >= 0).all()

    # merged HDR histograms: the count is the accepted count, percentiles those of the union
    accepted = df[df.outcome == "accepted"]
    assert result.histogram.get_total_count() == len(accepted) == s["success_count"]
    union = histogram_of(accepted.latency_s.to_numpy())
    for pct, key in ((50, "p50"), (95, "p95"), (99, "p99")):
        assert s[key] == pytest.approx(union.get_value_at_percentile(pct) / 1e6, rel=2e-3)

    # per worker: its share, its rate, its lag, its clock (measured through the scheduler)
    rows = s["per_worker"]
    assert [r["worker"] for r in rows] == [0, 1] and {r["status"] for r in rows} == {"ok"}
    assert len({r["address"] for r in rows}) == 2
    for r in rows:
        assert r["sent_count"] == len(df[df.shard == r["worker"]])
        assert r["achieved_rate_per_s"] > 0 and r["schedule_lag_p99"] is not None
        assert abs(r["clock_offset_s"]) < 0.05 and r["clock_uncertainty_s"] >= 0
        assert r["records"] == f"part-{r['worker']:04d}.parquet"
    saved = json.loads((tmp_path / "records.summary.json").read_text())
    assert saved["per_worker"] == rows and saved["records"] == str(folder)


def test_an_existing_cluster_by_scheduler_address(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        WebServer(ok_handler()) as server,
    ):
        plan = LoadPlan(url=server.url, schedule=constant(100, 1))
        # workers=1 with a scheduler: one shard per worker of the cluster; parts shipped back
        shipped = run_load(plan, tmp_path, name="shipped", scheduler=cluster.scheduler_address)
        # records_url: workers write the parts there (a shared path), copied beside the summary
        shared = tmp_path / "shared"
        written = run_load(
            plan,
            tmp_path,
            name="shared",
            scheduler=cluster.scheduler_address,
            records_url=f"file://{shared}",
            progress=False,
        )
        addresses = set(cluster.scheduler_info["workers"])
    for result in (shipped, written):
        s = result.summary
        assert s["cluster"] == cluster.scheduler_address and s["workers"] == 2
        assert {r["address"] for r in s["per_worker"]} == addresses
        df = read_records(result.records_path)
        assert sorted(df.seq) == list(range(100)) and s["complete"] is True
        # the HDR interval logs come back in the shards' results, beside the parts
        assert sorted(p.name for p in Path(result.records_path).iterdir()) == PARTS_AND_LOGS
        assert [Path(p).name for p in s["hdr_logs"]] == PARTS_AND_LOGS[:2]
        assert merge_logs(s["hdr_logs"]).get_total_count() == s["success_count"] == 100
    assert sorted(p.name for p in shared.iterdir()) == PARTS_AND_LOGS


PARTS_AND_LOGS = ["_part-0000.hlog", "_part-0001.hlog", "part-0000.parquet", "part-0001.parquet"]


def test_a_killed_worker_is_reported_lost_and_the_other_shard_kept(tmp_path: Path) -> None:
    box: dict[str, Any] = {}
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(url=server.url, schedule=constant(50, 6), timeout_s=5)
        runner = threading.Thread(
            target=lambda: box.update(r=run_load(plan, tmp_path, workers=2, progress=False))
        )
        runner.start()
        server.wait_for_requests(60)  # both shards sending
        client = dask_cluster.local_client()
        assert client is not None and server.requests >= 60
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        runner.join(40)
    assert not runner.is_alive()
    s = box["r"].summary
    assert s["complete"] is False and s["interrupted"] is False
    assert s["workers_lost"] == 1 and s["lost_shards"][0]["address"] == victim
    lost = s["lost_shards"][0]["worker"]
    kept = 1 - lost
    status = {r["worker"]: r["status"] for r in s["per_worker"]}
    assert status == {lost: "lost", kept: "ok"}
    assert any("lost" in note for note in s["notes"])
    assert not any(r.startswith(f"worker {lost}:") for r in s["saturation_reasons"])

    df = read_records(box["r"].records_path)
    survivor = df[df.shard == kept]
    assert sorted(survivor.seq) == list(range(kept, 300, 2))  # its whole share, once each
    flushed = df[df.shard == lost]
    assert 0 < len(flushed) < 150 and flushed.seq.is_unique  # what it had flushed
    assert (flushed.seq % 2 == lost).all()
    # the summary counts exactly what the records hold, the lost shard's flushed rows too
    assert s["sent_count"] == len(df) and s["success_count"] == (df.outcome == "accepted").sum()


def test_sigint_stops_a_two_worker_cli_load_within_seconds(tmp_path: Path) -> None:
    with WebServer(ok_handler(delay_s=5.0)) as server:
        cmd = [sys.executable, "-m", "kubetest", "load", "--url", server.url,
               "--rate", "1200", "--duration", "1", "--workers", "2", "--out", str(tmp_path),
               "--quiet"]  # fmt: skip
        out, took = interrupt_cli(cmd, server, signal.SIGINT, after_requests=20, timeout_s=30)
    assert took < 10, took  # expected ~2.5 s: grace 1.5 s, Parquet, summary, cluster close
    doc = json.loads(Path(out.decode().strip().splitlines()[-1]).read_text())
    assert doc["complete"] is False and doc["interrupted"] is True and doc["workers"] == 2
    assert doc["errors"].get("cancelled", 0) >= 10  # 5 s answers were in flight
    folder = tmp_path / doc["records"]
    assert sorted(p.name for p in folder.iterdir()) == PARTS_AND_LOGS
    assert len(read_records(folder)) == doc["sent_count"] + doc["summary"]["late_or_dropped"]


# -- the summary's per-worker judgement, on synthetic shard results (no cluster) -----------


def _shard(shard: int, n: int = 50, **over: Any) -> ShardResult:
    """One of two shards (``shard_result`` with two)."""
    over = {"n_shards": 2, "records_path": "", "last_sent_s": 9.8, **over}
    return shard_result(n, shard=shard, **over)


def _summary(results: list[ShardResult], shards: list[ShardInfo]) -> dict[str, Any]:
    plan = LoadPlan(url="http://127.0.0.1:1/x", schedule=constant(10, 10))
    s, _ = summarise_shards(results, plan, start_epoch=0.0, workers=2, interrupted=False,
                     records_path=Path("r"), shards=shards)  # fmt: skip
    return s


def test_one_saturated_shard_saturates_the_run() -> None:
    slow = _shard(1, lag_hdr=hdr([0.2] * 50), lag_max_by_second=[0.2] * 12)
    s = _summary([_shard(0), slow], [ShardInfo(0, "a"), ShardInfo(1, "b")])
    assert s["saturated"] is True
    assert [r["saturated"] for r in s["per_worker"]] == [False, True]
    assert any(r.startswith("worker 1: schedule lag p99") for r in s["saturation_reasons"])


def test_a_lost_shard_is_incomplete_not_saturation() -> None:
    partial = _shard(1, n=20, last_sent_s=3.9, dispatch_end_s=3.9, end_s=4.0, interrupted=True)
    s = _summary([_shard(0), partial], [ShardInfo(0, "a"), ShardInfo(1, "b", lost="worker b died")])
    assert s["complete"] is False and s["workers_lost"] == 1
    assert s["lost_shards"] == [
        {"worker": 1, "address": "b", "reason": "worker b died", "records": None}
    ]
    assert s["saturated"] is False, s["saturation_reasons"]  # the finished shard kept up
    assert s["sent_count"] == 70 and s["achieved_rate_per_s"] < 9  # 70 of 100, said loudly
    assert s["per_worker"][1]["status"] == "lost" and any("lost" in n for n in s["notes"])


def test_clock_offsets_above_5_ms_are_warned() -> None:
    s = _summary(
        [_shard(0), _shard(1)],
        [ShardInfo(0, "a", 0.0002, 0.0005), ShardInfo(1, "b", 0.012, 0.0007)],
    )
    assert [r["clock_offset_s"] for r in s["per_worker"]] == [0.0002, 0.012]
    warned = [n for n in s["notes"] if "clock" in n]
    assert len(warned) == 1 and "worker 1 (b)" in warned[0] and "+12.0 ms" in warned[0]


def test_a_shard_that_aborts_stops_the_other_shards(tmp_path: Path) -> None:
    """Only shard 0's alerts (HighCPUUsage: even seq) turn slow; shard 1's stay fast, so
    only shard 0 can breach the rule. Its abort reaches shard 1 through the run's stop
    Event: both stop long before the 20 s schedule ends, and the run is aborted, not
    interrupted."""
    import asyncio
    import time

    from aiohttp import web

    from kubetest.engine.abort import AbortRule
    from kubetest.payloads import PayloadFactory

    started: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if not started:
            started.append(time.monotonic())
        if b"HighCPUUsage" in body and time.monotonic() - started[0] > 1.0:
            await asyncio.sleep(3.0)
        return web.Response(body=b"ok")

    rule = AbortRule(window_s=0.5, consecutive=3, p95_s=0.3, success_below=0.5)
    with WebServer(handler) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 20), timeout_s=10, abort=rule,
                        payload=PayloadFactory(["high_cpu", "pod_crash"]))  # fmt: skip
        result = run_load(plan, tmp_path, workers=2, progress=False)
    s = result.summary
    assert s["aborted"] is not None and "p95" in s["aborted"], s["aborted"]
    assert s["interrupted"] is False and result.interrupted is False
    rows = {r["worker"]: r for r in s["per_worker"]}
    assert rows[1]["sent_count"] < 150  # stopped by shard 0's abort, not its own schedule
    assert s["sent_count"] < 300 and len(read_records(result.records_path)) == s["sent_count"]
