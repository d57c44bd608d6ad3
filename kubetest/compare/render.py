"""compare.json, compare.html (offline, self-contained) and compare.md (a PR comment).

Whatever came from a session (test names, params, error texts, session names) is escaped
as the report escapes it: ``workbook.display.escaped_table`` and ``html.escape`` in the
HTML, ``report.markdown``'s ``_text``/``_table`` in the Markdown. Figures are inline PNGs.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from kubetest.compare import figures
from kubetest.compare.core import Comparison, loads_compared
from kubetest.compare.stats import IMPROVED, NOT_COMPARABLE, REGRESSED, point, windows
from kubetest.files import write_json
from kubetest.plots import figure_png
from kubetest.report.markdown import _bullets, _table, _text
from kubetest.workbook.display import escaped_table

FILES = ("compare.json", "compare.html", "compare.md")
HEADER = ["test", "metric", "base", "new", "change", "95 % CI of NEW − BASE", "verdict", "note"]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.kt-regressed { color: #b00020; font-weight: bold; }
.kt-improved { color: #1b7f3b; font-weight: bold; }
.overall { font-size: 1.3em; }
img { max-width: 100%; }
"""


#: How a metric's unit is written (any other unit: 4 significant digits and the unit).
_UNITS: dict[str, Callable[[float], str]] = {
    "s": lambda v: f"{v * 1000:.2f} ms",
    "fraction": lambda v: f"{v:.2%}",
    "%": lambda v: f"{v:.3f} %",
    "accepted/s": lambda v: f"{v:.2f}/s",
}


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, str):
        return value
    write = _UNITS.get(unit)
    return write(value) if write else f"{value:,.4g} {unit}".strip()


def _fmt_ci(ci: list[float] | None, unit: str) -> str:
    if not ci or any(v is None for v in ci):
        return "—"
    return f"[{_fmt(ci[0], unit)}, {_fmt(ci[1], unit)}]"


def rows_frame(c: Comparison) -> pd.DataFrame:
    """The metrics table as shown: values in their unit, change in %, the interval."""
    rows = []
    for m in c.metrics:
        change = m.get("change")
        rows.append(
            [
                m["test"],
                m["metric"],
                _fmt(m["base"], m["unit"]),
                _fmt(m["new"], m["unit"]),
                f"{change:+.1%}" if isinstance(change, float) and math.isfinite(change) else "—",
                _fmt_ci(m.get("ci"), m["unit"]),
                m["verdict"],
                m.get("reason", ""),
            ]
        )
    return pd.DataFrame(rows, columns=HEADER)


def _counts(c: Comparison) -> str:
    by = pd.Series([m["verdict"] for m in c.metrics]).value_counts()
    return ", ".join(f"{n} {v}" for v, n in by.items()) or "no metric in common"


def not_comparable(c: Comparison) -> list[str]:
    """Why each metric that is not comparable is not, once per test and reason."""
    lines = [
        f"{m['test']}: {m.get('reason', '')}" for m in c.metrics if m["verdict"] == NOT_COMPARABLE
    ]
    return list(dict.fromkeys(lines))


def offered_points(c: Comparison) -> dict[str, pd.DataFrame]:
    """p95 and throughput of every open-loop load, against its offered rate, per session."""
    out: dict[str, list[dict[str, float]]] = {c.base.name: [], c.new.name: []}
    for label, (lb, ln) in loads_compared(c).items():
        base_rec, new_rec = c.records[label]
        for name, load, rec in ((c.base.name, lb, base_rec), (c.new.name, ln, new_rec)):
            if load.offered_per_min is None or load.concurrency:
                continue
            win = windows(rec)
            out[name].append(
                {
                    "offered_per_min": load.offered_per_min,
                    "p95_ms": point(win, "p95") * 1000,
                    "throughput_per_min": point(win, "throughput_per_s") * 60,
                }
            )
    cols = ["offered_per_min", "p95_ms", "throughput_per_min"]
    return {k: pd.DataFrame(v, columns=cols) for k, v in out.items()}


def _img(fig: Figure | None, alt: str) -> str:
    if fig is None:
        return ""
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def render_html(c: Comparison) -> str:
    e = html.escape
    names = (f"BASE {c.base.name}", f"NEW {c.new.name}")
    doc = c.doc
    sessions = pd.DataFrame(
        [
            {
                "": "BASE",
                "session": d["session"],
                "started": d["started"],
                "decision": d["decision"],
                "validity": d["validity"],
                "tests": ",".join(d["tests"]),
            }
            for d in (doc["base"], doc["new"])
        ]
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>kubetest compare — {e(c.base.name)} → {e(c.new.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>kubetest compare: {e(c.base.name)} → {e(c.new.name)}</h1>",
        f'<p class="overall">Overall: <span class="kt-{e(c.overall.split()[0])}">'
        f"{e(c.overall)}</span> ({e(_counts(c))})</p>",
        f"<p>A metric <b>regressed</b> or <b>improved</b> when the 95 % interval of NEW − BASE "
        f"excludes 0 and the change exceeds {doc['min_effect']:.0%}. Method: "
        f"{e(doc['method'])}.</p>",
    ]
    sessions.iloc[1, 0] = "NEW"
    parts.append(escaped_table(sessions, badges=()))
    parts += ["<h2>Metrics</h2>", escaped_table(rows_frame(c), badges=("verdict",))]
    if not_comparable(c):
        parts.append(
            "<h2>Not comparable</h2><ul>"
            + "".join(f"<li>{e(line)}</li>" for line in not_comparable(c))
            + "</ul>"
        )
    if c.records:
        parts += [
            "<h2>Latency distributions</h2>",
            _img(figures.latency_cdfs(c.records, names), "latency CDFs"),
            "<h2>Latency over time</h2>",
            _img(figures.latency_over_time(c.records, names), "latency over time"),
        ]
        points = offered_points(c)
        fig = figures.against_offered_rate(
            {f"{k}": v for k, v in zip(names, points.values(), strict=True)}
        )
        if fig is not None:
            parts += [
                "<h2>Latency and throughput against offered rate</h2>",
                _img(fig, "against offered rate"),
            ]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(c: Comparison) -> str:
    doc = c.doc
    flagged = [m for m in c.metrics if m["verdict"] in (REGRESSED, IMPROVED)]
    lines = [
        f"## kubetest compare: {_text(c.base.name)} → {_text(c.new.name)}",
        "",
        f"**Overall: {_text(c.overall)}** ({_text(_counts(c))}). A metric regressed or "
        f"improved when the 95 % interval of NEW − BASE excludes 0 and the change exceeds "
        f"{doc['min_effect']:.0%}.",
        "",
    ]
    frame = rows_frame(c)
    if flagged:
        keep = [i for i, m in enumerate(c.metrics) if m["verdict"] in (REGRESSED, IMPROVED)]
        lines += ["### Changes", "", *_table(HEADER, frame.iloc[keep].values.tolist()), ""]
    lines += ["### Every metric", "", *_table(HEADER, frame.values.tolist()), ""]
    if not_comparable(c):
        lines += ["### Not comparable", "", *_bullets(not_comparable(c)), ""]
    lines.append(f"Method: {_text(doc['method'])}.")
    return "\n".join(lines) + "\n"


def write_comparison(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write the three files into ``out_dir``; their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    write_json(paths["compare.json"], c.doc)
    paths["compare.html"].write_text(render_html(c), encoding="utf-8")
    paths["compare.md"].write_text(render_markdown(c), encoding="utf-8")
    return paths
