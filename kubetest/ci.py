"""kubetest in CI: ``junit.xml`` (one testcase per requirement) and ``--fail-on``'s exit code.

Every CI system reads JUnit XML, so each session writes one beside ``summary.json``
(``summary.write_summary`` calls ``write_junit``): a requirement is a testcase, a FAIL a
``<failure>`` whose message carries the measured value and the criterion, an
INCONCLUSIVE an ``<error>`` with its reasons, a NOT_RUN ``<skipped>``. Written with the
standard library's ``xml.etree``, which escapes whatever a service said.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

from kubetest.analysis.validity import validity_of
from kubetest.analysis.verdicts import REQUIREMENTS

JUNIT_FILE = "junit.xml"
#: ``kubetest run --fail-on``: which outcome makes the run exit ``FAIL_EXIT``.
FAIL_ON = ("never", "nogo", "fail")
FAIL_EXIT = 3


def _measured(req: dict[str, Any]) -> str:
    value, unit = req.get("measured"), req.get("unit") or ""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nothing measured"
    text = f"measured {value:.4g} {unit}".rstrip()
    ci = (req.get("details") or {}).get("p95_ci")
    if ci and None not in ci:
        text += f" (95 % CI {ci[0]:.4g}–{ci[1]:.4g} {unit})".replace(" )", ")")
    return text


def _reasons(req: dict[str, Any]) -> list[str]:
    d = req.get("details") or {}
    return [str(r) for r in d.get("reasons") or ([d["reason"]] if d.get("reason") else [])]


def failure_message(req: dict[str, Any]) -> str:
    """One line: the status, the measured value, the criterion, and why."""
    parts = [f"{req['status']}: {_measured(req)}; criterion: {req.get('threshold') or '—'}"]
    if validity_of(req) not in ("—", "VALID"):
        parts.append(f"run validity {validity_of(req)}")
    parts += _reasons(req)
    return "; ".join(parts)


def _seconds(result: dict[str, Any] | None) -> float:
    try:
        started = datetime.fromisoformat(str((result or {})["started"]))
        finished = datetime.fromisoformat(str((result or {})["finished"]))
    except (KeyError, TypeError, ValueError):
        return 0.0
    return max(0.0, (finished - started).total_seconds())


def junit_xml(summary: dict[str, Any], results: dict[str, dict[str, Any]] | None = None) -> bytes:
    """``summary.json``'s requirements as a JUnit XML document (``results``: each test's
    result, by test key, for the testcases' durations)."""
    results = results or {}
    reqs = summary.get("requirements") or []
    suite = ET.Element("testsuite", name=f"kubetest {summary.get('session', '')}".strip())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for req in reqs:
        test = REQUIREMENTS.get(req["id"], ("", "", ""))[1]
        title = (req.get("details") or {}).get("title") or ""
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"kubetest.{test or 'session'}",
            name=f"{req['id']}: {title}".rstrip(": "),
            time=f"{_seconds(results.get(test)):.3f}",
        )
        counts["tests"] += 1
        status = req.get("status")
        if status == "FAIL":
            counts["failures"] += 1
            ET.SubElement(
                case, "failure", message=failure_message(req), type="FAIL"
            ).text = failure_message(req)
        elif status == "INCONCLUSIVE":
            counts["errors"] += 1
            ET.SubElement(case, "error", message=failure_message(req), type="INCONCLUSIVE")
        elif status == "NOT_RUN":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="; ".join(_reasons(req)) or "not run")
        else:
            ET.SubElement(case, "system-out").text = failure_message(req)
    for key, value in counts.items():
        suite.set(key, str(value))
    props = ET.Element("properties")
    for name in ("decision", "confidence", "complete"):
        ET.SubElement(props, "property", name=name, value=str(summary.get(name)))
    suite.insert(0, props)
    root = ET.Element("testsuites", name="kubetest", **{k: suite.get(k, "0") for k in counts})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(session_dir: Path, summary: dict[str, Any], results: dict[str, Any]) -> Path:
    """``junit.xml`` in the session folder (written whole, then renamed into place)."""
    path = Path(session_dir) / JUNIT_FILE
    tmp = path.with_suffix(".xml.tmp")
    tmp.write_bytes(junit_xml(summary, results))
    tmp.replace(path)
    return path


def failing(summary: dict[str, Any], fail_on: str) -> str | None:
    """Why ``kubetest run --fail-on FAIL_ON`` exits ``FAIL_EXIT``, or None.

    ``nogo``: the decision is NO-GO. ``fail``: any requirement FAIL, any test's run
    INVALID, or a test notebook that failed (it measured nothing). ``never``: None."""
    if fail_on == "nogo" and summary.get("decision") == "NO-GO":
        return "decision NO-GO: " + "; ".join(summary.get("decision_reasons") or [])
    if fail_on != "fail":
        return None
    why = [f"{r['id']} FAIL" for r in summary.get("requirements") or [] if r["status"] == "FAIL"]
    tests = (summary.get("validity") or {}).get("tests") or {}
    why += [f"{t} INVALID" for t, v in tests.items() if (v or {}).get("status") == "INVALID"]
    why += [f"{t} notebook failed" for t in summary.get("failures") or {}]
    return ", ".join(why) or None
