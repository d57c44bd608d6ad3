"""What ``kubetest load`` says on the terminal: the plan before, the summary after, and one
warning when the service mostly refused, so a run never ends in a silent bad number.

Units are spelled out in every line (alerts/min, minutes) because the guide's generator
takes per-minute rates and minutes, and a user reading "60, 10" expects neither.
"""

from __future__ import annotations

from typing import Any

from kubetest.engine.client import GENERATOR_ERRORS

#: Below this share of answers accepted (or duplicates) ``kubetest load`` warns and exits 1.
MIN_GOOD_SHARE = 0.5


def _num(value: float) -> str:
    """A rate or duration as typed: 600, 0.5, 12.25 (no trailing zeros)."""
    if 0 < abs(value) < 0.01:
        return f"{value:g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def header_line(url: str, rate_per_min: float, duration_min: float, alerts: int) -> str:
    """The first line: what will be sent, in the units the arguments were read in."""
    return (
        f"kubetest load: {_num(rate_per_min)} alerts/min for {_num(duration_min)} min "
        f"({alerts:,} alerts) to {url}"
    )


def _latency(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def summary_line(doc: dict[str, Any]) -> str:
    """The last word on a run: sent, success (a percentage), p50/p95/p99, achieved rate."""
    rate = doc.get("success_rate")
    success = "-" if rate is None else f"{rate * 100:.1f} %"
    achieved = doc.get("achieved_rate_per_min")
    pace = "-" if achieved is None else f"{_num(achieved)} alerts/min"
    return (
        f"kubetest load: sent {doc['sent_count']:,}, success {success}, "
        f"p50 {_latency(doc.get('p50'))}, p95 {_latency(doc.get('p95'))}, "
        f"p99 {_latency(doc.get('p99'))}, achieved {pace}"
    )


def low_success_warning(doc: dict[str, Any]) -> str | None:
    """One line when fewer than ``MIN_GOOD_SHARE`` of the answers were accepted or
    duplicates (``--no-unique`` runs expect duplicates), naming what came back instead;
    ``None`` for a run that mostly worked or sent nothing."""
    outcomes: dict[str, int] = doc.get("outcomes") or {}  # answers and network errors
    errors: dict[str, int] = doc.get("errors") or {}
    answered = sum(outcomes.values())
    if not answered:
        if not doc.get("sent_count"):
            return None
        return (f"kubetest load: warning: none of {doc['sent_count']:,} alerts got an "
                "answer: check the URL and that the service is up")  # fmt: skip
    good = outcomes.get("accepted", 0) + outcomes.get("duplicate", 0)
    if good / answered >= MIN_GOOD_SHARE:
        return None
    service = {k: n for k, n in errors.items() if k not in GENERATOR_ERRORS}
    worst = sorted(service.items(), key=lambda kv: -kv[1])[:3]
    why = ", ".join(f"{name} {n:,}" for name, n in worst if n) or "no error class"
    return (
        f"kubetest load: warning: only {good / answered * 100:.1f} % of {answered:,} requests "
        f"were accepted or duplicates (below {MIN_GOOD_SHARE * 100:.0f} %): {why}; see the records"
    )
