"""``run_guide_load`` (the ``kubetest load`` body) and the progress displays."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_servers import WebServer, ok_handler

from kubetest.engine import read_records, run_guide_load
from kubetest.engine.progress import (
    LineDisplay,
    NullDisplay,
    RecentLatencies,
    Snapshot,
    make_display,
)
from kubetest.errors import KubetestError

GUIDE_FIELDS = {"sent_count", "success_count", "success_rate", "avg_response_time"}
EXTRA_FIELDS = {
    "p50",
    "p95",
    "p99",
    "max",
    "achieved_rate_per_min",
    "schedule_lag_p99",
    "saturated",
    "outcomes",
    "complete",
}


def test_guide_load_writes_the_guide_fields_and_records_beside(
    web_server: Callable[..., WebServer], tmp_path: Path
) -> None:
    server = web_server(ok_handler())
    path = run_guide_load(
        server.url, 600, 0.02, ["high_memory", "pod_crash"], tmp_path, progress=False
    )
    assert path.parent == tmp_path and path.name.startswith("alert_generation_")
    doc = json.loads(path.read_text())
    assert set(doc) >= GUIDE_FIELDS | EXTRA_FIELDS
    assert doc["sent_count"] == doc["success_count"] == 12  # 600/min for 1.2 s
    assert doc["success_rate"] == doc["summary"]["success_rate"] == 1.0  # one scale: 0..1
    assert 0 < doc["p50"] <= doc["p95"] <= doc["p99"] <= doc["max"] < 5
    assert doc["avg_response_time"] == pytest.approx(doc["summary"]["mean"])
    assert doc["achieved_rate_per_min"] == pytest.approx(600, rel=0.1)
    assert doc["saturated"] is False and doc["complete"] is True
    assert doc["outcomes"]["accepted"] == 12
    stamp = path.stem.removeprefix("alert_generation_")
    records = tmp_path / f"records_{stamp}.csv"
    assert doc["records"] == records.name
    df = read_records(records)
    assert len(df) == 12 and set(df.alert_type) == {"high_memory", "pod_crash"}
    assert df.fingerprint.is_unique  # unique alerts: the service must process each one
    hlog = records.with_suffix(".hlog")  # the HDR interval log, beside the records
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, records.name, hlog.name]
    )


def test_guide_load_twice_in_one_second_keeps_both(
    web_server: Callable[..., WebServer], tmp_path: Path
) -> None:
    server = web_server(ok_handler())
    a = run_guide_load(server.url, 600, 0.005, ["random"], tmp_path, progress=False)
    b = run_guide_load(server.url, 600, 0.005, ["random"], tmp_path, progress=False)
    assert a != b and a.exists() and b.exists()
    assert len(list(tmp_path.glob("records_*.csv"))) == 2


def test_guide_load_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(KubetestError, match="alert type"):
        run_guide_load("http://127.0.0.1:9/x", 60, 1, ["no_such_type"], tmp_path)
    with pytest.raises(KubetestError, match="> 0"):
        run_guide_load("http://127.0.0.1:9/x", 0, 1, ["high_cpu"], tmp_path)


def test_line_display_draws_one_line_and_null_draws_nothing() -> None:
    stream = io.StringIO()
    line = LineDisplay("load", stream)
    snap = Snapshot(
        elapsed_s=3.2,
        planned_s=10,
        sent=120,
        completed=118,
        accepted=117,
        not_sent=0,
        in_flight=2,
        p95_recent_s=0.0421,
    )
    line.update(snap)
    line.update(snap)
    line.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "sent 120" in text and "99.2%" in text and "42 ms" in text
    assert isinstance(make_display(False, "x", 1), NullDisplay)


def test_recent_latencies_window() -> None:
    r = RecentLatencies(size=16)
    assert r.p95(0.0) is None
    for i in range(100):
        r.add(float(i), 1.0 if i < 90 else 2.0)
    assert r.p95(99.0, window_s=5) == 2.0  # only the last 5 s count
    assert r.p95(99.0, window_s=15) == pytest.approx(2.0)
