"""kubetest.results: the typed result contracts accept today's files, refuse a malformed
one naming the field, and round-trip without losing a key. The fixtures mirror a smoke
session's files (``kubetest run --params params/smoke.yaml``), trimmed."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kubetest.errors import ResultError
from kubetest.params import Params
from kubetest.results import (
    GeneratorHealth,
    LoadHealth,
    Summary,
    TestResult,
    load_result,
    validate_result,
)

EST = {"value": 0.05, "low": 0.04, "high": 0.06}
REQ = {"id": "BR-PA-003", "measured": 0.0567808, "unit": "s",
       "threshold": "p95 < 5 s and success ≥ 95%", "status": "PASS",
       "details": {"title": "Response time", "p95_ci": [0.05, 0.06]}}  # fmt: skip
LOAD = {"mode": "open", "p50": 0.02, "p95": 0.055, "p99": 0.07, "saturated": False,
        "saturation_reasons": [], "schedule_lag_p99": 0.003, "target_rate_per_s": 20.0,
        "achieved_rate_per_s": 19.9, "late_or_dropped": 0, "outcomes": {"accepted": 60},
        "per_worker": [{"worker": 0, "saturated": False}], "abort_rule": None}  # fmt: skip
A1: dict[str, Any] = {
    "test": "A1", "title": "A1 response time", "started": "2026-12-02T19:49:36.671690+00:00",
    "finished": "2026-12-02T19:49:40.291389+00:00", "complete": True, "aborted": None,
    "validity": {"status": "VALID", "reasons": []},
    "latency": {"count": 60, "accepted": 60, "success_rate": {"value": 1.0, "low": 0.94,
                "high": 1.0}, "p50": EST, "p95": EST, "p99": EST, "max": 0.08, "mean": 0.03,
                "schedule_lag_p99": 0.003, "not_sent": 0,
                "outcomes": {"accepted": 60, "failed": 0}, "errors": {}},
    "load": LOAD, "records": "records/A1.csv",
    "params": {"rate_per_min": 1200.0, "duration_min": 0.05, "types": ["high_memory"]},
    "service_metrics": {"source": "scrape", "note": None, "series": {}},
    "integrity_check": {"status": "checked", "reconciliation": {"lost": 0}},
    "integrity": {"accepted": 60, "handled": 60, "lost": 0, "duplicated": 0, "unexpected": 0},
    "requirements": [REQ], "remediation": None,
}  # fmt: skip
B1: dict[str, Any] = {
    "test": "B1", "title": "B1 alert capacity", "started": "2026-12-02T19:50:19+00:00",
    "finished": "2026-12-02T19:50:27+00:00", "complete": True, "stopped": "every phase ran",
    "validity": {"status": "VALID", "reasons": []},
    "phases": [{"phase": 1, "offered_per_min": 600.0, "status": "sustainable"}],
    "phases_load": [{**LOAD, "phase": 1, "phase_status": "generator-limited",
                     "saturated": True}],
    "phases_service": [{"phase": 1, "label": "600/min", "records": "records/B1_p1.csv"}],
    "slo": {"p95_s": 5.0, "success_rate": 0.95},
    "params": {"phases": [[600.0, 0.05]], "recovery_s": 1.0},
    "requirements": [{**REQ, "id": "CAP-1000", "measured": 10000.0, "unit": "alerts/min"}],
    "capacity": {"max_sustainable_rate_per_min": 10000.0, "recommendation": "fine"},
    "theory": {"model": "M/M/4", "capacity_per_min": 24000.0},
}  # fmt: skip
ENV: dict[str, Any] = {
    "test": "ENV", "title": "Environment readiness", "started": "2026-12-02T19:49:31+00:00",
    "finished": "2026-12-02T19:49:31+00:00", "complete": True, "ready": True,
    "checks": [{"name": "target", "status": "ok", "required": True}], "debug": {},
}  # fmt: skip
SUMMARY: dict[str, Any] = {
    "session": "s", "complete": True, "failures": {}, "tests_run": ["A1", "B1", "ENV"],
    "validity": {"status": "VALID", "reasons": [],
                 "tests": {"A1": {"status": "VALID", "reasons": []}}},
    "requirements": [REQ, {"id": "BR-PA-001", "measured": None, "unit": "%", "threshold": "",
                           "status": "NOT_RUN", "details": {"reason": "not selected"}}],
    "capacity": {"max_sustainable_rate_per_min": 10000.0, "degradation_point_per_min": None},
    "generator": {"saturated": False, "schedule_lag_p99_s": 0.003},
    "integrity": {"accepted": 60, "handled": 60, "lost": 0, "duplicated": 0, "unexpected": 0},
    "confidence": 95, "confidence_penalties": {"BR-PA-003: interval straddles": 5},
    "decision": "GO", "decision_reasons": [],
}  # fmt: skip


@pytest.mark.parametrize("data", [A1, B1, ENV], ids=["A1", "B1", "ENV"])
def test_result_files_of_a_smoke_session_validate_and_round_trip(data: dict[str, Any]) -> None:
    result = validate_result(copy.deepcopy(data))
    assert result.as_dict() == data  # no key lost, none added, no value changed
    assert json.loads(TestResult.model_validate_json(json.dumps(data)).model_dump_json(
        exclude_unset=True)) == data  # fmt: skip


def test_the_sections_read_typed() -> None:
    a1 = validate_result(A1)
    assert a1.latency is not None and a1.latency.p95.value == 0.05  # the judged p95
    assert a1.load is not None and a1.load["p95"] == 0.055  # the generator's own, kept
    assert a1.requirements[0].status == "PASS" and a1.requirements[0].measured == 0.0567808
    assert a1.validity is not None and a1.validity.status == "VALID"
    assert a1.as_dict()["integrity_check"] == A1["integrity_check"]
    b1 = validate_result(B1)
    assert b1.as_dict()["theory"] == B1["theory"]  # an undeclared section is kept
    [phase] = b1.loads()
    assert phase.saturated and not phase.judged_saturated  # generator-limited: not evidence
    assert GeneratorHealth.of(b1.loads() + a1.loads()).model_dump() == {
        "saturated": False,
        "schedule_lag_p99_s": 0.003,
    }


def test_the_summary_validates_and_round_trips() -> None:
    summary = Summary.model_validate(copy.deepcopy(SUMMARY))
    assert summary.as_dict() == SUMMARY
    assert list(summary.as_dict()) == list(SUMMARY)  # the keys in their order, too
    assert summary.generator.saturated is False and summary.requirements[1].measured is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(complete="perhaps"), "complete"),
        (lambda d: d["requirements"][0].update(status="OK"), "requirements.0.status"),
        (lambda d: d["requirements"][0].pop("id"), "requirements.0.id"),
        (lambda d: d["validity"].update(status="FINE"), "validity.status"),
        (lambda d: d["latency"]["p95"].update(value="fast"), "latency.p95.value"),
        (lambda d: d.pop("title"), "title"),
    ],
)
def test_a_malformed_result_is_refused_naming_the_field(change: Any, field: str) -> None:
    data = copy.deepcopy(A1)
    change(data)
    with pytest.raises(ResultError, match=r"\b" + re.escape(field) + ": "):
        validate_result(data)


def test_a_malformed_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="decision"):
        Summary.model_validate({**SUMMARY, "decision": "MAYBE"})


def test_save_result_validates_before_writing(tmp_path: Path) -> None:
    from kubetest.workbook.context import TestContext

    ctx = TestContext("A1", Params(), tmp_path, "http://127.0.0.1:9/")
    bad = {k: v for k, v in copy.deepcopy(A1).items() if k != "test"}
    bad["requirements"][0]["status"] = "GREEN"
    with pytest.raises(ResultError, match=r"A1's result .*requirements\.0\.status"):
        ctx.save_result(bad)
    assert not ctx.result_path.exists()  # nothing written
    good = {k: v for k, v in copy.deepcopy(A1).items() if k != "test"}
    good["latency"]["mean"] = float("nan")  # not JSON: written as null, as before
    path = ctx.save_result(good)
    written = json.loads(path.read_text())
    assert list(written) == ["test", *good]  # the keys given, in order, plus test
    assert written["latency"]["mean"] is None
    assert load_result(path).as_dict() == written


def test_an_older_result_file_still_reads(tmp_path: Path) -> None:
    """Files written before the models (or by hand) may lack title and the times."""
    path = tmp_path / "A1.json"
    path.write_text(json.dumps({"test": "A1", "complete": True, "requirements": []}))
    result = load_result(path)
    assert result.complete is True and result.title == "" and result.started is None
    assert result.as_dict() == {"test": "A1", "complete": True, "requirements": []}


def test_load_health_reads_only_the_saturation_fields() -> None:
    health = LoadHealth.model_validate(LOAD)
    assert health.schedule_lag_p99 == 0.003 and health.accepted == 60
    assert "p95" not in health.model_dump()  # the engine's percentiles are not read
