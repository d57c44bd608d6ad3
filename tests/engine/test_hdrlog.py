"""HDR interval logs (``engine.hdrlog``): buffered recording counts exactly what
``record_value`` would, logs merged across shards and windows equal one histogram fed
every value, and records are sampled above ``records_max_per_s`` while the logs keep
every request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_servers import WebServer, ok_handler

from kubetest.engine import LoadPlan, read_records, run_load
from kubetest.engine.hdrlog import IntervalLog, Series, add_seconds, merge_logs, read_intervals
from kubetest.engine.judge import quantile_s
from kubetest.engine.records import RecordSampler, new_histogram
from kubetest.engine.result import hdr_us
from kubetest.engine.schedule import constant

PERCENTILES = (0.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


def _counts(hist: object) -> np.ndarray:
    return np.ctypeslib.as_array(hist.counts).copy()  # type: ignore[attr-defined]


def _fed_one_by_one(values: np.ndarray) -> object:
    hist = new_histogram()
    for v in values:
        hist.record_value(hdr_us(float(v)))
    return hist


def test_buffered_recording_counts_what_record_value_counts() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(-5, 2.5, 20_000), [0.0, -0.2, 1e-7, 7e-6, 4000.0]])
    one = _fed_one_by_one(values)
    batch = new_histogram()
    add_seconds(batch, values[:777].tolist())
    add_seconds(batch, values[777:].tolist())
    assert (_counts(one) == _counts(batch)).all()
    assert batch.get_total_count() == one.get_total_count() == len(values)
    assert (batch.get_min_value(), batch.get_max_value()) == (
        one.get_min_value(),
        one.get_max_value(),
    )


def test_logs_merged_across_shards_and_windows_equal_one_histogram_of_every_value(
    tmp_path: Path,
) -> None:
    """Two shards, each a log of 1 s windows over 5 s (the second starting 0.4 s late):
    the merge of both logs has the very counts, and so the percentiles, of one
    histogram fed every value; a time range picks its windows."""
    rng = np.random.default_rng(11)
    fed: list[float] = []
    early: list[float] = []
    paths = []
    for shard, lag in ((0, 0.0), (1, 0.4)):
        latency = Series()
        path = tmp_path / f"_part-{shard}.hlog"
        log = IntervalLog(path, {"latency": latency, "lag": Series()}, start_epoch=1e9)
        now = lag
        for step in range(50):
            values = rng.lognormal(-3 - shard, 1.0, 40)
            for v in values:
                latency.add(float(v))
            fed.extend(values)
            if now < 2.0:  # windows that start before 2 s
                early.extend(values)
            now = lag + (step + 1) * 0.1
            log.tick(now)
        log.close(now)
        paths.append(path)
        assert [t for t, _, _ in read_intervals(path)].count("latency") >= 5
    merged = merge_logs(paths)
    one = _fed_one_by_one(np.asarray(fed))
    assert (_counts(merged) == _counts(one)).all() and merged.get_total_count() == 4000
    for p in PERCENTILES:
        assert merged.get_value_at_percentile(p) == one.get_value_at_percentile(p), p
    window = merge_logs(paths, t_from=0.0, t_to=2.0)
    assert (_counts(window) == _counts(_fed_one_by_one(np.asarray(early)))).all()
    assert merge_logs(paths, "lag").get_total_count() == 0


def _run_ok(tmp_path: Path, client: str, rate: float, seconds: float, **plan: Any) -> Any:
    """A constant-rate run against a loopback server that answers 200 at once."""
    with WebServer(ok_handler()) as server:
        schedule = constant(rate, seconds)
        load = LoadPlan(url=server.url, schedule=schedule, client=client, **plan)
        return run_load(load, tmp_path, progress=False)


def test_a_run_logs_every_request_and_its_percentiles_are_the_summarys(
    tmp_path: Path, engine_client: str
) -> None:
    result = _run_ok(tmp_path, engine_client, 200, 2.5, hdr_interval_s=0.5)
    s = result.summary
    assert s["hdr_logs"] == [str(tmp_path / "records.hlog")] and s["records_sampled"] is None
    intervals = list(read_intervals(s["hdr_logs"][0]))
    assert {t for t, _, _ in intervals} == {"latency", "service", "lag"}
    assert sum(1 for t, _, _ in intervals if t == "latency") >= 5  # 0.5 s windows over 2.5 s
    latency = merge_logs(s["hdr_logs"])
    assert latency.get_total_count() == s["success_count"] == 500
    for pct, key in ((50, "p50"), (95, "p95"), (99, "p99")):
        assert quantile_s(latency, pct) == s[key]
    assert merge_logs(s["hdr_logs"], "lag").get_total_count() == s["sent_count"]
    df = read_records(result.records_path)  # every record (CSV: times to the µs)
    union = _fed_one_by_one(df["latency_s"].to_numpy())
    assert union.get_total_count() == latency.get_total_count()
    for pct in (50, 99):
        assert union.get_value_at_percentile(pct) == pytest.approx(
            latency.get_value_at_percentile(pct), rel=2e-3
        )


def test_above_max_per_s_records_are_sampled_and_the_log_keeps_every_request(
    tmp_path: Path, engine_client: str
) -> None:
    result = _run_ok(tmp_path, engine_client, 400, 2.0, records_max_per_s=100)
    s = result.summary
    df = read_records(result.records_path)
    assert s["sent_count"] == s["success_count"] == 800
    assert s["records_sampled"] == {"max_per_s": 100, "kept": 200, "of": 800, "every": 4}
    assert len(df) == 200 and (df["seq"] % 4 == 0).all()  # by arrival number, not answer
    assert any(n.startswith("records sampled: 200 of 800") for n in s["notes"])
    assert merge_logs(s["hdr_logs"]).get_total_count() == 800  # every request


@pytest.mark.parametrize("n_shards", [1, 3])
def test_a_closed_loop_sampler_follows_the_measured_rate(n_shards: int) -> None:
    sampler = RecordSampler(1000.0, n_shards, rate=None)
    kept = sum(sampler.keep(seq) for seq in range(100))  # below the budget: all of them
    sampler.adapt(1.0)  # 100 records in 1 s on this shard: 100 * n_shards a second in all
    assert kept == 100 and sampler.every == 1
    for seq in range(100, 100 + 4000):
        sampler.keep(seq * n_shards)
    sampler.adapt(2.0)  # 4,000 records a second on this shard
    assert sampler.every == 4 * n_shards and sampler.max_every == 4 * n_shards
    kept = [seq for seq in range(0, 1200 * n_shards, n_shards) if sampler.keep(seq)]
    assert len(kept) == 1200 // (4 * n_shards) + (1200 % (4 * n_shards) > 0)
    assert RecordSampler(None, 1, rate=1e6).every == 1  # no budget: every record
