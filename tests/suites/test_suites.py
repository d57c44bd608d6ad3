"""The service's own suites (Step 1a): both result formats, the runner's bounds, the verdict."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubetest.analysis.verdicts import Requirement, decide
from kubetest.errors import ParamsError
from kubetest.params import ExternalSuite, parse_params
from kubetest.suites import by_requirement, parse_go_test_json, parse_junit_xml, run_suite
from kubetest.suites.formats import SuiteFormatError

pytestmark = pytest.mark.timeout(180)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
GO = [sys.executable, str(SCRIPTS / "fake_go_test.py")]
JUNIT = [sys.executable, str(SCRIPTS / "fake_junit.py")]
PKG = "github.com/jordigilh/kubernaut/test/integration/alert_processing"


def ev(action: str, test: str = "", pkg: str = PKG, **extra: object) -> str:
    return json.dumps(
        {"Action": action, "Package": pkg, **({"Test": test} if test else {}), **extra}
    )


def suite(**kw: object) -> ExternalSuite:
    return ExternalSuite.model_validate({"name": "s", "command": ["true"], **kw})


# --------------------------------------------------------------------------- go test -json


def test_go_json_counts_each_test_and_keeps_a_failures_output() -> None:
    text = "\n".join([
        "go: downloading example.com/x v1.0.0",  # noise on stdout is skipped
        ev("run", "TestA"), ev("output", "TestA", Output="=== RUN TestA\n"),
        ev("pass", "TestA", Elapsed=0.5),
        ev("run", "TestB"), ev("run", "TestB/sub"),
        ev("output", "TestB/sub", Output="    b_test.go:9: want 1, got 2\n"),
        ev("fail", "TestB/sub", Elapsed=0.1), ev("fail", "TestB", Elapsed=0.2),
        ev("skip", "TestC"), ev("fail", Elapsed=1.0),
        ev("skip", pkg="example.com/nofiles"),  # package without test files: no case
    ])  # fmt: skip
    cases = parse_go_test_json(text)
    by_name = {c.name: c for c in cases}
    assert sorted(by_name) == ["TestA", "TestB", "TestB/sub", "TestC"]
    assert [by_name[n].status for n in ("TestA", "TestB/sub", "TestC")] == [
        "passed", "failed", "skipped"]  # fmt: skip
    assert by_name["TestA"].duration_s == 0.5
    assert "want 1, got 2" in by_name["TestB/sub"].output
    assert by_name["TestA"].output == ""  # only failures carry output
    assert by_name["TestB/sub"].full_name == f"{PKG}.TestB/sub"


def test_a_package_that_fails_without_a_failed_test_is_a_failure() -> None:
    build = "\n".join(
        [
            ev("output", pkg="example.com/broken", Output="# example.com/broken\n"),
            ev("output", pkg="example.com/broken", Output="x.go:3:1: syntax error\n"),
            ev("fail", pkg="example.com/broken", Elapsed=0.0),
        ]
    )
    (case,) = parse_go_test_json(build)
    assert (case.suite, case.name, case.status) == ("example.com/broken", "(package)", "failed")
    assert "syntax error" in case.output


def test_go_timeout_panic_fails_the_test_that_was_running() -> None:
    text = "\n".join([
        ev("run", "TestFast"), ev("pass", "TestFast", Elapsed=0.1),
        ev("run", "TestSlow"),
        ev("output", Output="panic: test timed out after 2m0s\n"),
        ev("fail", Elapsed=120.0),
    ])  # fmt: skip
    cases = {c.name: c for c in parse_go_test_json(text)}
    assert cases["TestSlow"].status == "failed"
    assert "did not finish" in cases["TestSlow"].output
    assert "timed out after 2m0s" in cases["TestSlow"].output
    assert "(package)" not in cases  # the package failure is explained by TestSlow


def test_a_stopped_stream_fails_the_tests_still_running() -> None:
    text = "\n".join([ev("run", "TestA"), ev("pass", "TestA"), ev("run", "TestHang")])
    assert [c.name for c in parse_go_test_json(text, ended=True)] == ["TestA"]
    stopped = {c.name: c.status for c in parse_go_test_json(text, ended=False)}
    assert stopped == {"TestA": "passed", "TestHang": "failed"}


def test_output_that_is_not_go_json_is_refused() -> None:
    with pytest.raises(SuiteFormatError, match="-json"):
        parse_go_test_json("--- FAIL: TestA (0.00s)\nFAIL\n")
    assert parse_go_test_json("") == []


# --------------------------------------------------------------------------- JUnit XML


JUNIT_DOC = """<?xml version="1.0"?>
<testsuites>
  <testsuite name="outer">
    <testcase classname="pkg.A" name="ok" time="0.25"/>
    <testcase classname="pkg.A" name="bad" time="x"><failure message="boom">line 1
line 2</failure></testcase>
    <testcase name="crashed"><error message="fixture">Traceback</error></testcase>
    <testcase classname="pkg.B" name="later"><skipped/></testcase>
  </testsuite>
  <testsuite name="second"><testcase classname="pkg.C" name="ok2"/></testsuite>
</testsuites>"""


def test_junit_reads_failures_errors_and_skips() -> None:
    cases = {c.full_name: c for c in parse_junit_xml(JUNIT_DOC)}
    assert {k: c.status for k, c in cases.items()} == {
        "pkg.A.ok": "passed", "pkg.A.bad": "failed", "outer.crashed": "failed",
        "pkg.B.later": "skipped", "pkg.C.ok2": "passed",
    }  # fmt: skip
    assert cases["pkg.A.ok"].duration_s == 0.25 and cases["pkg.A.bad"].duration_s is None
    assert "boom" in cases["pkg.A.bad"].output and "line 2" in cases["pkg.A.bad"].output


def test_a_lone_testsuite_root_is_read_and_bad_xml_refused() -> None:
    lone = '<testsuite name="t"><testcase classname="c" name="n"/></testsuite>'
    assert [c.full_name for c in parse_junit_xml(lone)] == ["c.n"]
    with pytest.raises(SuiteFormatError, match="not valid JUnit XML"):
        parse_junit_xml("<testsuites><testsuite")
    with pytest.raises(SuiteFormatError, match="root element is <html>"):
        parse_junit_xml("<html/>")


# --------------------------------------------------------------------------- mapping to BRs


def test_tests_are_counted_per_requirement_once_each() -> None:
    cases = parse_junit_xml(JUNIT_DOC)
    patterns = {r"pkg\.A\.": "BR-PA-003", r"\.ok": "BR-PA-003", "later": "BR-PA-011",
                "nothing-matches": "BR-PA-001"}  # fmt: skip
    out = by_requirement(cases, patterns)
    br3 = out["requirements"]["BR-PA-003"]
    # pkg.A.ok matches two patterns of BR-PA-003 and counts once; pkg.C.ok2 matches one
    assert (br3["passed"], br3["failed"], br3["skipped"]) == (2, 1, 0)
    assert br3["failed_tests"] == ["pkg.A.bad"]
    assert out["requirements"]["BR-PA-011"]["skipped"] == 1
    assert out["requirements"]["BR-PA-001"]["note"] == "no test matched its patterns"
    assert out["unmapped"] == {"passed": 0, "failed": 1, "skipped": 0}  # outer.crashed


# --------------------------------------------------------------------------- the runner


def test_a_failing_go_suite_fails_with_exact_counts_and_logs(tmp_path: Path) -> None:
    s = suite(
        command=[*GO, "fail"],
        requirements={"Concurrent": "BR-PA-004", "AlertProcessing_": "BR-PA-003"},
    )
    lines: list[str] = []
    target = {"KUBETEST_TARGET_URL": "http://127.0.0.1:1/x"}
    run = run_suite(
        s, base_dir=tmp_path, log_dir=tmp_path / "suites", env=target, progress=lines.append
    )
    assert run.format == "go-json" and run.exit_code == 1
    assert run.counts() == {"passed": 2, "failed": 2, "skipped": 1}
    req = run.requirement(s.requirements)
    assert req.status == "FAIL" and req.id == "SUITE:s"
    assert req.measured == pytest.approx(50.0)
    assert "2 of 5 tests failed" in req.details["reasons"]
    mapped = req.details["by_requirement"]["requirements"]
    assert (mapped["BR-PA-004"]["failed"], mapped["BR-PA-003"]["passed"]) == (2, 2)
    stdout = (tmp_path / req.details["logs"]["stdout"]).read_text()
    assert "target=http://127.0.0.1:1/x" in stdout  # the suite sees where load goes
    assert any("2 passed, 2 failed, 1 skipped" in ln for ln in lines)


def test_a_passing_go_suite_passes(tmp_path: Path) -> None:
    run = run_suite(suite(command=[*GO, "pass"]), base_dir=tmp_path, log_dir=tmp_path)
    assert run.verdict() == ("PASS", [])
    assert run.counts() == {"passed": 4, "failed": 0, "skipped": 1}


def test_junit_file_under_cwd_is_read_and_kept(tmp_path: Path) -> None:
    work = tmp_path / "svc"
    work.mkdir()
    # a shell command, as typed in a terminal, relative cwd and junit_path
    cmd = f"{sys.executable} {SCRIPTS / 'fake_junit.py'} pass out/report.xml"
    (work / "out").mkdir()
    s = suite(command=cmd, cwd="svc", junit_path="out/report.xml")
    run = run_suite(s, base_dir=tmp_path, log_dir=tmp_path / "suites")
    assert (run.format, run.exit_code) == ("junit", 0)
    assert run.counts() == {"passed": 2, "failed": 0, "skipped": 1}
    assert run.verdict()[0] == "PASS"
    assert (tmp_path / run.logs["junit"]).read_text().count("<testcase") == 3


def test_junit_on_stdout_is_detected_and_failures_read(tmp_path: Path) -> None:
    run = run_suite(suite(command=[*JUNIT, "fail"]), base_dir=tmp_path, log_dir=tmp_path)
    assert run.format == "junit"
    assert run.counts() == {"passed": 2, "failed": 2, "skipped": 1}
    status, reasons = run.verdict()
    assert status == "FAIL" and reasons == ["2 of 5 tests failed"]
    assert "drain allowed outside allow-list" in run.failed_cases[0].output


def test_a_missing_junit_file_or_broken_xml_decides_nothing(tmp_path: Path) -> None:
    missing = run_suite(
        suite(command=["true"], junit_path="nope.xml"), base_dir=tmp_path, log_dir=tmp_path
    )
    assert missing.verdict() == (
        "INCONCLUSIVE",
        [f"no JUnit file at {tmp_path}/nope.xml (junit_path)"],
    )
    broken = run_suite(
        suite(command=[*JUNIT, "broken"], format="junit"), base_dir=tmp_path, log_dir=tmp_path
    )
    status, reasons = broken.verdict()
    assert status == "INCONCLUSIVE" and "not valid JUnit XML" in reasons[0]


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("silent-fail", "FAIL", "exited 2 with no test results"),
        ("empty", "INCONCLUSIVE", "the suite ran no test"),
    ],
)
def test_exit_codes_without_tests(tmp_path: Path, mode: str, status: str, reason: str) -> None:
    run = run_suite(suite(command=[*GO, mode]), base_dir=tmp_path, log_dir=tmp_path)
    got_status, reasons = run.verdict()
    assert got_status == status and reason in reasons[0]


def test_a_command_that_cannot_run_is_inconclusive(tmp_path: Path) -> None:
    shell = run_suite(
        suite(command="kubetest-no-such-tool --json"), base_dir=tmp_path, log_dir=tmp_path
    )
    status, reasons = shell.verdict()
    assert status == "INCONCLUSIVE" and "exit 127" in reasons[0]
    direct = run_suite(
        suite(command=["/nonexistent/go", "test"]), base_dir=tmp_path, log_dir=tmp_path
    )
    assert direct.verdict()[0] == "INCONCLUSIVE" and "/nonexistent/go" in direct.cannot_run
    nowhere = run_suite(suite(cwd="missing"), base_dir=tmp_path, log_dir=tmp_path)
    assert "is not a folder" in nowhere.verdict()[1][0]


def test_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    s = suite(command=[*GO, "hang"], timeout_s=1.5, env={"FAKE_GO_PID_FILE": str(pid_file)})
    run = run_suite(s, base_dir=tmp_path, log_dir=tmp_path)
    assert run.timed_out and run.exit_code is not None and run.exit_code < 0
    status, reasons = run.verdict()
    assert status == "FAIL" and reasons[0] == "timed out after 1.5 s (timeout_s)"
    hung = [c for c in run.cases if c.name == "TestSlowLLM"]
    assert hung and hung[0].status == "failed" and "stopped" in hung[0].output
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(grandchild):
        time.sleep(0.1)
    assert not _alive(grandchild), "the suite's grandchild outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its parent to reap it is gone for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z"


def test_secrets_in_a_suite_log_are_scrubbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SECRET_TOKEN", "tok-7f3a9c1e5b")
    run = run_suite(suite(command=[*GO, "pass"]), base_dir=tmp_path, log_dir=tmp_path / "suites",
                    secrets=["also-this-one"])  # fmt: skip
    text = (tmp_path / run.logs["stdout"]).read_text()
    assert "tok-7f3a9c1e5b" not in text and "token=***" in text
    assert run.verdict()[0] == "PASS"  # scrubbing did not break the events


# --------------------------------------------------------------------------- params, verdict


@pytest.mark.parametrize(
    ("suites", "message"),
    [
        ([], "needs at least one suite"),
        ([{"name": "a", "command": "x"}, {"name": "a", "command": "y"}], "used twice"),
        ([{"name": "a b", "command": "x"}], "external_suites.0.name"),
        ([{"name": "a", "command": "x", "requirements": {"(": "BR-1"}}], "not a regular expr"),
        ([{"name": "a", "command": "x", "env": {"API_TOKEN": "v"}}], "looks like a secret"),
        ([{"name": "a", "command": ""}], "external_suites.0.command"),
        ([{"name": "a", "command": "x", "timeout_s": 0}], "timeout_s"),
    ],
)
def test_bad_suite_params_are_one_line(suites: list[object], message: str) -> None:
    with pytest.raises(ParamsError, match=message) as err:
        parse_params({"external_suites": suites})
    assert "\n" not in str(err.value)


def test_a_failed_suite_is_a_no_go_and_an_inconclusive_one_costs_confidence() -> None:
    failed = Requirement("SUITE:go", 50.0, "%", "", "FAIL")
    unsure = Requirement("SUITE:junit", None, "%", "", "INCONCLUSIVE")
    verdict = decide(
        [failed, unsure], saturated=False, complete=True, max_sustainable_rate_per_min=5000
    )
    assert "the service's own suite go failed" in verdict.reasons
    assert "SUITE:junit inconclusive" in verdict.penalties
    ok = decide([Requirement("SUITE:go", 100.0, "%", "", "PASS")], saturated=False,
                complete=True, max_sustainable_rate_per_min=5000)  # fmt: skip
    assert not any("suite" in r for r in ok.reasons) and not any("SUITE" in k for k in ok.penalties)


# --------------------------------------------------------------------------- whole session


def test_a_session_runs_the_suites_and_reports_them(tmp_path: Path) -> None:
    from kubetest.session import run_session

    params = {
        "target": {"url": "embedded", "embedded": {"workers": 2, "service_ms": 5}},
        "external_suites": [
            {"name": "alert-processing", "command": [*GO, "fail"],
             "requirements": {"Concurrent": "BR-PA-004", "AlertProcessing": "BR-PA-003"}},
            {"name": "safety", "command": f"{JUNIT[0]} {JUNIT[1]} pass ../r.xml",
             "cwd": "svc", "junit_path": "../r.xml",
             "requirements": {"ConcurrentExecution": "BR-PA-011"}},
        ],
    }  # fmt: skip
    (tmp_path / "svc").mkdir()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = run_session(path, session="s", outputs=tmp_path / "out", echo=lambda _l: None)
    assert "KUBETEST_PROGRESS_FILE" not in os.environ  # the run put it back
    rows = {r["id"]: r for r in result.summary["requirements"]}
    assert rows["SUITE:alert-processing"]["status"] == "FAIL"
    assert rows["SUITE:safety"]["status"] == "PASS"
    assert result.summary["decision"] == "NO-GO"
    assert "the service's own suite alert-processing failed" in result.summary["decision_reasons"]
    session = result.session_dir
    assert (session / "suites" / "alert-processing.stdout.log").stat().st_size > 0
    assert (session / "suites" / "safety.junit.xml").exists()
    html = result.report.read_text() if result.report else ""
    assert "Service test suites" in html and "TestConcurrent/100_in_flight" in html
    assert "BR-PA-011" in html
    md = (session / "FINAL_TEST_REPORT.md").read_text()
    assert "| alert-processing | FAIL | 2 | 2 | 1 |" in md
    state = json.loads((session / "state.json").read_text())
    assert state["tests"]["EXT"]["state"] == "done"


# --------------------------------------------------------------------------- colour codes

COLOUR = [sys.executable, str(SCRIPTS / "colour_suite.py")]


@pytest.fixture
def forced_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook kernel's environment: colour forced on every child."""
    for name in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.usefixtures("forced_colour")
def test_forced_colour_is_not_passed_on_to_a_suite(tmp_path: Path) -> None:
    run = run_suite(suite(command=[*COLOUR, "if-forced"]), base_dir=tmp_path, log_dir=tmp_path)
    stdout = (tmp_path / "s.stdout.log").read_text()
    assert "env NO_COLOR=1" in stdout  # none of the forcing variables reached it
    assert "\x1b" not in stdout + (tmp_path / "s.stderr.log").read_text()
    assert run.failed_cases[0].output.endswith("colour_test.go:7: expected 5, got 6")


@pytest.mark.usefixtures("forced_colour")
def test_colour_codes_a_suite_prints_anyway_are_stripped_from_what_is_shown(tmp_path: Path) -> None:
    run = run_suite(suite(command=[*COLOUR, "always"]), base_dir=tmp_path, log_dir=tmp_path)
    assert "\x1b[31;1m" in (tmp_path / "s.stderr.log").read_text()  # the log stays as printed
    shown = json.dumps(run.requirement({}).as_dict())
    assert "\\u001b" not in shown and "[31;1m" not in shown and "[0m" not in shown
    assert run.failed_cases[0].output == (
        "--- FAIL: TestColour\n    colour_test.go:7: expected 5, got 6"
    )


def test_colour_codes_in_junit_and_in_a_cannot_run_line_are_stripped(tmp_path: Path) -> None:
    junit = run_suite(suite(command=[*COLOUR, "junit"]), base_dir=tmp_path, log_dir=tmp_path)
    assert junit.failed_cases[0].output == "AssertionError: drain refused\n> assert drained"
    cannot = run_suite(suite(command=[*COLOUR, "cannot-run"]), base_dir=tmp_path, log_dir=tmp_path)
    assert cannot.cannot_run == "exit 127: sh: gotest: not found"
