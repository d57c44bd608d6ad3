"""Service-side metrics: scraped while a load runs, on the load's clock, never in the way.

Against the embedded reference target (its queue depth is known to build when more
requests are in flight than it has workers), a loopback stand-in of a Prometheus server's
query_range API, and targets that have no metrics at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from kubetest import service_plots
from kubetest.analysis.service_metrics import (
    COLUMNS,
    GENERATOR_CPU,
    counter_rate,
    panels,
    read_metrics,
)
from kubetest.metrics import MetricsScrape, parse_exposition
from kubetest.target import EmbeddedTarget, TargetConfig
from kubetest.workbook import a2_concurrent
from kubetest.workbook.context import TestContext

pytestmark = pytest.mark.timeout(120)

EXPOSITION = """\
# HELP svc_requests_total Requests.
# TYPE svc_requests_total counter
svc_requests_total{code="200",handler="webhook"} 7.0
svc_requests_total{code="200",handler="metrics"} 3.0
svc_requests_created{code="200",handler="webhook"} 1.7e9
# HELP svc_queue_depth Waiting.
# TYPE svc_queue_depth gauge
svc_queue_depth 4.0
# HELP svc_wait_seconds Wait.
# TYPE svc_wait_seconds histogram
svc_wait_seconds_bucket{le="0.1"} 1.0
svc_wait_seconds_bucket{le="+Inf"} 2.0
svc_wait_seconds_sum 0.3
svc_wait_seconds_count 2.0
"""


def test_exposition_is_parsed_without_buckets_or_created() -> None:
    rows = parse_exposition(EXPOSITION)
    assert ("svc_requests_total", 'code="200",handler="webhook"', 7.0, "counter") in rows
    assert ("svc_queue_depth", "", 4.0, "gauge") in rows
    names = {r[0] for r in rows}
    assert "svc_wait_seconds_count" in names and "svc_wait_seconds_sum" in names
    assert not any(n.endswith(("_bucket", "_created")) for n in names)
    assert len(parse_exposition(EXPOSITION, keep_buckets=True)) == len(rows) + 2
    with pytest.raises(ValueError):
        parse_exposition('{"status": "ok"}')
    openmetrics = "# TYPE q gauge\nq 2.0\n# TYPE c counter\nc_total 5.0\n# EOF\n"
    assert parse_exposition(openmetrics, openmetrics=True) == [
        ("q", "", 2.0, "gauge"),
        ("c_total", "", 5.0, "counter"),
    ]


def test_counter_rates_survive_resets_and_skip_housekeeping() -> None:
    rows = []
    for t, web, scrape in ((0, 0, 0), (1, 10, 1), (2, 30, 2), (3, 5, 3)):  # reset at t=3
        rows += [
            (t, 1000.0 + t, "svc_requests_total", 'handler="webhook"', web, "counter"),
            (t, 1000.0 + t, "svc_requests_total", 'handler="metrics"', scrape, "counter"),
        ]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    assert counter_rate(frame, "svc_requests_total", skip_housekeeping=True).tolist() == [
        10.0, 20.0, 5.0]  # fmt: skip
    assert counter_rate(frame, "svc_requests_total").tolist() == [11.0, 21.0, 6.0]


def _context(tmp_path: Path, **target: Any) -> TestContext:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "target": {"url": "embedded", "metrics_interval_s": 0.5, "integrity_wait_s": 1.0,
                   "embedded": {"workers": 1, "service_ms": 40, "service_dist": "const"},
                   **target},
        "a2_concurrent": {"concurrency": 6, "duration_min": 0.04},
    }))  # fmt: skip
    return TestContext.open("A2", str(params), str(tmp_path / "session"), target.get("url", ""))


def test_a_sweeps_segments_get_no_rate_across_the_pause_between_them() -> None:
    def samples(segment: int, start: float, values: list[float]) -> pd.DataFrame:
        return pd.DataFrame({
            "t_s": [start + i for i in range(len(values))],
            "epoch_s": [1000.0 + start + i for i in range(len(values))],
            "metric": "kubetest_target_alerts_processed_total", "labels": "",
            "value": values, "type": "counter", "segment": segment,
        })  # fmt: skip

    # 10/s in the first phase, 30/s in the second; 5,000 alerts "during" the pause between
    frame = pd.concat([samples(0, 0.0, [0, 10, 20]), samples(1, 60.0, [5020, 5050, 5080])])
    rate = panels(frame).request_rate["kubetest_target_alerts_processed_total"]
    values = rate.dropna()
    assert list(values.index) == [1.0, 2.0, 61.0, 62.0]
    assert list(values.values) == [10.0, 10.0, 30.0, 30.0]  # nothing from the pause
    assert rate.isna().sum() == 1  # one break, so the plotted line does not bridge it
    whole = panels(frame.drop(columns="segment")).request_rate
    assert whole["kubetest_target_alerts_processed_total"].loc[60.0] == pytest.approx(5000 / 58)


def test_the_target_is_scraped_while_the_load_runs(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    try:
        result = a2_concurrent.run(ctx, progress=False)
    finally:
        ctx.close()
    info = result.outcome.service_metrics
    assert info["source"] == "scrape" and info["note"] is None and info["scrapes"] >= 3
    assert info["path"] == "records/A2_metrics.csv" and info["service_metrics_found"]
    frame = read_metrics(ctx.session_dir / info["path"])
    assert list(frame.columns) == list(COLUMNS)
    queue = frame[frame["metric"] == "kubetest_target_queue_depth"]
    # six requests in flight on one worker: the service's queue holds the other five
    assert len(queue) >= 3 and queue["value"].max() >= 1
    # on the load's clock: sampling starts before the load and ends after it
    assert frame["t_s"].min() < 0 < frame["t_s"].max()
    start = result.outcome.load.summary["start_epoch"]
    assert (frame["t_s"] - (frame["epoch_s"] - start)).abs().max() < 1e-3
    series = info["series"]
    assert series["kubetest_target_queue_depth"]["kind"] == "queue depth"
    assert series["kubetest_target_alerts_processed_total"]["max"] > 0
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", GENERATOR_CPU} <= set(
        series
    )
    saved = json.loads(ctx.result_path.read_text())
    assert saved["service_metrics"]["path"] == info["path"]
    fig = service_plots.service_timeline_for(ctx.session_dir, saved, slo_p95_s=5.0)
    assert isinstance(fig, Figure) and len(fig.axes) >= 5  # 5 panels, twin axes beside


def test_a_target_without_metrics_gets_a_note(tmp_path: Path) -> None:
    with EmbeddedTarget(TargetConfig(workers=2, service_ms=2, service_dist="const")) as t:
        for path, words in (("/nothing/here", "answered 404"), ("/health", "not Prometheus text")):
            scrape = MetricsScrape(tmp_path / f"{path.strip('/').replace('/', '_')}.csv",
                                   url=t.base_url + path, interval_s=0.5).start()  # fmt: skip
            scrape.align({"start_epoch": 0.0})
            info = scrape.stop()
            assert words in info["note"] and not info["service_metrics_found"]
            frame = read_metrics(scrape.path)
            assert set(frame["metric"]) == {GENERATOR_CPU, "kubetest_generator_tick_lag_seconds"}
    empty = MetricsScrape(tmp_path / "none.csv").start().stop()  # nothing configured at all
    assert empty["source"] == "none" and empty["scrapes"] == 0
    fig = service_plots.service_timeline(
        read_metrics(tmp_path / "none.csv"),
        pd.DataFrame(columns=["intended_s", "done_s", "latency_s", "outcome"]),
        slo_p95_s=5.0,
        note="none",
    )
    assert isinstance(fig, Figure)


class _Prometheus:
    """query_range of a Prometheus server on 127.0.0.1: one counter, one gauge."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                q = parse_qs(parts.query)
                outer.queries.append(q)
                start, step = float(q["start"][0]), float(q["step"][0])
                times = [start + i * step for i in range(4)]
                result = [
                    {"metric": {"__name__": "gw_signals_received_total", "job": "gw"},
                     "values": [[t, str(10.0 * i)] for i, t in enumerate(times)]},
                    {"metric": {"__name__": "gw_queue_depth", "job": "gw"},
                     "values": [[t, "3"] for t in times]},
                ]  # fmt: skip
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "matrix", "result": result}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _Prometheus:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[_Prometheus]:
    with _Prometheus() as server:
        yield server


def test_prometheus_server_mode_reads_query_range(tmp_path: Path, prometheus: _Prometheus) -> None:
    scrape = MetricsScrape(tmp_path / "p.csv", interval_s=1.0, prometheus_url=prometheus.url,
                           prometheus_selector='job="gw"').start()  # fmt: skip
    scrape.align({"start_epoch": time.time() - 5.0})  # a five-second test just ended
    info = scrape.stop()
    assert info["source"] == "prometheus" and info["scrapes"] == 4 and info["note"] is None
    (query,) = prometheus.queries
    assert query["query"][0].startswith('{__name__=~"') and 'job="gw"' in query["query"][0]
    assert query["step"] == ["1"]  # the scrape interval (a 7 s window is far from 11,000)
    frame = read_metrics(scrape.path)
    p = panels(frame)
    assert p.request_rate["gw_signals_received_total"].tolist() == [10.0, 10.0, 10.0]
    assert p.queue["gw_queue_depth"].tolist() == [3.0] * 4
    assert info["series"]["gw_queue_depth"]["kind"] == "queue depth"
