"""``summary.json``: the session's verdicts, built only from its result files.

Both ``kubetest run`` and ``kubetest report SESSION`` call ``build_summary`` so that a
report rebuilt later says exactly what the run said.
"""

from __future__ import annotations

import sys
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
from kubetest.ci import write_junit
from kubetest.errors import ResultError
from kubetest.files import write_json
from kubetest.results import BrEntry, GeneratorHealth, StoredResult, Summary, load_result


def read_results(session_dir: Path) -> dict[str, StoredResult]:
    """Per-test result files (``kubetest.results``), by test key (``A1`` ...). Files that
    are unreadable or not results are skipped, and said so on stderr."""
    results: dict[str, StoredResult] = {}
    for path in sorted((session_dir / "results").glob("*.json")):
        try:
            data = load_result(path)
        except ResultError as exc:
            sys.stderr.write(f"kubetest: skipped {exc}\n")
            continue
        results[data.test or path.stem] = data
    return results


def _requirement(entry: BrEntry) -> Requirement:
    return Requirement(
        id=entry.id, measured=entry.measured, unit=entry.unit, threshold=entry.threshold,
        status=entry.status, details=dict(entry.details),
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
    for result in results.values():
        for req in result.requirements:
            by_id[req.id] = _requirement(req)
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
    raw = {test: r.as_dict() for test, r in results.items()}
    integrity_row = integrity_requirement(raw, failures)
    requirements.append(integrity_row)

    # A saturated Phase B phase is not evidence (the sweep marks it and reruns or stops
    # there), so only load that judged something can make the generator the culprit
    # (LoadHealth.judged_saturated). The engine's own percentiles are never read here:
    # verdicts come from each test's ``latency`` (kubetest.results).
    loads = [ld for r in results.values() for ld in r.loads()]
    generator = GeneratorHealth.of(loads)
    capacity: dict[str, Any] = {
        "max_sustainable_rate_per_min": None,
        "degradation_point_per_min": None,
        "knee_rate_per_min": None,
        "max_sustainable_concurrency": None,
    }
    for r in results.values():
        capacity.update(r.capacity or {})
    # Over the reconciled tests only (so accepted = handled + lost - extra copies holds);
    # with none reconciled, accepted counts every load and the rest is unknown.
    integrity: dict[str, int | None] = {
        "accepted": sum(ld.accepted for ld in loads),
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
        requirements,
        saturated=generator.saturated,
        complete=complete,
        max_sustainable_rate_per_min=rate,
    )
    # each load test's (and A3's) validity (kubetest.analysis.validity), and the worst
    validity = {test: Validity.from_dict(r.validity.as_dict())
                for test, r in sorted(results.items()) if r.validity is not None}  # fmt: skip
    summary = Summary(
        session=session_dir.name,
        complete=complete,
        failures=failures,
        tests_run=sorted(results),
        validity={
            **combine(validity).as_dict(),
            "tests": {k: v.as_dict() for k, v in validity.items()},
        },
        requirements=[r.as_dict() for r in requirements],
        capacity=capacity,
        generator=generator,
        integrity=integrity,
        confidence=verdict.confidence,
        confidence_penalties=verdict.penalties,
        decision=verdict.decision,
        decision_reasons=verdict.reasons,
    )
    return summary.as_dict()


def write_summary(session_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """``summary.json`` and, from it, ``junit.xml`` (``kubetest.ci``): every session's."""
    summary = build_summary(session_dir, **kwargs)
    write_json(session_dir / "summary.json", summary)
    results = {test: r.as_dict() for test, r in read_results(session_dir).items()}
    write_junit(session_dir, summary, results)
    return summary
