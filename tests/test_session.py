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


def _kernels_in(session: Path) -> list[int]:
    """Processes working in ``session`` (a notebook kernel's cwd is its session folder)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == session:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _wait_running(session: Path, test: str, proc: subprocess.Popen, records: Path) -> None:
    """Until ``test`` is running in ``session`` and its load has written records."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        try:
            state = json.loads((session / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        running = state.get("tests", {}).get(test, {}).get("state") == "running"
        if running and records.exists() and records.read_bytes().count(b"\n") > 10:
            return
        time.sleep(0.1)
    raise AssertionError(f"{test} never started sending")


def _stopped(proc: subprocess.Popen, sig: int, group: bool = False) -> tuple[str, float]:
    """Signal ``proc`` (its whole process group, as a terminal's Ctrl-C does, with
    ``group``); its stdout+stderr and the seconds from the signal to its exit."""
    t0 = time.monotonic()
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return out + err, time.monotonic() - t0


def test_ctrl_c_stops_the_run_in_seconds_with_one_line_and_resume_continues(tmp_path: Path) -> None:
    """Issue 23 item 2: no traceback, exit 130 within 3 s, the kernel gone, what was
    measured kept, ``state.json`` says interrupted; ``--resume`` keeps the --only subset."""
    params = write_params(tmp_path, a1_response_time={"rate_per_min": 600, "duration_min": 0.35},
                          a3_availability={"duration_min": 1})  # fmt: skip
    out = tmp_path / "out"
    session = out / "s"
    records = session / "records" / "A1.csv"
    run = ["run", "--params", str(params), "--outputs", str(out), "--session", "s"]
    proc = kubetest(*run, "--only", "A1", start_new_session=True)
    _wait_running(session, "A1", proc, records)
    output, took = _stopped(proc, signal.SIGINT, group=True)
    assert proc.returncode == 130, output[-2000:]
    assert took < 3.0, f"stopped {took:.1f} s after SIGINT"
    assert "Traceback" not in output and "Error" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("interrupted:")]
    assert lines == [
        f"interrupted: results kept in {session}; continue with kubetest run "
        f"--params {params} --outputs {out} --session s --resume"
    ], output
    assert _kernels_in(session) == [], "the notebook's kernel outlived the run"
    state = json.loads((session / "state.json").read_text())
    assert state["only"] == ["A1"] and state["tests"]["A1"]["state"] == "interrupted"
    summary = json.loads((session / "summary.json").read_text())
    assert summary["complete"] is False and "A3" not in summary["tests_run"]
    a1 = next(r for r in summary["requirements"] if r["id"] == "BR-PA-003")
    # the kernel's load either stopped cleanly (reasons) or was cut with the kernel (reason)
    why = " ".join([a1["details"].get("reason", ""), *a1["details"].get("reasons", [])])
    assert a1["status"] == "INCONCLUSIVE" and "interrupted" in why
    assert len(read_records(records)) >= 10  # what was measured is kept
    assert not (session / "report.html").exists()  # `kubetest report` builds it on demand
    port = int(re.search(r"127\.0\.0\.1:(\d+)", (session / "target.log").read_text()).group(1))
    assert _port_refuses(port), "the embedded target outlived the run"
    assert not (session / ".lock").exists()

    # --resume without --only runs the interrupted subset again (A1), never A3; SIGTERM
    # stops it the same way
    again = kubetest(*run, "--resume")
    _wait_running(session, "A1", again, records)
    output, took = _stopped(again, signal.SIGTERM)
    assert again.returncode == 130 and took < 3.0 and "Traceback" not in output, output
    assert "resuming with --only A1, as the interrupted run" in output
    state = json.loads((session / "state.json").read_text())
    assert state["attempt"] == 2 and state["only"] == ["A1"]
    assert set(state["tests"]) == {"A1"} and state["tests"]["A1"]["state"] == "interrupted"


def test_secrets_never_land_in_outputs(tmp_path: Path) -> None:
    token = "kt-token-" + secrets.token_hex(12)
    password = "kt-redis-" + secrets.token_hex(12)
    params = write_params(
        tmp_path,
        a1_response_time={"rate_per_min": 1200, "duration_min": 0.05},
        environment={"redis_url": "redis://127.0.0.1:9/0", "redis_password_env": "KT_SECRET_PW"},
    )
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
    params = write_params(
        tmp_path,
        a1_response_time={"rate_per_min": 1200, "duration_min": 0.05},
        a3_availability={"duration_min": 0.1, "probe_interval_s": 0.05, "target": 0.99},
    )
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
    refused = kubetest(
        "run", "--params", str(other), "--outputs", str(out), "--session", "s", "--resume"
    )
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "params differ" in err and len(err.splitlines()) == 1

    again = kubetest(
        "run", "--params", str(params), "--outputs", str(out), "--session", "s", "--resume"
    )
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-2000:]
    assert "kept A1" in err and "A1: running" not in err
    assert a1_records.stat().st_mtime_ns == before  # A1 was not sent again
    summary = json.loads((session / "summary.json").read_text())
    assert summary["complete"] is True and set(summary["tests_run"]) == {"A1", "A3"}
    state = json.loads((session / "state.json").read_text())
    assert state["attempt"] == 2
    assert {k: (v["state"], v["attempt"]) for k, v in state["tests"].items()} == {
        "A1": ("done", 1),
        "A3": ("done", 2),
    }


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
    proc = kubetest(
        "run", "--params", str(params), "--outputs", str(tmp_path / "out"), "--session", session
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert len(err.strip().splitlines()) == 1 and "not a folder name" in err, err
    assert (victim / "results" / "keep.json").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_kubetest_did_not_make_is_never_cleared(tmp_path: Path) -> None:
    from kubetest.session import _clear_session, _refuse_foreign

    foreign = tmp_path / "out" / "s"
    (foreign / "results").mkdir(parents=True)
    (foreign / "results" / "mine.txt").write_text("not kubetest's")
    with pytest.raises(KubetestError, match="not a kubetest session"):
        _refuse_foreign(foreign)
    _clear_session(foreign)  # no state.json: nothing removed
    assert (foreign / "results" / "mine.txt").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text("{}")
    own = tmp_path / "out" / "own"
    own.mkdir()
    (own / "state.json").write_text("{}")
    (own / ".lock").write_text(str(os.getpid()))
    (own / "results").symlink_to(outside)
    _refuse_foreign(own)  # a kubetest session
    _clear_session(own)
    assert not os.path.lexists(own / "results") and (outside / "keep.json").exists()
    assert [p.name for p in own.iterdir()] == [".lock"]  # the live run's lock stays
    (own / "state.json").write_text("{}")
    (own / "results").mkdir()
    (own / "results" / "A1.json").write_text("{}")
    _clear_session(own)
    assert not (own / "results").exists() and not (own / "state.json").exists()
    link = tmp_path / "out" / "link"
    link.symlink_to(outside)
    with pytest.raises(KubetestError, match="symlink"):
        _refuse_foreign(link)


# --------------------------------------------------------------------------- outputs, usage


def test_a_notebook_run_by_hand_writes_where_the_user_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 5: the project's outputs/ (the folder holding params/), or
    KUBETEST_OUTPUTS, or ./outputs; never the installed package's; said in the first line."""
    from kubetest.files import REPO_ROOT
    from kubetest.workbook.context import TestContext

    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    (project / "notebooks").mkdir()
    params = project / "params" / "mine.yaml"
    params.write_text(yaml.safe_dump({"target": {"url": "http://127.0.0.1:9/webhook"}}))
    monkeypatch.delenv("KUBETEST_OUTPUTS", raising=False)
    monkeypatch.chdir(project / "notebooks")

    def opened() -> tuple[Path, str]:
        ctx = TestContext.open("A1", str(params))
        first = capsys.readouterr().out.splitlines()[0]
        assert ctx.session_dir.is_dir() and ctx.session_dir.name.startswith("lab_")
        assert not ctx.session_dir.is_relative_to(REPO_ROOT)
        return ctx.session_dir, first

    session, first = opened()
    assert session.parent == project / "outputs"
    assert first == f"writing to {session} (the project's: {project} holds params/)"

    monkeypatch.setenv("KUBETEST_OUTPUTS", str(tmp_path / "chosen"))
    session, first = opened()
    assert session.parent == tmp_path / "chosen" and first.endswith("(from KUBETEST_OUTPUTS)")

    monkeypatch.delenv("KUBETEST_OUTPUTS")
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)
    session, first = opened()
    assert session.parent == bare / "outputs" and "no params/ folder above" in first


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--only", "A9"], "argument --only: unknown test A9; choose from ENV,EXT,A1"),
        (["--resume"], "--resume needs --session NAME"),
        (["--overwrite"], "--overwrite needs --session NAME"),
        (["--session", "s", "--resume", "--overwrite"], "not allowed with argument"),
    ],
)
def test_bad_run_arguments_print_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    from kubetest.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--params", str(tmp_path / "p.yaml"), "--outputs", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("usage: kubetest run ") and says in err, err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


# --------------------------------------------------------------------------- no silent loss


@pytest.fixture
def fake_notebooks(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Notebooks that write a complete result at once (``interrupt`` lists the tests that
    are Ctrl-C'd instead); no report. The keys each run executed are in ``ran``."""
    import kubetest.session as session_mod

    by_file = {name: key for key, name in session_mod.NOTEBOOKS.items()}
    calls: dict[str, list[str]] = {"ran": [], "interrupt": []}

    def execute(src: Path, dst: Path, parameters: dict, cwd: Path, stop: object) -> None:
        key = by_file[src.name]
        calls["ran"].append(key)
        if key in calls["interrupt"]:
            raise KeyboardInterrupt
        result = {"test": key, "complete": True, "requirements": []}
        (cwd / "results").mkdir(exist_ok=True)
        (cwd / "results" / f"{key}.json").write_text(json.dumps(result))

    monkeypatch.setattr(session_mod, "execute_stoppable", execute)
    monkeypatch.setattr(session_mod, "_build_report", lambda *a: (None, False))
    return calls


def _remote_params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "target": {"url": "http://127.0.0.1:9/webhook"},
        "a1_response_time": {"duration_min": 0.05}, "a3_availability": {"duration_min": 0.1},
    }))  # fmt: skip
    return path


def test_a_rerun_into_a_session_is_refused_and_overwrite_replaces_it(
    tmp_path: Path, fake_notebooks: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 1: a plain rerun under the same --session name wiped results/."""
    from kubetest.cli import main
    from kubetest.session import run_session

    params, out = _remote_params(tmp_path), tmp_path / "out"
    session = out / "s"
    run_session(params, session="s", outputs=out, echo=lambda _: None)
    assert sorted(p.name for p in (session / "results").iterdir()) == ["A1.json", "A3.json"]
    argv = ["run", "--params", str(params), "--outputs", str(out), "--session", "s"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"kubetest: error: {session} already holds a session; continue it with --resume, "
        "replace it with --overwrite, or pick another --session\n"
    )
    assert sorted(p.name for p in (session / "results").iterdir()) == ["A1.json", "A3.json"]

    (session / "mine.txt").write_text("the earlier run's")
    lines: list[str] = []
    run_session(params, only=["A1"], session="s", outputs=out, overwrite=True, echo=lines.append)
    assert "overwriting s: the earlier run's files are gone" in lines
    assert [p.name for p in (session / "results").iterdir()] == ["A1.json"]
    assert not (session / "mine.txt").exists()
    assert json.loads((session / "state.json").read_text())["attempt"] == 1

    foreign = out / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not kubetest's")
    lines.clear()
    run_session(params, only=["A1"], session="new", outputs=out, overwrite=True, echo=lines.append)
    assert not any("overwriting" in line for line in lines)  # nothing was there to replace
    assert main([*argv[:-1], "theirs", "--overwrite"]) == 1
    assert "not a kubetest session" in capsys.readouterr().err
    assert (foreign / "notes.txt").exists()


def test_resume_keeps_the_only_subset_of_the_interrupted_run(
    tmp_path: Path, fake_notebooks: dict[str, list[str]]
) -> None:
    """Issue 23 item 1: ``--resume`` quietly widened an ``--only A1`` run to the whole plan."""
    from kubetest.session import run_session

    params, out = _remote_params(tmp_path), tmp_path / "out"
    fake_notebooks["interrupt"] = ["A1"]
    first = run_session(params, only=["A1"], session="s", outputs=out, echo=lambda _: None)
    assert first.interrupted and fake_notebooks["ran"] == ["A1"]
    state = json.loads((out / "s" / "state.json").read_text())
    assert state["only"] == ["A1"] and state["tests"]["A1"]["state"] == "interrupted"

    fake_notebooks.update(ran=[], interrupt=[])
    lines: list[str] = []
    run_session(params, session="s", outputs=out, resume=True, echo=lines.append)
    assert fake_notebooks["ran"] == ["A1"], "the resume widened the run"
    assert "resuming with --only A1, as the interrupted run" in lines

    fake_notebooks["ran"] = []
    lines.clear()
    run_session(params, only=["A1", "A3"], session="s", outputs=out, resume=True, echo=lines.append)
    assert fake_notebooks["ran"] == ["A3"]  # the user's subset; A1 is complete and kept
    assert "resuming with --only A1,A3; the interrupted run had --only A1" in lines
    assert json.loads((out / "s" / "state.json").read_text())["only"] == ["A1", "A3"]


# --------------------------------------------------------------------------- A3 beside load


@pytest.fixture
def fake_beside(
    monkeypatch: pytest.MonkeyPatch, fake_notebooks: dict[str, list[str]]
) -> dict[str, list[str]]:
    """A3 run beside the others (``during_load``) as a fake that logs, into the same
    ``ran`` list, when it starts, what ``alongside.json`` said when it was joined, and
    whether it had to be stopped; a joined fake writes a complete result."""
    import kubetest.session as session_mod
    from kubetest import alongside

    class FakeBeside:
        def __init__(self, session_dir: Path) -> None:
            self.session_dir = session_dir

        def start(self) -> FakeBeside:
            fake_notebooks["ran"].append("A3 start")
            return self

        def join(self, stop: object) -> None:
            side = alongside.read(self.session_dir)
            assert side is not None
            fake_notebooks["ran"].append(f"A3 joined {','.join(side.tests)} ended={side.ended}")
            result = {"test": "A3", "complete": True, "requirements": []}
            (self.session_dir / "results" / "A3.json").write_text(json.dumps(result))

        def stop(self) -> bool:
            fake_notebooks["ran"].append("A3 stopped")
            return True

    monkeypatch.setattr(session_mod, "_beside", lambda session_dir, _p: FakeBeside(session_dir))
    return fake_notebooks


def _beside_params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({
        "target": {"url": "http://127.0.0.1:9/webhook"},
        "a1_response_time": {"duration_min": 0.05}, "a4_actions": {},
        "a3_availability": {"duration_min": 0.1, "during_load": True},
        "b1_capacity": {"phases": [[60, 0.05]]},
    }))  # fmt: skip
    return path


def test_a3_during_load_starts_with_phase_a_and_ends_before_phase_b(
    tmp_path: Path, fake_beside: dict[str, list[str]]
) -> None:
    from kubetest.session import run_session

    out, lines = tmp_path / "out", []
    run_session(_beside_params(tmp_path), session="s", outputs=out, echo=lines.append)
    assert fake_beside["ran"] == ["A3 start", "A1", "A4", "A3 joined A1,A4 ended=True", "B1"]
    assert "A3: running beside A1, A4" in lines
    state = json.loads((out / "s" / "state.json").read_text())["tests"]
    assert state["A3"]["state"] == "done" and state["A3"]["beside"] == ["A1", "A4"]


def test_a3_during_load_stops_with_the_session_and_resumes_beside_what_is_left(
    tmp_path: Path, fake_beside: dict[str, list[str]]
) -> None:
    from kubetest.session import run_session

    params, out = _beside_params(tmp_path), tmp_path / "out"
    fake_beside["interrupt"] = ["A4"]  # Ctrl-C while A4 runs beside A3
    first = run_session(params, session="s", outputs=out, echo=lambda _: None)
    assert first.interrupted
    assert fake_beside["ran"] == ["A3 start", "A1", "A4", "A3 stopped"]
    state = json.loads((out / "s" / "state.json").read_text())["tests"]
    assert (state["A3"]["state"], state["A4"]["state"]) == ("interrupted", "interrupted")

    fake_beside.update(ran=[], interrupt=[])
    run_session(params, session="s", outputs=out, resume=True, echo=lambda _: None)
    assert fake_beside["ran"] == ["A3 start", "A4", "A3 joined A4 ended=True", "B1"]

    fake_beside.update(ran=[])  # A3 done: a resumed run never starts it again
    (out / "s" / "results" / "B1.json").unlink()
    run_session(params, session="s", outputs=out, resume=True, echo=lambda _: None)
    assert fake_beside["ran"] == ["B1"]


def test_ctrl_c_stops_a3_beside_the_load_with_the_session(tmp_path: Path) -> None:
    """Both kernels (A1's and A3's beside it) are gone within seconds of one Ctrl-C."""
    params = write_params(
        tmp_path, a1_response_time={"rate_per_min": 600, "duration_min": 0.5},
        a3_availability={"duration_min": 0.5, "probe_interval_s": 0.1, "during_load": True},
    )  # fmt: skip
    out = tmp_path / "out"
    session = out / "s"
    run = ["run", "--params", str(params), "--outputs", str(out), "--session", "s"]
    proc = kubetest(*run, "--only", "A1,A3", start_new_session=True)
    _wait_running(session, "A1", proc, session / "records" / "A1.csv")
    probes = session / "records" / "A3_probes.csv"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        not probes.exists() or probes.read_bytes().count(b"\n") < 10
    ):
        time.sleep(0.1)
    output, took = _stopped(proc, signal.SIGINT, group=True)
    assert proc.returncode == 130 and took < 5.0, (took, output[-2000:])
    assert "Traceback" not in output, output
    assert _kernels_in(session) == [], "a kernel outlived the run"
    state = json.loads((session / "state.json").read_text())["tests"]
    assert (state["A1"]["state"], state["A3"]["state"]) == ("interrupted", "interrupted")
