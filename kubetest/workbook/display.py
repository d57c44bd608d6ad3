"""Small HTML views for notebooks and the report: verdict badges and BR tables."""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
from IPython.display import HTML

from kubetest.analysis.validity import validity_of
from kubetest.analysis.verdicts import Requirement


def fmt_measured(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit == "%":
        return f"{value:.3f} %"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:,.0f} {unit}".strip()  # counts and rates: whole numbers


def badge(status: str) -> str:
    return f'<span class="kt-{html.escape(status)}">{html.escape(status)}</span>'


def requirement_card(req: Requirement | dict[str, Any]) -> HTML:
    """One verdict: status, measured value with its CI, threshold, what it was judged on."""
    r = req.as_dict() if isinstance(req, Requirement) else req
    d = r.get("details", {})
    ci = d.get("p95_ci")
    ci_text = f" (95 % CI {ci[0]:.3f}–{ci[1]:.3f} {r['unit']})" if ci and None not in ci else ""
    lines = [
        f"<h3>{html.escape(r['id'])}: {badge(r['status'])}</h3>",
        f"<p>Measured <b>{fmt_measured(r.get('measured'), r['unit'])}</b>{ci_text}; "
        f"criterion: {html.escape(r.get('threshold') or '—')}.</p>",
    ]
    if d.get("judged_on"):
        lines.append(f"<p>Judged on: {html.escape(d['judged_on'])}.</p>")
    if validity_of(r) != "—":  # the run behind it (reasons below when not VALID)
        lines.append(f"<p>Run validity: {badge(validity_of(r))}</p>")
    if d.get("success_rate") is not None:
        lo, hi = d.get("success_rate_ci", [None, None])
        sr = f"{d['success_rate']:.2%}" + (
            f" (95 % CI {lo:.2%}–{hi:.2%})" if lo is not None else ""
        )
        lines.append(f"<p>Success rate (accepted only): {sr}</p>")
    for reason in d.get("reasons", []) or ([d["reason"]] if d.get("reason") else []):
        lines.append(f"<p><i>{html.escape(reason)}</i></p>")
    return HTML("\n".join(lines))


def interval(r: dict[str, Any]) -> tuple[float, float] | None:
    """The measured value's interval in its own unit: a 95 % CI for latencies and rates,
    the probe-resolution bounds for availability."""
    d = r.get("details", {})
    if d.get("p95_ci") and None not in d["p95_ci"]:
        return d["p95_ci"][0], d["p95_ci"][1]
    if d.get("downtime_bounds_s") and d.get("window_s"):
        low_s, high_s = d["downtime_bounds_s"]
        return 100 * (1 - high_s / d["window_s"]), 100 * (1 - low_s / d["window_s"])
    if r.get("unit") == "%" and d.get("success_rate_ci") and None not in d["success_rate_ci"]:
        return 100 * d["success_rate_ci"][0], 100 * d["success_rate_ci"][1]
    return None


def requirements_frame(requirements: list[dict[str, Any]]) -> pd.DataFrame:
    """The BR compliance table: requirement, measured value (with CI), criterion, status,
    and the validity of the run it was judged on."""
    rows = []
    for r in requirements:
        d = r.get("details", {})
        measured = fmt_measured(r.get("measured"), r.get("unit", ""))
        ci = interval(r)
        if ci is not None:
            measured += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        rows.append(
            {
                "requirement": r["id"],
                "what": d.get("title", ""),
                "measured [95 % CI]": measured,
                "criterion": r.get("threshold") or "—",
                "judged on": d.get("judged_on", "—"),
                "status": r["status"],
                "validity": validity_of(r),
                "samples": d.get("samples", ""),
                "note": "; ".join(
                    d.get("reasons", []) or ([d["reason"]] if d.get("reason") else [])
                ),
            }
        )
    return pd.DataFrame(rows)


def _cell_html(value: Any) -> str:
    """One table cell as escaped text: what a service or suite said is never markup."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return html.escape(str(value))


def escaped_table(frame: pd.DataFrame, badges: tuple[str, ...] = ("status", "validity")) -> str:
    """A frame as an HTML table with every cell escaped, ``badges`` columns as badges.

    ``to_html(escape=False)`` is needed for the badges; every other cell is escaped here,
    so a ``<script>`` in a suite's stderr or a service's error shows as text.
    """
    frame = frame.astype(object)
    for col in frame.columns:
        frame[col] = frame[col].map(badge if col in badges else _cell_html)
    return frame.to_html(index=False, escape=False, na_rep="—")


def requirements_html(requirements: list[dict[str, Any]]) -> HTML:
    return HTML(escaped_table(requirements_frame(requirements).astype(str)))
