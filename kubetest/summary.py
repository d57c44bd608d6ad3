"""``summary.json``: the session's verdicts, built only from its result files.

Both ``kubetest run`` and ``kubetest report SESSION`` call ``build_summary`` so that a
report rebuilt later says exactly what the run said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetest.analysis.integrity import COUNT_KEYS, integrity_requirement
from kubetest.analysis.validity import Validity, combine
from kubetest.analysis.verdicts import (
    INTEGRITY_ID,
    RATE_REQUIREMENT_PER_MIN,
    REQUIREMENTS,
    Requirement,
    decide,
    not_run,
)
from kubetest.files import write_json


def read_results(session_dir: Path) -> dict[str, dict[str, Any]]:
    """Per-test result files, by test key (``A1`` ...). Unreadable files are skipped."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted((session_dir / "results").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        results[data.get("test", path.stem)] = data
    return results


def _requirement(data: dict[str, Any]) -> Requirement:
    return Requirement(
        id=data["id"], measured=data.get("measured"), unit=data.get("unit", ""),
        threshold=data.get("threshold", ""), status=data.get("status", "INCONCLUSIVE"),
        details=data.get("details", {}),
    )  # fmt: skip


def build_summary(
    session_dir: Path, *, complete: bool, failures: dict[str, str] | None = None
) -> dict[str, Any]:
    """Collect the requirements, capacity and generator health of a session.

    ``failures`` maps a test key to why its notebook failed: its BR becomes INCONCLUSIVE
    (it ran, but produced no verdict) rather than silently NOT_RUN.
    """
    failures = failures or {}
    results = read_results(session_dir)
    by_id: dict[str, Requirement] = {}
    for data in results.values():
        for req in data.get("requirements", []):
            by_id[req["id"]] = _requirement(req)
    requirements: list[Requirement] = []
    for br_id, (title, test, unit) in REQUIREMENTS.items():
        if br_id in by_id:
            requirements.append(by_id.pop(br_id))
        elif test in failures:
            requirements.append(
                Requirement(br_id, None, unit, "", "INCONCLUSIVE",
                            {"title": title, "reason": f"notebook failed: {failures[test]}"})
            )  # fmt: skip
        else:
            requirements.append(not_run(br_id))
    by_id.pop(INTEGRITY_ID, None)  # built from every test's check below, never from one
    requirements.extend(by_id.values())  # extra requirements after the four
    integrity_row = integrity_requirement(results, failures)
    requirements.append(integrity_row)

    loads = [r["load"] for r in results.values() if isinstance(r.get("load"), dict)]
    loads += [p for r in results.values() for p in r.get("phases_load", [])]
    # A saturated Phase B phase is not evidence (the sweep marks it and reruns or stops
    # there), so only load that judged something can make the generator the culprit.
    saturated = any(
        bool(ld.get("saturated")) and ld.get("phase_status", "judged") != "generator-limited"
        for ld in loads
    )
    lags = [ld["schedule_lag_p99"] for ld in loads if ld.get("schedule_lag_p99") is not None]
    capacity = {
        "max_sustainable_rate_per_min": None,
        "degradation_point_per_min": None,
        "knee_rate_per_min": None,
        "max_sustainable_concurrency": None,
    }
    for r in results.values():
        capacity.update(r.get("capacity", {}))
    # Over the reconciled tests only (so accepted = handled + lost - extra copies holds);
    # with none reconciled, accepted counts every load and the rest is unknown.
    integrity: dict[str, int | None] = {
        "accepted": sum(int(ld.get("outcomes", {}).get("accepted", 0)) for ld in loads),
        "handled": None, "lost": None, "duplicated": None, "unexpected": None,
    }  # fmt: skip
    if integrity_row.details.get("reconciled"):  # load tests and Phase B phases alike
        integrity = {k: int(integrity_row.details[k]) for k in COUNT_KEYS}
    complete = complete and not failures
    rate = capacity["max_sustainable_rate_per_min"]
    if capacity.get("max_sustainable_is_lower_bound") and rate is not None:
        # "at least X" below the requirement decides nothing: capacity stays unmeasured
        rate = None if rate < RATE_REQUIREMENT_PER_MIN else rate
    verdict = decide(
        requirements, saturated=saturated, complete=complete,
        max_sustainable_rate_per_min=rate,
    )  # fmt: skip
    # each load test's validity (kubetest.analysis.validity), and the worst of them
    validity = {test: Validity.from_dict(r["validity"]) for test, r in sorted(results.items())
                if isinstance(r.get("validity"), dict)}  # fmt: skip
    return {
        "session": session_dir.name,
        "complete": complete,
        "failures": failures,
        "tests_run": sorted(results),
        "validity": {**combine(validity).as_dict(),
                     "tests": {k: v.as_dict() for k, v in validity.items()}},  # fmt: skip
        "requirements": [r.as_dict() for r in requirements],
        "capacity": capacity,
        "generator": {"saturated": saturated, "schedule_lag_p99_s": max(lags) if lags else None},
        "integrity": integrity,
        "confidence": verdict.confidence,
        "confidence_penalties": verdict.penalties,
        "decision": verdict.decision,
        "decision_reasons": verdict.reasons,
    }


def write_summary(session_dir: Path, **kwargs: Any) -> dict[str, Any]:
    summary = build_summary(session_dir, **kwargs)
    write_json(session_dir / "summary.json", summary)
    return summary
