"""The gateway's own counters against kubetest's counts.

Unit tests build scrape frames by hand (resets, children appearing mid-test, other
senders); the end-to-end tests run A2 against a loopback stand-in gateway whose
``/metrics`` counts what it answered (they agree) or loses count (they do not), and read
the verdict from the result file, the HTML report and FINAL_TEST_REPORT.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fake_gateway import FakeGateway

from kubetest.analysis.gateway_counters import counter_findings, cross_check, increase
from kubetest.analysis.service_metrics import GENERATOR_CPU
from kubetest.report.markdown import render_markdown
from kubetest.report.view import ReportView
from kubetest.summary import write_summary
from kubetest.workbook import a2_concurrent
from kubetest.workbook.context import TestContext

pytestmark = pytest.mark.timeout(120)

CREATED = "gateway_crds_created_total"
DEDUP = "gateway_signals_deduplicated_total"
RECEIVED = "gateway_signals_received_total"


def frame(scrapes: list[dict[tuple[str, str], float]], t0: float = 1000.0) -> pd.DataFrame:
    """One scrape per entry (``{(metric, labels): value}``), a second apart, plus the
    generator's own row at each tick and one tick where the service did not answer."""
    rows = []
    for i, scrape in enumerate([*scrapes[:1], {}, *scrapes[1:]]):
        epoch = t0 + i
        rows.append((epoch - t0, epoch, GENERATOR_CPU, "", float(i), "counter"))
        rows += [(epoch - t0, epoch, m, lab, v, "counter") for (m, lab), v in scrape.items()]
    return pd.DataFrame(rows, columns=["t_s", "epoch_s", "metric", "labels", "value", "type"])


def load(accepted: int = 0, duplicate: int = 0, rejected: int = 0, **errors: int) -> dict:
    return {
        "start_epoch": 1000.5,
        "duration_s": 1.0,
        "errors": errors,
        "outcomes": {"accepted": accepted, "duplicate": duplicate, "rejected": rejected},
    }


def test_increase_counts_new_children_and_resets() -> None:
    a, b = 'signal_name="A"', 'signal_name="B"'
    f = frame([{(DEDUP, a): 10}, {(DEDUP, a): 14, (DEDUP, b): 3}, {(DEDUP, a): 2, (DEDUP, b): 5}])
    inc = increase(f, DEDUP, sorted(set(f.loc[f["metric"] == DEDUP, "epoch_s"])))
    # a: +4, then a restart (14 -> 2) counts the 2; b appeared at 3 (it was 0), then +2
    assert inc.total == 4 + 2 + 5 and inc.reset
    assert inc.by_label == {"signal_name=A": 6.0, "signal_name=B": 5.0}


def test_counters_that_agree_match() -> None:
    f = frame([{(RECEIVED, ""): 100, (CREATED, 's="c"'): 40},
               {(RECEIVED, ""): 110, (CREATED, 's="c"'): 47, (DEDUP, 'n="x"'): 3}])  # fmt: skip
    out = cross_check(f, load(accepted=7, duplicate=3))
    assert out["status"] == "checked" and out["findings"] == []
    assert out["created"]["gateway"] == 7 and out["created"]["match"]
    assert out["deduplicated"] == out["deduplicated"] | {"gateway": 3, "kubetest": 3, "match": True}
    assert out["rejected"]["gateway"] == 0 and out["rejected"]["match"]  # no child: 0


def test_fewer_counted_by_the_gateway_is_a_finding_unless_explained() -> None:
    f = frame([{(CREATED, ""): 0}, {(CREATED, ""): 8}])
    out = cross_check(f, load(accepted=10))
    assert out["created"]["finding"] and not out["created"]["match"]
    assert "2 fewer" in out["findings"][0] and "replicas" in out["findings"][0]
    lagging = cross_check(f, load(accepted=10), source="prometheus")
    assert not lagging["created"]["finding"] and "Prometheus" in lagging["created"]["why"]
    restarted = frame([{(CREATED, ""): 50}, {(CREATED, ""): 8}])
    reset = cross_check(restarted, load(accepted=10))
    assert not reset["created"]["finding"] and "reset" in reset["created"]["why"]


def test_more_counted_by_the_gateway_is_explained_by_other_senders_only_so_far() -> None:
    base = {(RECEIVED, ""): 0, (CREATED, ""): 0}
    busy = frame([base, {(RECEIVED, ""): 15, (CREATED, ""): 15}])  # 5 from someone else
    out = cross_check(busy, load(accepted=10))
    assert out["other_senders"] == 5 and not out["created"]["finding"]
    assert "other senders" in out["created"]["why"]
    timeouts = cross_check(
        frame([base, {(RECEIVED, ""): 12, (CREATED, ""): 12}]), load(accepted=10, timeout=2)
    )
    assert not timeouts["created"]["finding"] and timeouts["unanswered"] == 2
    double = cross_check(frame([base, {(RECEIVED, ""): 10, (CREATED, ""): 20}]), load(accepted=10))
    assert double["created"]["finding"] and "10 more" in double["findings"][0]


def test_without_gateway_metrics_nothing_is_compared() -> None:
    none = cross_check(frame([]).iloc[0:0], load(accepted=3))
    assert none["status"] == "unavailable" and "not scraped" in none["reason"]
    other = cross_check(frame([{("http_requests_total", ""): 1}]), load(accepted=3))
    assert other["status"] == "unavailable" and ":9090/metrics" in other["reason"]


# --------------------------------------------------------------------------- end to end


def run_a2(tmp_path: Path, gw: FakeGateway, **alerts: Any) -> dict[str, Any]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "target": {"url": gw.url, "api": "kubernaut", "metrics_url": gw.metrics_url,
                   "health_url": gw.health_url, "metrics_interval_s": 0.5,
                   "integrity_wait_s": 0},
        "alerts": alerts,
        "a2_concurrent": {"concurrency": 4, "duration_min": 0.02},
    }))  # fmt: skip
    session = tmp_path / "session"
    ctx = TestContext.open("A2", str(params), str(session))
    (session / "params.yaml").write_text(params.read_text())
    a2_concurrent.run(ctx, progress=False)
    write_summary(session, complete=True, failures={})
    return json.loads(ctx.result_path.read_text())


def test_a_gateway_that_counts_what_it_answered_agrees(tmp_path: Path) -> None:
    with FakeGateway() as gw:
        result = run_a2(tmp_path, gw, unique=False)  # one RR per alert type, then duplicates
    counters = result["gateway_counters"]
    assert counters["status"] == "checked" and counters["findings"] == []
    assert counters["created"] == counters["created"] | {"gateway": 3, "kubetest": 3, "match": True}
    dup = counters["deduplicated"]
    assert dup["match"] and dup["gateway"] == dup["kubetest"] == gw.counts["duplicate"] > 0
    view = ReportView.load(tmp_path / "session")
    assert not [c for c in view.findings_lists()[1] if "Gateway counters" in c]
    assert "gateway_signals_deduplicated_total" in view.integrity().data


def test_a_gateway_that_loses_count_is_a_finding_in_both_reports(tmp_path: Path) -> None:
    with FakeGateway(miscount=3) as gw:
        result = run_a2(tmp_path, gw)
    created = result["gateway_counters"]["created"]
    assert created["kubetest"] == gw.counts["created"] > 3
    assert created["gateway"] == created["kubetest"] - 3
    assert created["finding"] and not created["match"]
    view = ReportView.load(tmp_path / "session")
    assert counter_findings(view.results) == [f"A2: {created['why']}"]
    concerns = [c for c in view.findings_lists()[1] if "Gateway counters" in c]
    assert len(concerns) == 1 and "3 fewer" in concerns[0]
    html = view.integrity().data
    assert "Gateway counters" in html and ">NO<" in html
    md = render_markdown(view)
    assert "## Gateway counters" in md and "| NO |" in md and "3 fewer" in md
