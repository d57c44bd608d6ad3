"""Reading a suite's results: ``go test -json`` events and JUnit XML, into one case list.

The guide's Step 1a runs the service's own Go integration suites and asks the reader to
"review the output for PASS/FAIL". Reading the machine formats instead gives counts a
report can carry: every test case with its outcome, and the tail of a failure's output.
Both readers are forgiving about what they cannot use (a non-JSON line, a stray element)
and strict about what decides a verdict: a test that started and never ended, or a package
that failed with no failed test (a build error, a panic, ``-timeout``), is a failure.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from kubetest.ansi import strip_ansi
from kubetest.errors import SuiteFormatError

CaseStatus = Literal["passed", "failed", "skipped"]

#: Lines of a failure's output kept with the case (the rest stays in the log).
OUTPUT_TAIL_LINES = 20


@dataclass(frozen=True)
class TestCase:
    """One test's outcome. ``suite`` is the Go package or the JUnit classname."""

    __test__ = False  # not a pytest class, despite the name

    suite: str
    name: str
    status: CaseStatus
    duration_s: float | None = None
    output: str = ""

    @property
    def full_name(self) -> str:
        """What ``requirements`` patterns match: ``suite.name`` (``pkg.TestX/sub``)."""
        return f"{self.suite}.{self.name}" if self.suite else self.name

    @property
    def short_name(self) -> str:
        """For tables: a Go package's last path element (``alert_processing.TestX``)."""
        return f"{self.suite.rsplit('/', 1)[-1]}.{self.name}" if self.suite else self.name


def _tail(lines: Iterable[str], n: int = OUTPUT_TAIL_LINES) -> str:
    """The last ``n`` non-blank lines, without colour codes (the report shows them as text)."""
    kept = [strip_ansi(ln).rstrip("\n") for ln in lines if strip_ansi(ln).strip()]
    return "\n".join(kept[-n:])


# --------------------------------------------------------------------------- go test -json


def go_events(text: str) -> list[dict[str, object]]:
    """The ``test2json`` events in ``text``; other lines (build noise on stdout) skipped."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "Action" in event:
            events.append(event)
    return events


def looks_like_go_json(text: str) -> bool:
    return bool(go_events(text))


def parse_go_test_json(text: str, *, ended: bool = True) -> list[TestCase]:
    """Cases from ``go test -json`` output.

    ``ended`` False means the command was stopped (timeout, interrupt): tests still
    running then are failures ("did not finish"), as Go itself reports on ``-timeout``.
    """
    events = go_events(text)
    if not events and text.strip():
        raise SuiteFormatError("no go test -json events in the output (was -json passed?)")
    output: dict[tuple[str, str], list[str]] = {}
    running: dict[tuple[str, str], None] = {}  # insertion-ordered set
    cases: list[TestCase] = []
    failed_packages: dict[str, list[str]] = {}
    for ev in events:
        pkg = str(ev.get("Package") or ev.get("ImportPath") or "")
        test = str(ev.get("Test") or "")
        key = (pkg, test)
        action = ev["Action"]
        if action in ("output", "build-output"):
            buf = output.setdefault(key if action == "output" else (pkg, ""), [])
            buf.append(str(ev.get("Output", "")))
            del buf[: -4 * OUTPUT_TAIL_LINES]  # bounded: a chatty test cannot eat memory
        elif action == "run" and test:
            running[key] = None
        elif action in ("pass", "fail", "skip") and test:
            running.pop(key, None)
            status: CaseStatus = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
            elapsed = ev.get("Elapsed")
            cases.append(
                TestCase(pkg, test, status,
                         float(elapsed) if isinstance(elapsed, int | float) else None,
                         _tail(output.pop(key, [])) if status == "failed" else "")
            )  # fmt: skip
        elif action in ("fail", "build-fail") and not test:
            failed_packages[pkg] = output.get((pkg, ""), [])
    for pkg, test in running:  # started, never ended: killed by -timeout, a panic, or us
        if ended and pkg not in failed_packages:
            continue  # a stream cut by the reader, not a failure we can attribute
        why = "did not finish" + ("" if ended else " (the suite was stopped)")
        tail = _tail([*output.get((pkg, test), []), *output.get((pkg, ""), [])])
        cases.append(TestCase(pkg, test, "failed", None, f"{why}\n{tail}".strip()))
    failed = {c.suite for c in cases if c.status == "failed"}
    for pkg, lines in failed_packages.items():
        if pkg not in failed:  # build failure, panic outside a test, TestMain exit
            cases.append(TestCase(pkg, "(package)", "failed", None, _tail(lines)))
    return cases


# --------------------------------------------------------------------------- JUnit XML


def parse_junit_xml(text: str) -> list[TestCase]:
    """Cases from JUnit XML (``<testsuites>`` or a lone ``<testsuite>``): pytest,
    gotestsum, go-junit-report, Maven Surefire and most CI tools write this shape."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SuiteFormatError(f"not valid JUnit XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise SuiteFormatError(f"not JUnit XML: the root element is <{root.tag}>")
    cases: list[TestCase] = []
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for case in suite.findall("testcase"):
            cases.append(_junit_case(case, suite.get("name", "")))
    return cases


def _junit_case(case: ET.Element, suite_name: str) -> TestCase:
    classname = case.get("classname") or suite_name
    try:
        duration = float(case.get("time", ""))
    except ValueError:
        duration = None
    problem = case.find("failure")
    if problem is None:
        problem = case.find("error")
    if problem is not None:
        message = problem.get("message", "")
        body = (problem.text or "").splitlines()
        return TestCase(
            classname, case.get("name", "?"), "failed", duration, _tail([message, *body])
        )
    if case.find("skipped") is not None:
        return TestCase(classname, case.get("name", "?"), "skipped", duration)
    return TestCase(classname, case.get("name", "?"), "passed", duration)


def looks_like_junit(text: str) -> bool:
    head = text.lstrip()[:512]
    return head.startswith("<") and ("<testsuite" in head or "<?xml" in head)
