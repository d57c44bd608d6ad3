"""``slo.abort`` through the load tests: A1 against a server that turns slow, B1 ending an
overloaded phase early, A2 and B2 past capacity, and the params that configure (or turn
off) the rule."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from engine_servers import WebServer
from sweep_support import embedded_context, run_sweep

from kubetest.errors import ParamsError
from kubetest.params import parse_params
from kubetest.workbook import a1_response_time, a2_concurrent, b1_capacity, b2_concurrency
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import abort_rule


def _open(tmp_path: Path, test: str, doc: dict, target_url: str = "") -> TestContext:
    path = tmp_path / f"{test}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return TestContext.open(test, str(path), str(tmp_path / "session"), target_url=target_url)


# -- params -----------------------------------------------------------------------------------


def test_the_abort_rule_defaults_to_twice_the_slo_and_null_turns_it_off() -> None:
    slo = parse_params({"slo": {"p95_s": 3}}).slo
    assert slo.abort is not None
    assert (slo.abort.window_s, slo.abort.consecutive) == (10, 3)
    assert (slo.abort.p95_s, slo.abort.success_below) == (6, 0.5)
    assert parse_params({"slo": {"abort": {"p95_s": 4}}}).slo.abort.p95_s == 4  # type: ignore[union-attr]
    assert parse_params({"slo": {"abort": None}}).slo.abort is None
    with pytest.raises(ParamsError, match=r"slo\.abort\.window: unknown key"):
        parse_params({"slo": {"abort": {"window": 5}}})
    with pytest.raises(ParamsError, match=r"slo\.abort\.consecutive"):
        parse_params({"slo": {"abort": {"consecutive": 0}}})


def test_every_load_plan_carries_the_rule(tmp_path: Path) -> None:
    on = _open(tmp_path, "A1", {"target": {"url": "http://127.0.0.1:9/webhook/prometheus"},
                                "slo": {"p95_s": 2}, "a1_response_time": {}})  # fmt: skip
    rule = abort_rule(on)
    assert rule is not None and rule.p95_s == 4 and rule.window_s == 10
    off = _open(tmp_path, "A1", {"target": {"url": "http://127.0.0.1:9/webhook/prometheus"},
                                 "slo": {"abort": None}, "a1_response_time": {}})  # fmt: skip
    assert abort_rule(off) is None


# -- A1: the case ---------------------------------------------------------------------


def _turns_slow(after_s: float, delay_s: float) -> WebServer:
    """Answers at once until ``after_s`` after its first request, then after ``delay_s``."""
    box: list[WebServer] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        first = box[0].first_request_at
        if first is not None and time.monotonic() - first > after_s:
            await asyncio.sleep(delay_s)
        return web.Response(body=b"ok")

    box.append(WebServer(handler))
    return box[0]


@pytest.mark.timeout(150)
def test_a1_against_a_server_that_turns_slow_is_stopped_and_fails(tmp_path: Path) -> None:
    """A 2-minute A1 at 1 alert/s; 15 s in, every answer takes 8 s. With the default
    windows (10 s × 3) and p95 limit (2 × slo.p95_s = 2 s) the test stops within 45 s of
    the change: fewer than 60 of its 120 arrivals are ever sent."""
    with _turns_slow(15.0, 8.0) as server:
        ctx = _open(tmp_path, "A1", {
            "target": {"url": server.url, "integrity_wait_s": 0},
            "slo": {"p95_s": 1.0, "success_rate": 0.95},
            "a1_response_time": {"rate_per_min": 60, "duration_min": 2},
        }, target_url=server.url)  # fmt: skip
        try:
            result = a1_response_time.run(ctx, progress=False)
        finally:
            ctx.close()
    s = result.outcome.load.summary
    assert s["aborted"] is not None, s
    assert 15 <= s["sent_count"] <= 60  # past the change, and stopped within 45 s of it
    assert 15 < s["aborted_at_s"] <= 15 + 45  # on the load's clock (the change: t ≈ 15 s)
    assert s["sent_count"] == len(result.records)  # records up to the stop are kept
    assert (result.records["outcome"] == "accepted").sum() >= 14  # the fast part is there
    req = result.requirement
    assert req.id == "BR-PA-003" and req.status == "FAIL"
    reason = req.details["reasons"][0]
    assert reason.startswith("aborted at t = ") and reason.endswith("in 3 windows of 10 s")
    assert "> 2 s" in reason
    assert req.details["validity"]["status"] == "VALID"
    saved = json.loads(ctx.result_path.read_text())
    assert saved["aborted"] == s["aborted"] and saved["validity"]["status"] == "VALID"
    assert saved["requirements"][0]["status"] == "FAIL"


# -- A2: the closed loop aborts the same way ----------------------------------------------------


@pytest.mark.timeout(60)
def test_a2_past_capacity_is_stopped_and_fails(tmp_path: Path) -> None:
    """60 in flight on D/D/2 with D = 20 ms answer in 0.6 s, past the abort's 0.2 s: a 12 s
    A2 stops after a few windows of 0.5 s and BR-PA-004 is FAIL with the abort's reason."""
    ctx = _open(tmp_path, "A2", {
        "target": {"url": "embedded", "integrity_wait_s": 0,
                   "embedded": {"workers": 2, "service_ms": 20, "service_dist": "const"}},
        "slo": {"p95_s": 0.1, "success_rate": 0.95,
                "abort": {"window_s": 0.5, "consecutive": 3}},
        "a2_concurrent": {"concurrency": 60, "duration_min": 0.2},
    })  # fmt: skip
    try:
        result = a2_concurrent.run(ctx, progress=False)
    finally:
        ctx.close()
    s = result.outcome.load.summary
    assert s["aborted"] is not None and s["aborted_at_s"] < 6, s
    assert s["sent_count"] == len(result.records)  # records up to the stop are kept
    req = result.requirement
    assert req.id == "BR-PA-004" and req.status == "FAIL"
    assert req.details["reasons"][0] == s["aborted"]
    assert "> 0.2 s in 3 windows of 0.5 s" in s["aborted"]
    assert json.loads(ctx.result_path.read_text())["aborted"] == s["aborted"]


# -- B1: an overloaded phase ends early --------------------------------------------------------


def _sweep_on_d_d_2(tmp_path: Path, module: Any, section: str, sweep: dict[str, Any]) -> Any:
    """B1 or B2 (``module``) against the embedded D/D/2 target, D = 20 ms, with a
    0.1 s SLO and an abort after 3 windows of 0.5 s."""
    test = "B1" if section == "b1_capacity" else "B2"
    embedded = {"workers": 2, "service_ms": 20, "service_dist": "const"}
    slo = {"p95_s": 0.1, "success_rate": 0.95, "abort": {"window_s": 0.5, "consecutive": 3}}
    sweep = {"recovery_s": 5, "stop_below_success": 0.5, **sweep}
    return run_sweep(embedded_context(tmp_path, test, embedded, slo, **{section: sweep}), module)


@pytest.mark.timeout(120)
def test_b1_ends_an_overloaded_phase_early(tmp_path: Path) -> None:
    """D/D/2 with D = 20 ms serves 6,000/min. A 20 s phase at 12,000/min queues 100 more
    alerts each second: with windows of 0.5 s it is aborted long before its 4,000 arrivals
    are due, judged unsustainable with the abort's reason; the phase below capacity is not."""
    res = _sweep_on_d_d_2(tmp_path, b1_capacity, "b1_capacity", {
        "phases": [[3000, 4 / 60], [12000, 20 / 60]], "refine": False})  # fmt: skip
    calm, overloaded = res.phases
    assert calm.stats.aborted is None and calm.verdict.status == "sustainable"
    assert overloaded.stats.aborted is not None
    assert overloaded.verdict.status == "unsustainable"
    assert overloaded.verdict.reasons[0] == overloaded.stats.aborted
    assert "in 3 windows of 0.5 s" in overloaded.stats.aborted
    assert overloaded.outcome.load.summary["sent_count"] < 4000 / 2  # ended early
    assert overloaded.stats.duration_s == 20  # as planned; ran_s says how long it ran
    assert overloaded.stats.ran_s is not None and overloaded.stats.ran_s < 10
    saved = json.loads((tmp_path / "session" / "results" / "B1.json").read_text())
    assert saved["phases"][1]["aborted"] == overloaded.stats.aborted
    assert saved["validity"]["status"] == "VALID"
    assert res.capacity["first_unsustainable_rate_per_min"] == 12000


# -- B2: a level past capacity ends early --------------------------------------------------------


@pytest.mark.timeout(120)
def test_b2_ends_an_overloaded_level_early(tmp_path: Path) -> None:
    """Closed loop on D/D/2 with D = 20 ms: N in flight answer in N × 10 ms. N = 2 holds a
    0.1 s SLO; N = 60 answers in 0.6 s, past the abort's 0.2 s (2 × slo.p95_s), so with
    windows of 0.5 s its 6 s level ends after a few of them, unsustainable with the reason."""
    res = _sweep_on_d_d_2(tmp_path, b2_concurrency, "b2_concurrency", {
        "levels": [2, 60], "duration_s": 6})  # fmt: skip
    calm, overloaded = res.phases
    assert calm.stats.aborted is None and calm.verdict.status == "sustainable"
    assert overloaded.stats.aborted is not None, overloaded.verdict.reasons
    assert "> 0.2 s in 3 windows of 0.5 s" in overloaded.stats.aborted
    assert overloaded.verdict.status == "unsustainable"
    assert overloaded.verdict.reasons[0] == overloaded.stats.aborted
    assert overloaded.stats.ran_s is not None and overloaded.stats.ran_s < 4.5  # of 6 s
    saved = json.loads((tmp_path / "session" / "results" / "B2.json").read_text())
    assert saved["phases"][1]["aborted"] == overloaded.stats.aborted
    assert saved["validity"]["status"] == "VALID"
