"""The service's own suites (the guide's Step 1a), run and read for the report.

Each suite of ``external_suites`` runs as a command in the session (logs under
``suites/``), its ``go test -json`` or JUnit results become a ``SUITE:<name>`` row of the
summary, and its tests are tallied per business requirement through the suite's
``requirements`` patterns. The suites see ``KUBETEST_TARGET_URL`` (where this session
sends load) and ``KUBETEST_SESSION_DIR``; secrets come from the caller's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kubetest.analysis.verdicts import Requirement
from kubetest.checks import env_secrets
from kubetest.engine.progress import session_note
from kubetest.suites.runner import SuiteRun, run_suite
from kubetest.workbook.context import TestContext, result_head

LOG_DIR = "suites"


@dataclass
class SuitesResult:
    runs: list[SuiteRun]
    requirements: list[Requirement]

    @property
    def table(self) -> pd.DataFrame:
        """One row per suite: status, counts, exit code, how long it took."""
        rows = [suite_row(r.as_dict()) for r in self.requirements]
        return pd.DataFrame(rows, columns=SUITE_COLUMNS)

    @property
    def by_requirement(self) -> pd.DataFrame:
        return by_requirement_frame([r.as_dict() for r in self.requirements])

    @property
    def failures(self) -> pd.DataFrame:
        return failures_frame([r.as_dict() for r in self.requirements])

    @property
    def verdict(self) -> str:
        failed = [r.id for r in self.requirements if r.status != "PASS"]
        if not self.requirements:
            return "no suite configured: add external_suites to the params"
        if not failed:
            return f"PASS: all {len(self.requirements)} suites passed"
        return "NOT PASSED: " + ", ".join(
            f"{r.id} {r.status}" for r in self.requirements if r.status != "PASS"
        )


SUITE_COLUMNS = ["suite", "status", "passed", "failed", "skipped", "format", "exit code",
                 "duration (s)", "why"]  # fmt: skip


def suite_row(req: dict[str, Any]) -> dict[str, Any]:
    d = req.get("details", {})
    counts = d.get("counts", {})
    return {
        "suite": req["id"].split(":", 1)[-1],
        "status": req["status"],
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "format": d.get("format", ""),
        "exit code": d.get("exit_code"),
        "duration (s)": d.get("duration_s"),
        "why": "; ".join(d.get("reasons") or []),
    }


def by_requirement_frame(requirements: list[dict[str, Any]]) -> pd.DataFrame:
    """Per mapped BR and suite: passed / failed / skipped tests, and which failed."""
    rows = []
    for req in requirements:
        mapped = req.get("details", {}).get("by_requirement") or {}
        suite = req["id"].split(":", 1)[-1]
        for br, c in (mapped.get("requirements") or {}).items():
            rows.append({
                "requirement": br, "suite": suite, "passed": c["passed"],
                "failed": c["failed"], "skipped": c["skipped"],
                "failing tests": ", ".join(c.get("failed_tests", [])[:5])
                + (" …" if len(c.get("failed_tests", [])) > 5 else ""),
                "note": c.get("note", ""),
            })  # fmt: skip
        unmapped = mapped.get("unmapped") or {}
        if any(unmapped.values()):
            rows.append({"requirement": "(no BR mapped)", "suite": suite, **unmapped,
                         "failing tests": "", "note": ""})  # fmt: skip
    columns = ["requirement", "suite", "passed", "failed", "skipped", "failing tests", "note"]
    return pd.DataFrame(rows, columns=columns).sort_values(["requirement", "suite"], kind="stable")


def failures_frame(requirements: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {"suite": req["id"].split(":", 1)[-1], "test": f["name"], "last output": f["output"]}
        for req in requirements
        for f in req.get("details", {}).get("failed_tests", [])
    ]
    return pd.DataFrame(rows, columns=["suite", "test", "last output"])


def _say(line: str) -> None:
    print(line, flush=True)
    session_note(line)


def run(ctx: TestContext) -> SuitesResult:
    """Run every configured suite in order; an interrupt keeps what finished and stops."""
    started = datetime.now(UTC)
    suites = ctx.section or []
    base_dir = ctx.params_path.parent if ctx.params_path else Path.cwd()
    env = {"KUBETEST_TARGET_URL": ctx.target_url, "KUBETEST_SESSION_DIR": str(ctx.session_dir)}
    runs: list[SuiteRun] = []
    requirements: list[Requirement] = []
    interrupted = False
    for suite in suites:
        one = run_suite(
            suite, base_dir=base_dir, log_dir=ctx.session_dir / LOG_DIR, env=env,
            secrets=env_secrets(ctx.params), progress=_say,
        )  # fmt: skip
        runs.append(one)
        requirements.append(one.requirement(suite.requirements))
        if one.interrupted:
            interrupted = True
            break
    ctx.save_result(
        {
            **result_head("The service's own suites", started, complete=not interrupted),
            "requirements": [r.as_dict() for r in requirements],
        }
    )
    if interrupted:
        raise KeyboardInterrupt
    return SuitesResult(runs, requirements)
