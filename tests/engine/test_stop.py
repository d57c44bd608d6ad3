"""Records stream to disk while running, and a stop (token, SIGINT, SIGTERM) is clean:
dispatch stops, in-flight requests get a short grace, the rest are recorded as cancelled."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from engine_servers import WebServer, interrupt_cli, ok_handler

from kubetest.engine import LoadPlan, StopToken, read_records, run_load, run_shard
from kubetest.engine.schedule import constant


def _wait_for_rows(path: Path, rows: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") > rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {rows} rows")


def test_records_are_readable_while_the_run_goes(tmp_path: Path) -> None:
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(url=server.url, schedule=constant(50, 2))
        box: dict[str, object] = {}
        runner = threading.Thread(target=lambda: box.update(r=run_load(plan, tmp_path)))
        runner.start()
        _wait_for_rows(tmp_path / "records.csv", 5)
        partial = read_records(tmp_path / "records.csv")
        runner.join(30)
    assert 0 < len(partial) < 100
    assert len(read_records(tmp_path / "records.csv")) == 100


def test_stop_token_cancels_in_flight_after_grace(tmp_path: Path) -> None:
    with WebServer(ok_handler(delay_s=5.0)) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 10), timeout_s=10)
        token = StopToken()
        threading.Timer(0.8, token.set).start()
        started = time.monotonic()
        result = run_shard(plan, 0, 1, time.time() + 0.2, tmp_path / "r.csv", stop=token)
        took = time.monotonic() - started
    assert result.interrupted is True
    assert took < 8  # grace 1.5 s, not the 5 s answers nor the 10 s schedule
    assert result.errors.get("cancelled", 0) >= 5
    assert result.scheduled < 200
    df = read_records(tmp_path / "r.csv")
    assert len(df) == result.dispatched
    assert set(df.error) == {"cancelled"} and (df.outcome == "failed").all()


def test_sigint_in_process_stops_cleanly_and_restores_handlers(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with WebServer(ok_handler(delay_s=0.2)) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 20))
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        result = run_load(plan, tmp_path, progress=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    s = result.summary
    assert result.interrupted and s["interrupted"] is True and s["complete"] is False
    assert 5 <= s["sent_count"] < 400
    saved = json.loads((tmp_path / "records.summary.json").read_text())
    assert saved["complete"] is False
    assert len(read_records(result.records_path)) == s["sent_count"]


@pytest.mark.parametrize(
    ("sig", "workers"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)]
)
def test_signal_stops_a_cli_run_within_seconds(sig: int, workers: int, tmp_path: Path) -> None:
    with WebServer(ok_handler(delay_s=5.0)) as server:
        cmd = [sys.executable, "-m", "kubetest.engine", "--url", server.url, "--rate", "20",
               "--duration", "60", "--timeout", "30", "--out", str(tmp_path), "--no-progress",
               "--workers", str(workers)]  # fmt: skip
        out, took = interrupt_cli(cmd, server, sig, after_requests=10, timeout_s=20)
    assert took < 10, took  # expected ~2 s: grace 1.5 s + flush
    summary = json.loads(out)
    assert summary["complete"] is False and summary["interrupted"] is True
    assert summary["errors"].get("cancelled", 0) >= 5  # 5 s answers were in flight
    records = read_records(summary["records"])  # records.csv, or records/ (Dask parts)
    assert len(records) == summary["sent_count"]
    assert json.loads((tmp_path / "records.summary.json").read_text())["complete"] is False
