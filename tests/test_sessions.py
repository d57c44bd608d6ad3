"""Sessions as a user finds them: notebooks opened by hand share one (the newest lab_* or
KUBETEST_SESSION), report.ipynb opened by hand renders it, ``kubetest sessions`` lists
every session with its time, profile, decision and validity (issue 20, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubetest.errors import KubetestError
from kubetest.sessions import hand_session, list_sessions

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (it holds params/) whose notebooks/ is the working directory."""
    root = tmp_path / "project"
    (root / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "params" / "mine.yaml").write_text(
        yaml.safe_dump({"target": {"url": "http://127.0.0.1:9/webhook", "api": "webhook"}})
    )
    monkeypatch.delenv("KUBETEST_OUTPUTS", raising=False)
    monkeypatch.delenv("KUBETEST_SESSION", raising=False)
    monkeypatch.chdir(root / "notebooks")
    return root


def test_notebooks_opened_by_hand_share_the_newest_lab_session(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetest.workbook.context import TestContext

    params = str(project / "params" / "mine.yaml")
    first = TestContext.open("A1", params)
    assert first.session_dir.name.startswith("lab_")
    assert json.loads((first.session_dir / "state.json").read_text())["lab"] is True
    assert (first.session_dir / "params.yaml").is_file()  # for kubetest compare
    second = TestContext.open("B1", params)
    assert second.session_dir == first.session_dir
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"writing to {first.session_dir} (shared: the newest lab_* session in "
        f"{project / 'outputs'}; set KUBETEST_SESSION to choose another)"
    )
    from kubetest.sessions import report_session

    with pytest.raises(KubetestError, match="no session to report on"):
        report_session()  # the shared session has no result yet
    older = project / "outputs" / "lab_20000101_000000"
    older.mkdir()
    assert hand_session()[0] == first.session_dir  # the newest by its timestamp


def test_kubetest_session_names_the_shared_session(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETEST_SESSION", "pilot-1")
    assert hand_session() == (project / "outputs" / "pilot-1", "from KUBETEST_SESSION")
    elsewhere = project.parent / "elsewhere"
    monkeypatch.setenv("KUBETEST_SESSION", str(elsewhere))
    assert hand_session()[0] == elsewhere
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("not kubetest's")
    from kubetest.workbook.context import TestContext

    with pytest.raises(KubetestError, match="is not a kubetest session"):
        TestContext.open("A1", str(project / "params" / "mine.yaml"))
    assert sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]


def _session(
    outputs: Path, name: str, started: str, *, decision: str | None, state: dict[str, object]
) -> Path:
    session = outputs / name
    (session / "results").mkdir(parents=True)
    (session / "state.json").write_text(json.dumps(state))
    (session / "params.yaml").write_text(yaml.safe_dump({"target": {"api": "kubernaut"}}))
    result = {
        "test": "A1",
        "title": "A1",
        "started": started,
        "complete": True,
        "requirements": [
            {
                "id": "BR-PA-003",
                "measured": 0.1,
                "unit": "s",
                "threshold": "p95 < 5 s",
                "status": "PASS",
            }
        ],
    }
    (session / "results" / "A1.json").write_text(json.dumps(result))
    if decision:
        summary = {
            "session": name,
            "complete": True,
            "decision": decision,
            "validity": {"status": "INVALID"},
            "tests_run": ["A1"],
        }
        (session / "summary.json").write_text(json.dumps(summary))
    return session


def test_kubetest_sessions_lists_time_profile_decision_and_validity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetest.cli import main

    out = tmp_path / "outputs"
    _session(
        out,
        "nightly",
        "2026-11-30T02:00:00+00:00",
        decision="NO-GO",
        state={"attempt": 1, "params": "smoke.yaml"},
    )
    _session(
        out, "lab_20261201_090000", "2026-12-01T09:00:00+00:00", decision=None, state={"lab": True}
    )
    (out / "not-a-session").mkdir()
    frame = list_sessions(out)
    assert list(frame["session"]) == ["lab_20261201_090000", "nightly"]  # newest first
    nightly = frame.iloc[1]
    assert (nightly["time"], nightly["profile"], nightly["decision"], nightly["validity"]) == (
        "2026-11-30 02:00 UTC",
        "smoke.yaml (kubernaut)",
        "NO-GO",
        "INVALID",
    )
    assert frame.iloc[0]["decision"] == "— (no summary)" and frame.iloc[0]["tests"] == "A1"
    assert main(["sessions", "--outputs", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nightly" in text and "smoke.yaml (kubernaut)" in text and "not-a-session" not in text


def test_report_notebook_opened_by_hand_renders_the_shared_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.ipynb run with no session_dir (as JupyterLab opens it): it finds the session
    from KUBETEST_SESSION, writes its summary.json from the results, and renders it."""
    from kubetest.files import REPO_ROOT
    from kubetest.notebook_run import execute_notebook

    session = _session(
        tmp_path / "outputs",
        "lab_20261201_090000",
        "2026-12-01T09:00:00+00:00",
        decision=None,
        state={"lab": True},
    )
    monkeypatch.setenv("KUBETEST_SESSION", str(session))
    executed = tmp_path / "report.ipynb"
    execute_notebook(REPO_ROOT / "notebooks" / "report.ipynb", executed, {}, tmp_path)
    summary = json.loads((session / "summary.json").read_text())
    assert summary["tests_run"] == ["A1"] and (session / "junit.xml").is_file()
    text = executed.read_text()
    assert f"reporting on {session} (from KUBETEST_SESSION)" in text
    assert "BR-PA-003" in text
