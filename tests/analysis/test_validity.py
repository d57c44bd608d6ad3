"""Run validity apart from the verdict: every reason on synthetic summaries, how it bounds
a verdict, and where it shows (summary.json, the BR table, the Markdown report)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from aiohttp import web
from engine_servers import _LoopThread, hdr, shard_result

from kubetest.analysis.latency import summarise
from kubetest.analysis.service_metrics import GENERATOR_CPU, START_TIME_METRIC, target_restarts
from kubetest.analysis.validity import Validity, combine, load_validity, validity_of, worst
from kubetest.analysis.verdicts import apply_validity, latency_requirement
from kubetest.engine import LoadPlan, summarise_shards
from kubetest.engine.result import ShardInfo
from kubetest.engine.schedule import constant
from kubetest.summary import build_summary
from kubetest.workbook.display import requirements_frame

PLAN = LoadPlan(url="http://127.0.0.1:1/x", schedule=constant(10, 10))


def _load(**over: Any) -> dict[str, Any]:
    """An engine summary of one shard (``shard_result`` overrides), as the engine writes it."""
    shards = over.pop("shards", None)
    interrupted = bool(over.get("interrupted"))
    s, _ = summarise_shards([shard_result(**over)], PLAN, start_epoch=0.0, workers=1,
                     interrupted=interrupted, records_path=Path("r.csv"),
                     shards=shards)  # fmt: skip
    return s


# -- the reasons ------------------------------------------------------------------------------


def test_a_healthy_run_is_valid() -> None:
    v = load_validity(_load(), {"restarts": []})
    assert v.status == "VALID" and v.reasons == []


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        (dict(lag_hdr=hdr([0.2] * 100), lag_max_by_second=[0.2] * 12), "schedule lag p99"),
        (dict(dispatched=80, last_sent_s=9.9), "of the scheduled"),  # achieved / offered
        (dict(errors={"dropped": 5}), "dropped"),  # at the in-flight cap
        (dict(loop_busy=0.97), "event loop busy"),  # the generator's CPU
    ],
)
def test_generator_health_makes_a_run_invalid(over: dict[str, Any], needle: str) -> None:
    v = load_validity(_load(**over))
    assert v.status == "INVALID"
    assert any(r.startswith("generator: ") and needle in r for r in v.reasons), v.reasons


def test_an_interrupted_run_is_inconclusive() -> None:
    v = load_validity(_load(interrupted=True, scheduled=40, dispatched=40, completed=40,
                            last_sent_s=3.9, dispatch_end_s=4.0))  # fmt: skip
    assert v.status == "INCONCLUSIVE"
    assert any("interrupted" in r for r in v.reasons), v.reasons


def test_a_lost_shard_is_inconclusive() -> None:
    a, b = shard_result(n=50), shard_result(n=50, shard=1, n_shards=2)
    s, _ = summarise_shards([a, b], PLAN, start_epoch=0.0, workers=2, interrupted=False,
                     records_path=Path("r"),
                     shards=[ShardInfo(0), ShardInfo(1, lost="worker w1 died")])  # fmt: skip
    v = load_validity(s)
    assert v.status == "INCONCLUSIVE"
    assert any("1 of 2 shards lost (worker w1 died)" in r for r in v.reasons), v.reasons


@pytest.mark.parametrize(
    ("offset", "uncertainty", "status", "needle"),
    [
        (0.020, 0.001, "VALID", None),  # corrected at the start, known to 1 ms
        (0.020, 0.010, "INCONCLUSIVE", "known only to ±10.0 ms"),
        (0.300, 0.120, "INVALID", "known only to ±120 ms"),
        (2.500, 0.001, "INCONCLUSIVE", "2.5 s off the client's"),
    ],
)
def test_clock_offsets_of_dask_workers(
    offset: float, uncertainty: float, status: str, needle: str | None
) -> None:
    load = _load(shards=[ShardInfo(0, "tcp://10.0.0.2:1", offset, uncertainty)])
    v = load_validity(load)
    assert v.status == status, v.reasons
    if needle:
        assert any(needle in r and "tcp://10.0.0.2:1" in r for r in v.reasons), v.reasons


def test_an_aborted_run_is_valid_its_abort_is_the_verdict() -> None:
    s = _load(aborted="aborted at t = 5 s: p95 3 s > 2 s in 3 windows of 1 s",
              aborted_at_s=5.0, scheduled=50, dispatched=50, completed=50,
              last_sent_s=4.9, dispatch_end_s=5.0)  # fmt: skip
    assert s["aborted"] and s["interrupted"] is False
    assert load_validity(s).status == "VALID"


# -- the target restarting mid-test -------------------------------------------------------------


def _metrics(rows: list[tuple[float, str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"t_s": t, "epoch_s": 1000.0 + t, "metric": m, "labels": lab, "value": v, "type": k}
            for t, m, lab, v, k in rows
        ]
    )


def test_a_counter_that_falls_between_scrapes_is_a_restart() -> None:
    frame = _metrics([
        (0, "alerts_total", 'code="200"', 100, "counter"), (0, "queue_depth", "", 9, "gauge"),
        (2, "alerts_total", 'code="200"', 180, "counter"), (2, "queue_depth", "", 1, "gauge"),
        (4, "alerts_total", 'code="200"', 12, "counter"), (4, "queue_depth", "", 0, "gauge"),
        (0, GENERATOR_CPU, "", 5.0, "counter"), (2, GENERATOR_CPU, "", 1.0, "counter"),
    ])  # fmt: skip
    restarts = target_restarts(frame)
    assert restarts == [{"t_s": 4.0, "why": "1 counter(s) fell (alerts_total)"}]
    v = load_validity(_load(), {"restarts": restarts})
    assert v.status == "INCONCLUSIVE"
    assert v.reasons[0].startswith(
        "target restarted mid-test at t ≈ 4 s: 1 counter(s) fell (alerts_total)"
    )


def test_a_new_process_start_time_is_a_restart() -> None:
    frame = _metrics([
        (0, START_TIME_METRIC, "", 1.7e9, "gauge"), (2, START_TIME_METRIC, "", 1.7e9, "gauge"),
        (4, START_TIME_METRIC, "", 1.7e9 + 300, "gauge"),
    ])  # fmt: skip
    assert target_restarts(frame) == [{"t_s": 4.0, "why": f"{START_TIME_METRIC} changed"}]


class _Restarting(_LoopThread):
    """A held-out service whose process "restarts" ``at_s`` after its first alert: its
    ``/metrics`` counter starts again from zero and its process start time changes."""

    def __init__(self, at_s: float) -> None:
        super().__init__()
        self.at_s, self.alerts, self.first, self.base = at_s, 0, 0.0, 0

    async def _post(self, request: web.Request) -> web.Response:
        await request.read()
        self.first = self.first or time.monotonic()
        self.alerts += 1
        return web.json_response({"status": "success"})

    async def _metrics(self, _request: web.Request) -> web.Response:
        restarted = bool(self.first) and time.monotonic() - self.first > self.at_s
        if restarted and not self.base:
            self.base = self.alerts  # what the old process had counted
        text = (f"# TYPE svc_alerts_total counter\nsvc_alerts_total {self.alerts - self.base}\n"
                f"# TYPE {START_TIME_METRIC} gauge\n"
                f"{START_TIME_METRIC} {1.7e9 + (300 if restarted else 0)}\n")  # fmt: skip
        return web.Response(text=text, content_type="text/plain")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("POST", "/{tail:.*}", self._post)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        await self.runner.cleanup()


def _run_a1(tmp_path: Path, url: str, doc: dict[str, Any]) -> tuple[Any, Any]:
    """A1 end to end against ``url`` with the params ``doc`` (target url added)."""
    from kubetest.workbook import a1_response_time
    from kubetest.workbook.context import TestContext

    doc = {**doc, "target": {"url": url, "integrity_wait_s": 0, **doc.get("target", {})}}
    params = tmp_path / "A1.yaml"
    params.write_text(yaml.safe_dump(doc))
    ctx = TestContext.open("A1", str(params), str(tmp_path / "s"), target_url=url)
    try:
        return a1_response_time.run(ctx, progress=False), ctx
    finally:
        ctx.close()


@pytest.mark.timeout(60)
def test_a_target_restarting_mid_a1_makes_it_inconclusive(tmp_path: Path) -> None:
    """End to end: scraped while A1 runs, the restart lowers a PASS to INCONCLUSIVE."""
    with _Restarting(at_s=3.0) as svc:
        result, _ = _run_a1(tmp_path, svc.url, {
            "target": {"metrics_interval_s": 0.5,
                       "metrics_url": f"http://127.0.0.1:{svc.port}/metrics"},
            "a1_response_time": {"rate_per_min": 600, "duration_min": 0.1},
        })  # fmt: skip
    restarts = result.outcome.service_metrics["restarts"]
    assert restarts and 2.5 <= restarts[0]["t_s"] <= 5.0, restarts
    req = result.requirement
    assert req.details["validity"]["status"] == "INCONCLUSIVE", req.details["validity"]
    assert req.details["validity"]["reasons"][0].startswith("target restarted mid-test at t ≈")
    assert req.status == "INCONCLUSIVE"  # its latency alone would PASS
    assert any("not claimed PASS" in r for r in req.details["reasons"])


@pytest.mark.timeout(60)
def test_arrivals_dropped_at_the_cap_make_a1_invalid_and_not_judged(tmp_path: Path) -> None:
    """End to end: 2 in flight at most against 0.1 s answers at 40/s drops half the
    arrivals; what was answered is fast enough to PASS, but the run is INVALID: not judged."""
    import asyncio

    from engine_servers import WebServer

    async def slowish(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.json_response({"status": "success"})

    with WebServer(slowish) as svc:
        result, ctx = _run_a1(tmp_path, svc.url, {
            "generator": {"max_in_flight": 2},
            "slo": {"p95_s": 5.0, "success_rate": 0.0},
            "a1_response_time": {"rate_per_min": 2400, "duration_min": 0.05},
        })  # fmt: skip
    v = result.requirement.details["validity"]
    assert v["status"] == "INVALID" and any("dropped" in r for r in v["reasons"]), v
    assert result.requirement.status == "INCONCLUSIVE"
    assert any("not judged PASS" in r for r in result.requirement.details["reasons"])
    saved = json.loads(ctx.result_path.read_text())
    assert saved["validity"]["status"] == "INVALID"


def test_steady_counters_and_falling_gauges_are_no_restart() -> None:
    frame = _metrics(
        [(t, "alerts_total", "", 10.0 * t, "counter") for t in range(5)]
        + [(t, "in_flight", "", 10.0 - t, "gauge") for t in range(5)]
    )
    assert target_restarts(frame) == []
    assert target_restarts(frame.iloc[0:0]) == []


# -- how validity bounds a verdict -------------------------------------------------------------


def _records(latency: float, n: int = 200) -> pd.DataFrame:
    return pd.DataFrame(
        {"latency_s": np.full(n, latency), "lag_s": 0.001, "outcome": "accepted", "error": ""}
    )


def _a1(latency: float, n: int = 200, **kw: Any) -> Any:
    return latency_requirement(
        "BR-PA-003", summarise(_records(latency, n)), p95_s=1.0, success_rate=0.95, **kw
    )


def test_an_abort_is_a_fail_with_its_reason_however_few_the_samples() -> None:
    why = "aborted at t = 40 s: p95 8 s > 2 s in 3 windows of 10 s"
    req = _a1(0.1, n=5, aborted=why, validity=Validity())
    assert req.status == "FAIL" and req.details["reasons"][0] == why
    assert req.details["validity"] == {"status": "VALID", "reasons": []}


def test_an_invalid_run_is_never_judged_pass_or_fail() -> None:
    bad = Validity()
    bad.add("INVALID", "generator: schedule lag p99 200 ms > 50 ms")
    passing, failing = _a1(0.1, validity=bad), _a1(3.0, validity=bad)
    aborted = _a1(0.1, n=5, aborted="aborted at t = 40 s: ...", validity=bad)
    for req in (passing, failing, aborted):
        assert req.status == "INCONCLUSIVE"
        assert any("INVALID (generator: schedule lag" in r for r in req.details["reasons"])
        assert req.details["validity"]["status"] == "INVALID"


def test_an_inconclusive_run_cannot_pass_but_its_fail_stands() -> None:
    restarted = Validity()
    restarted.add("INCONCLUSIVE", "target restarted mid-test at t ≈ 4 s: ...")
    assert _a1(0.1, validity=restarted).status == "INCONCLUSIVE"
    assert _a1(3.0, validity=restarted).status == "FAIL"
    assert _a1(0.1, validity=Validity()).status == "PASS"


def test_worst_and_combine() -> None:
    assert worst([]) == "VALID" and worst(["VALID", "INVALID", "INCONCLUSIVE"]) == "INVALID"
    a, b = Validity(), Validity()
    b.add("INCONCLUSIVE", "x")
    both = combine({"A1": a, "B1": b})
    assert both.status == "INCONCLUSIVE" and both.reasons == ["B1: x"]
    assert Validity.from_dict(both.as_dict()) == both
    assert Validity.from_dict(None).status == "VALID"


# -- where it shows -------------------------------------------------------------------------------


def _write_result(session: Path, test: str, data: dict[str, Any]) -> None:
    (session / "results").mkdir(parents=True, exist_ok=True)
    (session / "results" / f"{test}.json").write_text(json.dumps({"test": test, **data}))


def test_summary_json_and_the_br_table_carry_validity(tmp_path: Path) -> None:
    invalid = Validity()
    invalid.add("INVALID", "generator: 5 arrivals dropped")
    a1 = apply_validity(_a1(0.1), invalid)
    a2 = latency_requirement(
        "BR-PA-004", summarise(_records(0.1)), p95_s=1.0, success_rate=0.95, validity=Validity()
    )
    _write_result(tmp_path, "A1", {"requirements": [a1.as_dict()], "validity": invalid.as_dict()})
    _write_result(
        tmp_path, "A2", {"requirements": [a2.as_dict()], "validity": Validity().as_dict()}
    )
    s = build_summary(tmp_path, complete=True)
    assert s["validity"]["status"] == "INVALID"
    assert s["validity"]["reasons"] == ["A1: generator: 5 arrivals dropped"]
    assert s["validity"]["tests"]["A2"] == {"status": "VALID", "reasons": []}
    rows = {r["id"]: r for r in s["requirements"]}
    assert rows["BR-PA-003"]["status"] == "INCONCLUSIVE"
    assert validity_of(rows["BR-PA-003"]) == "INVALID" and validity_of(rows["BR-PA-004"]) == "VALID"
    assert validity_of(rows["BR-PA-001"]) == "—"  # not run: no load behind it
    table = requirements_frame(s["requirements"]).set_index("requirement")
    assert table.loc["BR-PA-003", "validity"] == "INVALID"
    assert table.loc["BR-PA-004", "validity"] == "VALID"
    from kubetest.report.markdown import render_markdown
    from kubetest.report.view import ReportView

    (tmp_path / "summary.json").write_text(json.dumps(s))
    view = ReportView.load(tmp_path)
    assert "Run validity INVALID: A1: generator: 5 arrivals dropped." in view.summary_sentences()
    markdown = render_markdown(view)
    header = next(line for line in markdown.splitlines() if line.startswith("| Requirement"))
    assert header.endswith("| Status | Validity |")
    assert any(
        line.startswith("| BR-PA-003 ") and line.endswith("| INVALID |")
        for line in markdown.splitlines()
    )


def test_kubetest_run_prints_validity_in_its_final_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from kubetest import cli, session

    invalid = Validity()
    invalid.add("INVALID", "generator: 5 arrivals dropped")
    _write_result(tmp_path, "A1", {"requirements": [apply_validity(_a1(0.1), invalid).as_dict()],
                                   "validity": invalid.as_dict()})  # fmt: skip
    summary = build_summary(tmp_path, complete=True)
    monkeypatch.setattr(session, "run_session", lambda *a, **k: session.SessionResult(
        tmp_path, summary, tmp_path / "report.html"))  # fmt: skip
    args = argparse.Namespace(
        params="p.yaml", only=None, session=None, outputs=None, overwrite=False, resume=False
    )
    assert cli._cmd_run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["requirement", "status", "validity"]
    a1 = next(line.split() for line in lines if line.strip().startswith("BR-PA-003"))
    assert a1[1:3] == ["INCONCLUSIVE", "INVALID"]
    a3 = next(line.split() for line in lines if line.strip().startswith("BR-PA-001"))
    assert a3[1:3] == ["NOT_RUN", "—"]
    assert "  validity: A1: generator: 5 arrivals dropped" in lines


def test_the_notebook_card_shows_the_run_validity() -> None:
    from kubetest.workbook.display import requirement_card

    card = requirement_card(_a1(0.1, validity=Validity())).data
    assert 'Run validity: <span class="kt-VALID">VALID</span>' in card
    assert "Run validity" not in requirement_card(_a1(0.1)).data  # not judged on a run
