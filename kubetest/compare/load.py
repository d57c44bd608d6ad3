"""Two sessions read for a comparison, and whether they can be compared at all.

A difference is only evidence when both runs asked the same thing of the same service:
the same target and API profile, the same arrivals, the same rate and duration. Sessions
whose target or profile differ are refused (``NotComparableError``, one line naming each
param); a test whose own params differ (rate, duration, ...) is kept, its metrics marked
``not comparable`` with the params named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kubetest.engine.records import read_records
from kubetest.errors import KubetestError, NotComparableError
from kubetest.params import TESTS
from kubetest.results import StoredResult, Summary
from kubetest.summary import build_summary, read_results

#: Params that make two whole sessions incomparable when they differ: where the load went,
#: how answers are read, how arrivals are spaced, whether alerts repeat.
SESSION_KEYS = (
    "target.url",
    "target.api",
    "generator.arrivals",
    "alerts.unique",
    "alerts.workloads",
)


@dataclass(frozen=True)
class Load:
    """One load whose records can be compared: a test (A1, A2) or a sweep's phase."""

    label: str  # "A1", "B1 @ 600/min", "B2 @ 20 users"
    test: str
    records: Path
    offered_per_min: float | None = None  # open loop: the schedule's rate
    concurrency: int | None = None  # closed loop: the users


@dataclass
class Session:
    """A session folder as a comparison reads it."""

    path: Path
    summary: Summary
    results: dict[str, StoredResult]
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, as run

    @property
    def name(self) -> str:
        return self.path.name

    def loads(self) -> dict[str, Load]:
        """Every load of the session whose records are there, by label."""
        out: dict[str, Load] = {}
        for key, r in sorted(self.results.items()):
            if r.latency is not None and r.records and isinstance(r.load, dict):
                params = r.params or {}
                rate = params.get("rate_per_min")
                out[key] = Load(
                    key,
                    key,
                    self.path / r.records,
                    float(rate) if rate is not None else None,
                    params.get("concurrency"),
                )
            for row in r.phases or []:
                if not row.get("records") or row.get("status") == "generator-limited":
                    continue
                n, rate = row.get("concurrency"), row.get("offered_per_min")
                label = f"{key} @ {n} users" if n else f"{key} @ {rate:g}/min"
                out[label] = Load(
                    label,
                    key,
                    self.path / row["records"],
                    float(rate) if rate is not None else None,
                    n,
                )
        return {k: v for k, v in out.items() if v.records.exists()}

    def records(self, load: Load) -> pd.DataFrame:
        return read_records(load.records)


def read_session(path: Path) -> Session:
    """A session folder (``results/``, ``summary.json``, ``params.yaml``), or one line
    saying it is not one."""
    path = Path(path)
    if not (path / "results").is_dir():
        raise KubetestError(f"{path} is not a session folder (no results/): pass outputs/<session>")
    results = read_results(path)
    summary_path = path / "summary.json"
    if summary_path.is_file():
        summary = Summary.read(summary_path)
    else:  # a session opened by hand in JupyterLab has results but no summary yet
        summary = Summary.model_validate(build_summary(path, complete=True))
    params: dict[str, Any] = {}
    if (path / "params.yaml").is_file():
        params = yaml.safe_load((path / "params.yaml").read_text()) or {}
    return Session(path.resolve(), summary, results, params)


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(doc, dict):
        return {prefix: doc}
    out: dict[str, Any] = {}
    for k, v in doc.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _get(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)  # type: ignore[assignment]
    return doc


def _shown(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def differences(base: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key (base → new)`` for every key whose value differs, flattened with dots."""
    fb, fn = _flat(base, prefix), _flat(new, prefix)
    return [
        f"{k} ({_shown(fb.get(k))} in BASE, {_shown(fn.get(k))} in NEW)"
        for k in sorted(set(fb) | set(fn))
        if fb.get(k) != fn.get(k)
    ]


def session_differences(base: Session, new: Session) -> list[str]:
    """The params that make the two sessions incomparable as a whole (``SESSION_KEYS``)."""
    if not base.params or not new.params:
        return []  # an older session without params.yaml: the tests' own params decide
    out: list[str] = []
    for key in SESSION_KEYS:
        b, n = _get(base.params, key), _get(new.params, key)
        if b != n:
            out += (
                differences({key: b}, {key: n})
                if not isinstance(b, dict)
                else differences(b or {}, n or {}, key)
            )
    return out


def test_differences(base: Session, new: Session, test: str) -> list[str]:
    """The test's own params (its section: rate, duration, ...) that differ."""
    section = _section_name(test)
    return differences(base.results[test].params or {}, new.results[test].params or {}, section)


def _section_name(test: str) -> str:
    return TESTS.get(test, test)


def check_comparable(base: Session, new: Session) -> None:
    """Refuse two sessions that measured different things, naming each param."""
    diffs = session_differences(base, new)
    if diffs:
        raise NotComparableError(
            f"{base.name} and {new.name} are not comparable: "
            + "; ".join(diffs)
            + ": compare sessions run against the same target with the same profile"
        )
    common = sorted(set(base.results) & set(new.results))
    if not common:
        raise NotComparableError(
            f"{base.name} and {new.name} have no test in common (BASE ran "
            f"{','.join(sorted(base.results)) or 'nothing'}, NEW ran "
            f"{','.join(sorted(new.results)) or 'nothing'}): run the same tests in both"
        )
    differing = {t: test_differences(base, new, t) for t in common}
    if all(differing.values()):
        raise NotComparableError(
            f"{base.name} and {new.name} are not comparable: every test in common ran with "
            "other params: "
            + "; ".join(d for t in common for d in differing[t])
            + ": run NEW with BASE's params"
        )
