"""Running one of the service's own suites: a bounded subprocess, its logs, its cases.

The command runs in its own process group with no stdin (CI has none), its stdout and
stderr streamed to files in the session (nothing lost if the run is interrupted), and is
stopped — the whole group, so ``go test``'s test binaries go too — at ``timeout_s`` or on
Ctrl-C. The logs are scrubbed of the secrets the environment holds before anyone reads
them from ``outputs/``. The suite runs without forced colour (``NO_COLOR=1``, no
``FORCE_COLOR``), and what the report shows of its output is stripped of colour codes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetest.analysis.verdicts import SUITE_PREFIX, Requirement, Status
from kubetest.ansi import strip_ansi, without_colour
from kubetest.engine.progress import SESSION_EVERY_S, Throttle
from kubetest.params import ExternalSuite
from kubetest.secrets import env_safety_net, redact
from kubetest.suites.formats import (
    SuiteFormatError,
    TestCase,
    go_events,
    looks_like_go_json,
    looks_like_junit,
    parse_go_test_json,
    parse_junit_xml,
)

#: Exit codes of a shell that could not run the command at all (not executable, not found).
CANNOT_RUN = (126, 127)
#: After SIGTERM, how long the group gets before SIGKILL.
KILL_GRACE_S = 5.0
POLL_S = 0.2

Progress = Callable[[str], None]


@dataclass
class SuiteRun:
    """What one suite did: how it ended, its cases, and where its logs are."""

    name: str
    command: str
    cwd: str
    format: str = "none"
    exit_code: int | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    interrupted: bool = False
    cannot_run: str = ""  # why the command never ran
    format_error: str = ""
    cases: list[TestCase] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # stream -> path in the session
    timeout_s: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "skipped": 0}
        for case in self.cases:
            out[case.status] += 1
        return out

    @property
    def failed_cases(self) -> list[TestCase]:
        return [c for c in self.cases if c.status == "failed"]

    def verdict(self) -> tuple[Status, list[str]]:
        """PASS only when the command exited 0 with at least one test and none failed."""
        failed = len(self.failed_cases)
        if self.interrupted:
            return "INCONCLUSIVE", ["the suite was interrupted"]
        if self.cannot_run:
            return "INCONCLUSIVE", [f"the command could not run: {self.cannot_run}"]
        reasons = []
        if self.timed_out:
            reasons.append(f"timed out after {self.timeout_s:g} s (timeout_s)")
        if failed:
            reasons.append(f"{failed} of {len(self.cases)} tests failed")
        if self.exit_code not in (0, None) and not failed and not self.timed_out:
            reasons.append(
                f"exited {self.exit_code}" + ("" if self.cases else " with no test results")
            )
        if reasons:
            return "FAIL", reasons
        if self.format_error:
            return "INCONCLUSIVE", [self.format_error]
        if not self.cases:
            return "INCONCLUSIVE", ["the suite ran no test (or its output format was not read)"]
        return "PASS", []

    def requirement(self, patterns: Mapping[str, str]) -> Requirement:
        """The suite as a summary row: ``SUITE:<name>``, pass rate in %, every test by BR."""
        status, reasons = self.verdict()
        counts = self.counts()
        decided = counts["passed"] + counts["failed"]
        measured = 100.0 * counts["passed"] / decided if decided else None
        details: dict[str, Any] = {
            "title": f"Service suite {self.name}",
            "judged_on": "the suite's own test results (" + self.format + ") and exit code",
            "command": self.command,
            "cwd": self.cwd,
            "format": self.format,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "timed_out": self.timed_out,
            "counts": counts,
            "samples": len(self.cases),
            "by_requirement": by_requirement(self.cases, patterns),
            "failed_tests": [
                {"name": c.short_name, "full_name": c.full_name, "output": c.output}
                for c in self.failed_cases[:50]
            ],
            "logs": self.logs,
            "reasons": reasons,
        }
        threshold = "every test passes and the command exits 0"
        return Requirement(f"{SUITE_PREFIX}{self.name}", measured, "%", threshold, status, details)


def by_requirement(cases: Iterable[TestCase], patterns: Mapping[str, str]) -> dict[str, Any]:
    """Per BR id: how many of the tests its patterns match passed, failed or were skipped.

    A test matched by several patterns of one BR counts once for it; ``unmapped`` holds
    the tests no pattern matched, so a reader sees what evidences nothing.
    """
    compiled = [(re.compile(p), br) for p, br in patterns.items()]
    out: dict[str, dict[str, Any]] = {}
    unmapped = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        brs = {br for rx, br in compiled if rx.search(case.full_name)}
        if not brs:
            unmapped[case.status] += 1
        for br in sorted(brs):
            row = out.setdefault(br, {"passed": 0, "failed": 0, "skipped": 0, "failed_tests": []})
            row[case.status] += 1
            if case.status == "failed":
                row["failed_tests"].append(case.short_name)
    for br in {br for _, br in compiled} - out.keys():
        out[br] = {"passed": 0, "failed": 0, "skipped": 0, "failed_tests": [],
                   "note": "no test matched its patterns"}  # fmt: skip
    return {"requirements": dict(sorted(out.items())), "unmapped": unmapped}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class _GoCounter:
    """Counts test results in a growing ``go test -json`` log, for the progress line."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, ""
        self.counts = {"pass": 0, "fail": 0, "skip": 0}

    def update(self) -> dict[str, int]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return self.counts
        self.offset += len(chunk)
        text = self.rest + chunk.decode("utf-8", "replace")
        text, _, self.rest = text.rpartition("\n")
        for ev in go_events(text):
            if ev.get("Test") and ev["Action"] in self.counts:
                self.counts[str(ev["Action"])] += 1
        return self.counts


def run_suite(
    suite: ExternalSuite,
    *,
    base_dir: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    progress: Progress | None = None,
    progress_every_s: float = SESSION_EVERY_S,
) -> SuiteRun:
    """Run ``suite`` to completion, its timeout, or Ctrl-C, and read its results.

    ``base_dir`` is the params file's folder (``cwd`` is relative to it); ``env`` is
    added to this process's environment, then the suite's own ``env``.
    """
    cwd = (base_dir / suite.cwd).resolve() if suite.cwd else base_dir.resolve()
    shown = suite.command if isinstance(suite.command, str) else " ".join(suite.command)
    run = SuiteRun(suite.name, shown, str(cwd), timeout_s=suite.timeout_s)
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = (log_dir / f"{suite.name}.{s}.log" for s in ("stdout", "stderr"))
    run.logs = {
        "stdout": f"{log_dir.name}/{out_path.name}",
        "stderr": f"{log_dir.name}/{err_path.name}",
    }
    # the notebook kernel forces colour (FORCE_COLOR=1): a suite's logs and messages are
    # read and shown as text, so they go without; the suite's own env still decides
    environ = {**without_colour({**os.environ, **(env or {})}), **suite.env}
    secrets = [*secrets, *env_safety_net(environ)]
    if not cwd.is_dir():
        run.cannot_run = f"cwd {cwd} is not a folder (cwd is relative to the params file)"
        return run
    argv = ["/bin/sh", "-c", suite.command] if isinstance(suite.command, str) else suite.command
    say = progress or (lambda _line: None)
    t0 = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=environ, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            run.cannot_run = f"{argv[0]}: {exc.strerror or exc}"
            return run
        counter, due = _GoCounter(out_path), Throttle(progress_every_s)
        say(f"{suite.name}: running {shown} (timeout {suite.timeout_s:g} s)")
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if now - t0 > suite.timeout_s:
                    run.timed_out = True
                    _kill_group(proc)
                    break
                if due():
                    c = counter.update()
                    tally = f", {c['pass']} passed, {c['fail']} failed" if any(c.values()) else ""
                    say(f"{suite.name}: {now - t0:.0f} s{tally}")
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            run.interrupted = True
            _kill_group(proc)
        run.exit_code = proc.returncode
        run.duration_s = time.monotonic() - t0
    stdout, stderr = _scrub(out_path, secrets), _scrub(err_path, secrets)
    if run.exit_code in CANNOT_RUN and not stdout.strip():
        last = [ln for ln in strip_ansi(stderr).splitlines() if ln.strip()]
        run.cannot_run = f"exit {run.exit_code}: {last[-1] if last else 'no message'}"
        return run
    _read_cases(run, suite, cwd, stdout, log_dir, secrets)
    n = run.counts()
    say(
        f"{suite.name}: exit {run.exit_code} after {run.duration_s:.0f} s; "
        f"{n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped"
    )
    return run


def _read_cases(
    run: SuiteRun, suite: ExternalSuite, cwd: Path, stdout: str, log_dir: Path, secrets: list[str]
) -> None:
    """Pick the format (``auto``: a JUnit file, else go events on stdout, else XML on
    stdout) and read the cases; a format problem is kept as a note, not raised."""
    ended = not (run.timed_out or run.interrupted)
    fmt = suite.format
    if fmt == "auto":
        if suite.junit_path:
            fmt = "junit"
        elif looks_like_go_json(stdout):
            fmt = "go-json"
        elif looks_like_junit(stdout):
            fmt = "junit"
        else:
            return
    run.format = fmt
    try:
        if fmt == "go-json":
            run.cases = parse_go_test_json(stdout, ended=ended)
            return
        text = stdout
        if suite.junit_path:
            src = cwd / suite.junit_path
            if not src.is_file():
                run.format_error = f"no JUnit file at {src} (junit_path)"
                return
            text = redact(src.read_text(errors="replace"), secrets)
            kept = log_dir / f"{suite.name}.junit.xml"
            kept.write_text(text)
            run.logs["junit"] = f"{log_dir.name}/{kept.name}"
        run.cases = parse_junit_xml(text)
    except SuiteFormatError as exc:
        run.format_error = f"could not read the {fmt} output: {exc}"


def _scrub(path: Path, secrets: list[str]) -> str:
    """Rewrite the log without the secrets (when it holds any); its clean text."""
    text = path.read_text(errors="replace")
    clean = redact(text, secrets)
    if clean != text:
        path.write_text(clean)
    return clean
