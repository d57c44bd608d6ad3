"""kubetest in CI: junit.xml in every session, ``kubetest run --fail-on``'s exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetest.ci import failing, junit_xml

HOSTILE = '<script>alert(1)</script> ]]> & "quoted"'


def _req(id_: str, status: str, **over: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "measured": None,
        "unit": "s",
        "threshold": "",
        "status": status,
        "details": {},
        **over,
    }


SUMMARY = {
    "session": "s1",
    "decision": "NO-GO",
    "decision_reasons": ["BR-PA-003 failed"],
    "complete": True,
    "confidence": 40,
    "validity": {"status": "VALID", "tests": {"A1": {"status": "VALID"}}},
    "requirements": [
        _req(
            "BR-PA-003",
            "FAIL",
            measured=6.2,
            threshold="p95 < 5 s and success ≥ 95%",
            details={
                "title": "Alert response time (p95)",
                "p95_ci": [5.9, 6.6],
                "reasons": [HOSTILE],
            },
        ),
        _req("BR-PA-004", "PASS", measured=0.4, threshold="100 concurrent, p95 < 5 s"),
        _req(
            "BR-PA-001",
            "INCONCLUSIVE",
            unit="%",
            threshold="≥ 99.9 %",
            details={"reason": "notebook failed: boom"},
        ),
        _req("BR-PA-011", "NOT_RUN", unit="%", details={"reason": "test not selected"}),
    ],
}


def test_junit_has_one_testcase_per_requirement_with_value_and_criterion() -> None:
    root = ET.fromstring(
        junit_xml(
            SUMMARY,
            {
                "A1": {
                    "started": "2026-01-01T00:00:00+00:00",
                    "finished": "2026-01-01T00:01:30+00:00",
                }
            },
        )
    )
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name", "").split(":")[0]: c for c in suite.iter("testcase")}
    assert list(cases) == ["BR-PA-003", "BR-PA-004", "BR-PA-001", "BR-PA-011"]
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == ("4", "1", "1", "1")
    failure = cases["BR-PA-003"].find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("FAIL: measured 6.2 s (95 % CI 5.9–6.6 s); criterion: p95 < 5 s")
    assert HOSTILE in message  # escaped on the way in, read back as the same text
    assert cases["BR-PA-003"].get("time") == "90.000"
    assert cases["BR-PA-003"].get("classname") == "kubetest.A1"
    assert cases["BR-PA-004"].find("failure") is None
    error = cases["BR-PA-001"].find("error")
    assert error is not None and "notebook failed: boom" in error.get("message", "")
    assert cases["BR-PA-011"].find("skipped") is not None


@pytest.mark.parametrize(
    ("change", "fail_on", "exits"),
    [
        ({}, "never", False),
        ({}, "nogo", True),
        ({"decision": "GO"}, "nogo", False),
        ({}, "fail", True),  # BR-PA-003 FAIL
        ({"requirements": [_req("BR-PA-003", "PASS")]}, "fail", False),
        (
            {
                "requirements": [_req("BR-PA-003", "INCONCLUSIVE")],
                "validity": {"status": "INVALID", "tests": {"A1": {"status": "INVALID"}}},
            },
            "fail",
            True,
        ),
        ({"requirements": [], "failures": {"B1": "boom"}}, "fail", True),
    ],
)
def test_fail_on_rules(change: dict[str, Any], fail_on: str, exits: bool) -> None:
    assert (failing({**SUMMARY, **change}, fail_on) is not None) is exits


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """``kubetest run`` whose notebooks write an A1 result of the status asked for at once
    (``status["A1"]``), and whose report is a stub file."""
    import kubetest.session as session_mod

    status = {"A1": "PASS"}

    def execute(src: Path, dst: Path, parameters: dict, cwd: Path, stop: object) -> None:
        req = _req(
            "BR-PA-003",
            status["A1"],
            measured=6.2 if status["A1"] == "FAIL" else 0.1,
            threshold="p95 < 5 s",
        )
        result = {"test": "A1", "complete": True, "requirements": [req]}
        (cwd / "results").mkdir(exist_ok=True)
        (cwd / "results" / "A1.json").write_text(json.dumps(result))

    report = tmp_path / "report.html"
    report.write_text("stub")
    monkeypatch.setattr(session_mod, "execute_stoppable", execute)
    monkeypatch.setattr(session_mod, "_build_report", lambda *a: (report, False))
    return status


def test_run_exit_codes_follow_fail_on_and_every_session_has_junit(
    tmp_path: Path, fake_run: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetest.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "target": {"url": "http://127.0.0.1:9/webhook"},
                "a1_response_time": {"duration_min": 0.05},
            }
        )
    )
    out = tmp_path / "out"

    def run(name: str, *extra: str) -> int:
        return main(
            [
                "run",
                "--params",
                str(params),
                "--outputs",
                str(out),
                "--session",
                name,
                "--only",
                "A1",
                *extra,
            ]
        )

    assert run("plain") == 0  # NO-GO (only A1 ran), but --fail-on defaults to never
    assert (out / "plain" / "junit.xml").is_file()
    assert run("nogo", "--fail-on", "nogo") == 3
    assert "kubetest: --fail-on nogo: decision NO-GO" in capsys.readouterr().err
    assert run("pass", "--fail-on", "fail") == 0
    fake_run["A1"] = "FAIL"
    assert run("fail", "--fail-on", "fail") == 3
    assert capsys.readouterr().err.strip().endswith("--fail-on fail: BR-PA-003 FAIL")
    case = ET.parse(out / "fail" / "junit.xml").getroot().find(".//testcase")
    assert case is not None and case.find("failure") is not None
    assert "measured 6.2 s; criterion: p95 < 5 s" in case.find("failure").get("message", "")  # type: ignore[union-attr]
    state = json.loads((out / "fail" / "state.json").read_text())
    assert state["params"] == "params.yaml"
