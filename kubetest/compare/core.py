"""``compare.json``: every metric of two sessions, its change, interval and verdict.

Records metrics (p50, p95, p99, success rate, throughput of each load in both sessions)
carry the block-bootstrap interval of ``compare.stats``. Capacity figures are known only
within a sweep's bracket (the last sustainable and the first unsustainable level) and
availability within its probes' resolution: their interval is every difference those
bounds allow. BR verdicts compare PASS and FAIL; anything else is not comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kubetest.analysis.verdicts import REQUIREMENTS
from kubetest.compare.load import Load, Session, check_comparable, read_session, test_differences
from kubetest.compare.stats import (
    CONFIDENCE,
    HIGHER_IS_WORSE,
    IMPROVED,
    MIN_EFFECT,
    NO_CHANGE,
    NOT_COMPARABLE,
    REGRESSED,
    Difference,
    bracket_difference,
    compare_runs,
    point,
    verdict,
    window_width,
    windows,
)
from kubetest.workbook.display import interval

METHOD = (
    "block bootstrap over time windows of each run's schedule ({resamples} resamples, "
    "seeded): the 95 % percentile interval of NEW − BASE; capacity and availability: "
    "every difference their bounds allow"
)
#: Capacity figures: (test, key of the figure, key of its upper bound, unit).
CAPACITY = (
    ("B1", "max_sustainable_rate_per_min", "first_unsustainable_rate_per_min", "alerts/min"),
    ("B1", "knee_rate_per_min", None, "alerts/min"),
    ("B2", "max_sustainable_concurrency", "first_unsustainable_concurrency", "requests"),
)
UNITS = {
    "p50": "s",
    "p95": "s",
    "p99": "s",
    "success_rate": "fraction",
    "throughput_per_s": "accepted/s",
}


@dataclass
class Comparison:
    """What ``kubetest compare`` found: the ``compare.json`` document, and the two sessions
    with their compared loads' records for the figures."""

    base: Session
    new: Session
    doc: dict[str, Any]
    records: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)

    @property
    def overall(self) -> str:
        return str(self.doc["overall"])

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return list(self.doc["metrics"])


def _row(
    test: str,
    metric: str,
    base: float | None,
    new: float | None,
    unit: str,
    ci: tuple[float, float] | None,
    verdict_: str,
    reason: str = "",
) -> dict[str, Any]:
    change = None
    if base is not None and new is not None and base and math.isfinite(base):
        change = (new - base) / abs(base)
    row = {
        "test": test,
        "metric": metric,
        "base": base,
        "new": new,
        "change": change,
        "ci": list(ci) if ci is not None else None,
        "verdict": verdict_,
        "unit": unit,
    }
    if reason:
        row["reason"] = reason
    return row


def _load_rows(label: str, diffs: dict[str, Difference], min_effect: float) -> list[dict[str, Any]]:
    return [
        _row(
            label,
            m,
            d.base,
            d.new,
            UNITS[m],
            d.ci,
            verdict(d.change, d.ci, HIGHER_IS_WORSE[m], min_effect),
        )
        for m, d in diffs.items()
    ]


def _incomparable_load_rows(
    label: str, base: pd.DataFrame, new: pd.DataFrame, reason: str
) -> list[dict[str, Any]]:
    wb, wn = windows(base), windows(new)
    return [
        _row(label, m, point(wb, m), point(wn, m), UNITS[m], None, NOT_COMPARABLE, reason)
        for m in HIGHER_IS_WORSE
    ]


def _bounds(
    cap: dict[str, Any], key: str, upper: str | None, phases: list[dict[str, Any]]
) -> tuple[float, float] | None:
    """Where a capacity figure lies: its bracket, or (a knee) between its tested neighbours."""
    value = cap.get(key)
    if value is None:
        return None
    if upper is not None:
        high = cap.get(upper)
        return float(value), float(high) if high is not None else math.inf
    rates = sorted(
        {float(p["offered_per_min"]) for p in phases if p.get("offered_per_min") is not None}
    )
    below = [r for r in rates if r < value]
    above = [r for r in rates if r > value]
    if not below and not above:
        return None
    return (below[-1] if below else float(value)), (above[0] if above else float(value))


def _capacity_rows(
    base: Session, new: Session, incomparable: dict[str, str], min_effect: float
) -> list[dict[str, Any]]:
    rows = []
    for test, key, upper, unit in CAPACITY:
        if test not in base.results or test not in new.results:
            continue
        rb, rn = base.results[test], new.results[test]
        cb, cn = rb.capacity or {}, rn.capacity or {}
        vb, vn = cb.get(key), cn.get(key)
        if vb is None and vn is None:
            continue
        if test in incomparable or vb is None or vn is None:
            why = incomparable.get(test) or f"not measured in {'BASE' if vb is None else 'NEW'}"
            rows.append(_row(test, key, vb, vn, unit, None, NOT_COMPARABLE, why))
            continue
        bb, bn = _bounds(cb, key, upper, rb.phases or []), _bounds(cn, key, upper, rn.phases or [])
        ci = bracket_difference(bb, bn) if bb and bn else None
        change = (vn - vb) / abs(vb) if vb else None
        reason = "" if ci else "no interval: one estimate per sweep, not judged"
        rows.append(
            _row(test, key, vb, vn, unit, ci, verdict(change, ci, False, min_effect), reason)
        )
    return rows


def _availability_row(
    base: Session, new: Session, incomparable: dict[str, str], min_effect: float
) -> list[dict[str, Any]]:
    reqs = [
        {r.id: r.as_dict() for r in s.summary.requirements}.get("BR-PA-001") for s in (base, new)
    ]
    rb, rn = reqs
    if not rb or not rn or rb.get("measured") is None or rn.get("measured") is None:
        return []
    vb, vn = float(rb["measured"]), float(rn["measured"])
    if "A3" in incomparable:
        return [_row("A3", "availability", vb, vn, "%", None, NOT_COMPARABLE, incomparable["A3"])]
    ib, in_ = interval(rb), interval(rn)
    ci = bracket_difference(ib, in_) if ib and in_ else None
    change = (vn - vb) / abs(vb) if vb else None
    # availability near 100 %: a relative change of 5 % is huge; any bounded drop counts
    return [
        _row(
            "A3", "availability", vb, vn, "%", ci, verdict(change, ci, False, min(min_effect, 1e-4))
        )
    ]


def _verdict_rows(
    base: Session, new: Session, incomparable: dict[str, str]
) -> list[dict[str, Any]]:
    sb = {r.id: r.status for r in base.summary.requirements}
    sn = {r.id: r.status for r in new.summary.requirements}
    rows = []
    for br in [b for b in sb if b in sn]:
        b, n = sb[br], sn[br]
        test = REQUIREMENTS.get(br, ("", "", ""))[1]
        if b == "NOT_RUN" and n == "NOT_RUN":
            continue
        reason = ""
        if test in incomparable:
            v, reason = NOT_COMPARABLE, incomparable[test]
        elif {b, n} <= {"PASS", "FAIL"}:
            v = NO_CHANGE if b == n else (REGRESSED if n == "FAIL" else IMPROVED)
        else:
            v, reason = NOT_COMPARABLE, f"{b} in BASE, {n} in NEW: only PASS and FAIL compare"
        row = {
            "test": br,
            "metric": "verdict",
            "base": b,
            "new": n,
            "change": None,
            "ci": None,
            "verdict": v,
            "unit": "",
        }
        if reason:
            row["reason"] = reason
        rows.append(row)
    return rows


def _about(s: Session) -> dict[str, Any]:
    started = sorted(r.started for r in s.results.values() if r.started)
    return {
        "session": s.name,
        "path": str(s.path),
        "started": started[0] if started else None,
        "decision": s.summary.decision,
        "validity": s.summary.validity.status,
        "tests": sorted(s.results),
    }


def overall(rows: list[dict[str, Any]]) -> str:
    """``regressed`` when any metric regressed, else ``improved`` when any improved."""
    verdicts = {r["verdict"] for r in rows}
    return REGRESSED if REGRESSED in verdicts else IMPROVED if IMPROVED in verdicts else NO_CHANGE


def compare_sessions(
    base_dir: Path,
    new_dir: Path,
    *,
    min_effect: float = MIN_EFFECT,
    window_s: float | None = None,
    resamples: int = 2_000,
) -> Comparison:
    """Compare two session folders (``NotComparableError`` when they measured different
    things)."""
    base, new = read_session(base_dir), read_session(new_dir)
    check_comparable(base, new)
    common = sorted(set(base.results) & set(new.results))
    incomparable = {
        t: "params differ: " + "; ".join(d) for t in common if (d := test_differences(base, new, t))
    }
    rows: list[dict[str, Any]] = []
    records: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    lb, ln = base.loads(), new.loads()
    widths: dict[str, float] = {}
    for label in [k for k in lb if k in ln]:
        test = lb[label].test
        db, dn = base.records(lb[label]), new.records(ln[label])
        records[label] = (db, dn)
        if test in incomparable:
            rows += _incomparable_load_rows(label, db, dn, incomparable[test])
            continue
        diffs = compare_runs(db, dn, width_s=window_s, resamples=resamples)
        widths[label] = window_s or max(window_width(_span(db)), window_width(_span(dn)))
        rows += _load_rows(label, diffs, min_effect)
    rows += _capacity_rows(base, new, incomparable, min_effect)
    rows += _availability_row(base, new, incomparable, min_effect)
    rows += _verdict_rows(base, new, incomparable)
    doc = {
        "base": _about(base),
        "new": _about(new),
        "min_effect": min_effect,
        "confidence": CONFIDENCE,
        "method": METHOD.format(resamples=resamples),
        "window_s": widths,
        "not_comparable": incomparable,
        "metrics": rows,
        "overall": overall(rows),
    }
    return Comparison(base, new, doc, records)


def _span(records: pd.DataFrame) -> float:
    return float(records["intended_s"].max()) if len(records) else 0.0


def loads_compared(c: Comparison) -> dict[str, tuple[Load, Load]]:
    """The loads of both sessions compared, by label (for the figures)."""
    lb, ln = c.base.loads(), c.new.loads()
    return {k: (lb[k], ln[k]) for k in c.records}
