"""`kubetest run` under interruption, secrets, locks and bad outputs (loopback only)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubetest.engine.records import read_records
from kubetest.errors import KubetestError
from kubetest.session import _session_lock

pytestmark = pytest.mark.timeout(300)

FAST_TARGET = {
    "url": "embedded",
    "embedded": {"workers": 4, "service_ms": 10, "service_dist": "exp"},
}


def write_params(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"target": FAST_TARGET, **sections}))
    return path


def kubetest(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kubetest", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw,
    )  # fmt: skip


def test_a_live_session_cannot_be_run_twice(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(str(os.getpid()))
    with pytest.raises(KubetestError, match="in use by process"), _session_lock(tmp_path):
        pass
    (tmp_path / ".lock").write_text("999999999")  # a stale lock from a killed run is taken over
    with _session_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_unwritable_outputs_give_one_line(tmp_path: Path) -> None:
    params = write_params(tmp_path, a1_response_time={"duration_min": 0.05})
    proc = kubetest("run", "--params", str(params), "--outputs", "/proc/kubetest-outputs")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert len(err.strip().splitlines()) == 1 and "cannot create" in err, err


def _port_refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_sigint_stops_the_run_and_still_reports(tmp_path: Path) -> None:
    params = write_params(tmp_path, a1_response_time={"rate_per_min": 600, "duration_min": 2},
                          a3_availability={"duration_min": 1})  # fmt: skip
    out = tmp_path / "out"
    proc = kubetest("run", "--params", str(params), "--outputs", str(out), "--session", "s")
    records = out / "s" / "records" / "A1.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (records.exists() and records.stat().st_size > 2000):
        time.sleep(0.2)
    assert records.exists(), "A1 never started sending"
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err[-2000:]
    assert time.monotonic() - t0 < 60
    session = out / "s"
    summary = json.loads((session / "summary.json").read_text())
    assert summary["complete"] is False
    a1 = next(r for r in summary["requirements"] if r["id"] == "BR-PA-003")
    # the kernel's load either stopped cleanly (reasons) or was cut with the kernel (reason)
    why = " ".join([a1["details"].get("reason", ""), *a1["details"].get("reasons", [])])
    assert a1["status"] == "INCONCLUSIVE" and "interrupted" in why
    assert summary["decision"] == "NO-GO"
    assert "A3" not in summary["tests_run"]  # nothing started after the interrupt
    assert len(read_records(records)) > 10  # what was measured is kept
    report = (session / "report.html").read_text()
    assert "did not complete" in report
    port = int(re.search(r"127\.0\.0\.1:(\d+)", (session / "target.log").read_text()).group(1))
    assert _port_refuses(port), "the embedded target outlived the run"
    assert not (session / ".lock").exists()


def test_secrets_never_land_in_outputs(tmp_path: Path) -> None:
    token = "kt-token-" + secrets.token_hex(12)
    password = "kt-redis-" + secrets.token_hex(12)
    params = write_params(
        tmp_path, a1_response_time={"rate_per_min": 1200, "duration_min": 0.05},
        environment={"redis_url": "redis://127.0.0.1:9/0", "redis_password_env": "KT_SECRET_PW"},
    )  # fmt: skip
    raw = yaml.safe_load(params.read_text())
    raw["target"]["auth_token_env"] = "KT_SECRET_TOKEN"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    proc = kubetest("run", "--params", str(params), "--outputs", str(out), "--session", "s",
                    env={"KT_SECRET_TOKEN": token, "KT_SECRET_PW": password})  # fmt: skip
    stdout, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    files = [p for p in (out / "s").rglob("*") if p.is_file()]
    assert len(files) > 8
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data, f"token leaked into {path}"
        assert password.encode() not in data, f"password leaked into {path}"
    assert token not in stdout + err and password not in stdout + err
    params_copy = (out / "s" / "params.yaml").read_text()
    assert "KT_SECRET_TOKEN" in params_copy  # the env var's name is kept, its value is not


def test_phase_b_waits_for_phase_a_when_asked(tmp_path: Path) -> None:
    target = {**FAST_TARGET, "embedded": {**FAST_TARGET["embedded"], "error_rate": 1.0}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "target": target, "continue_on_phase_a_failure": False,
        "a1_response_time": {"rate_per_min": 1200, "duration_min": 0.05},
        "b2_concurrency": {"levels": [5], "duration_s": 2, "recovery_s": 0},
    }))  # fmt: skip
    out = tmp_path / "out"
    proc = kubetest("run", "--params", str(path), "--outputs", str(out), "--session", "s")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((out / "s" / "summary.json").read_text())
    a1 = next(r for r in summary["requirements"] if r["id"] == "BR-PA-003")
    assert a1["status"] == "FAIL" and a1["details"]["outcomes"]["failed"] > 0
    assert "B2" not in summary["tests_run"]
    assert "B2: not run: Phase A failed" in err


def test_resume_keeps_completed_tests_and_runs_the_rest(tmp_path: Path) -> None:
    params = write_params(tmp_path, a1_response_time={"rate_per_min": 1200, "duration_min": 0.05},
                          a3_availability={"duration_min": 0.3, "probe_interval_s": 0.05,
                                           "target": 0.99})  # fmt: skip
    out = tmp_path / "out"
    session = out / "s"
    proc = kubetest("run", "--params", str(params), "--outputs", str(out), "--session", "s")
    probes = session / "records" / "A3_probes.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not probes.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=90)
    assert json.loads((session / "summary.json").read_text())["complete"] is False
    state = json.loads((session / "state.json").read_text())
    assert state["tests"]["A1"]["state"] == "done"
    assert state["tests"]["A3"]["state"] == "interrupted"
    a1_records = session / "records" / "A1.csv"
    before = a1_records.stat().st_mtime_ns

    other = tmp_path / "other.yaml"
    other.write_text(params.read_text().replace("0.05", "0.06"))
    refused = kubetest("run", "--params", str(other), "--outputs", str(out), "--session", "s",
                       "--resume")  # fmt: skip
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "params differ" in err and len(err.splitlines()) == 1

    again = kubetest("run", "--params", str(params), "--outputs", str(out), "--session", "s",
                     "--resume")  # fmt: skip
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-2000:]
    assert "kept A1" in err and "A1: running" not in err
    assert a1_records.stat().st_mtime_ns == before  # A1 was not sent again
    summary = json.loads((session / "summary.json").read_text())
    assert summary["complete"] is True and set(summary["tests_run"]) == {"A1", "A3"}
    state = json.loads((session / "state.json").read_text())
    assert state["attempt"] == 2
    assert {k: (v["state"], v["attempt"]) for k, v in state["tests"].items()} == {
        "A1": ("done", 1), "A3": ("done", 2)
    }  # fmt: skip


def test_a_running_notebook_reports_progress_to_the_terminal(tmp_path: Path) -> None:
    from kubetest.session import run_session

    params = write_params(
        tmp_path, a1_response_time={"rate_per_min": 1200, "duration_min": 0.05},
        b2_concurrency={"levels": [2, 4], "duration_s": 1, "recovery_s": 0},
    )  # fmt: skip
    lines: list[str] = []
    result = run_session(params, session="s", outputs=tmp_path / "out", echo=lines.append)
    assert result.summary["complete"], lines
    # the load's last status from inside the A1 kernel, prefixed with its test
    a1 = [ln for ln in lines if ln.startswith("  A1: load open ")]
    assert len(a1) == 1 and re.search(r"sent \d+ in-flight \d+ ok 100\.0%", a1[0]), lines
    # each B2 phase's verdict, in order, between its notebook's start and end
    start, end = lines.index("B2: running b2_concurrency.ipynb ..."), next(
        i for i, ln in enumerate(lines) if ln.startswith("B2: done"))  # fmt: skip
    phases = [ln for ln in lines[start:end] if ln.startswith("  B2: phase ")]
    assert [ln.split()[2] for ln in phases] == ["1", "2"], lines
    assert (result.session_dir / "progress.log").read_text().count("\n") == len(a1) + len(
        [ln for ln in lines if ln.startswith("  B2: ")])  # fmt: skip
    assert "KUBETEST_PROGRESS_FILE" not in os.environ  # the run put it back


def test_progress_tail_echoes_whole_lines_only(tmp_path: Path) -> None:
    from kubetest.engine.progress import session_note
    from kubetest.session import ProgressTail

    path = tmp_path / "progress.log"
    path.write_text("from an earlier attempt\n")
    lines: list[str] = []
    tail = ProgressTail(path, lines.append)
    tail.test = "A3"
    with path.open("a") as fh:
        fh.write("probes 15/60 s: 300 sent, 0 failed\nhalf a li")
    tail.drain()
    assert lines == ["  A3: probes 15/60 s: 300 sent, 0 failed"]
    with path.open("a") as fh:
        fh.write("ne\n")
    tail.drain()
    assert lines[-1] == "  A3: half a line"
    os.environ.pop("KUBETEST_PROGRESS_FILE", None)
    session_note("nobody listens")  # no session: nothing written anywhere, no error
    assert path.read_text().count("\n") == 3


# --------------------------------------------------------------------------- containment


@pytest.mark.parametrize("name", ["..", "../elsewhere", "a/b", "/abs", "", " ", ".", "a\tb"])
def test_a_session_name_is_one_folder_under_outputs(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    (victim / "results").mkdir(parents=True)
    (victim / "results" / "keep.json").write_text("{}")
    params = write_params(tmp_path, a1_response_time={"duration_min": 0.05})
    session = str(victim) if name == "/abs" else name
    proc = kubetest("run", "--params", str(params), "--outputs", str(tmp_path / "out"),
                    "--session", session)  # fmt: skip
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert len(err.strip().splitlines()) == 1 and "not a folder name" in err, err
    assert (victim / "results" / "keep.json").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_kubetest_did_not_make_is_never_cleared(tmp_path: Path) -> None:
    from kubetest.session import _clear_results, _refuse_foreign

    foreign = tmp_path / "out" / "s"
    (foreign / "results").mkdir(parents=True)
    (foreign / "results" / "mine.txt").write_text("not kubetest's")
    with pytest.raises(KubetestError, match="not a kubetest session"):
        _refuse_foreign(foreign)
    _clear_results(foreign)  # no state.json: nothing removed
    assert (foreign / "results" / "mine.txt").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text("{}")
    own = tmp_path / "out" / "own"
    own.mkdir()
    (own / "state.json").write_text("{}")
    (own / "results").symlink_to(outside)
    _refuse_foreign(own)  # a kubetest session
    _clear_results(own)
    assert not os.path.lexists(own / "results") and (outside / "keep.json").exists()
    (own / "results").mkdir()
    (own / "results" / "A1.json").write_text("{}")
    _clear_results(own)
    assert not (own / "results").exists()
    link = tmp_path / "out" / "link"
    link.symlink_to(outside)
    with pytest.raises(KubetestError, match="symlink"):
        _refuse_foreign(link)
