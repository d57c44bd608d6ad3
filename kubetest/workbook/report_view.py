"""What the report notebook shows, computed from a session folder's files only."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from IPython.display import HTML

from kubetest.analysis.verdicts import DECISION_RULE
from kubetest.summary import read_results
from kubetest.workbook.display import fmt_measured, requirements_html

SECRET_HINTS = ("password", "token", "secret", "dsn", "kubeconfig")


def redact(obj: Any, key: str = "") -> Any:
    """Params as shown in the report: values of secret-looking keys become ``***``.

    Keys that only *name* an env var (``..._env``) are kept: they are not secrets.
    """
    if isinstance(obj, dict):
        return {k: redact(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, key) for v in obj]
    if obj is not None and any(h in key.lower() for h in SECRET_HINTS) and not key.endswith("_env"):
        return "***"
    return obj


@dataclass
class ReportView:
    session_dir: Path
    summary: dict[str, Any]
    results: dict[str, dict[str, Any]]
    params: dict[str, Any]

    @classmethod
    def load(cls, session_dir: str | Path) -> ReportView:
        session = Path(session_dir)
        summary_path = session / "summary.json"
        if not summary_path.exists():
            raise FileNotFoundError(f"{summary_path} not found: run `kubetest run` first")
        params_path = session / "params.yaml"
        params = yaml.safe_load(params_path.read_text()) if params_path.exists() else {}
        return cls(
            session, json.loads(summary_path.read_text()), read_results(session), params or {}
        )

    def executive_summary(self) -> HTML:
        s = self.summary
        reqs = s["requirements"]
        counts = pd.Series([r["status"] for r in reqs]).value_counts().to_dict()
        status_text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        failing = [r["id"] for r in reqs if r["status"] in ("FAIL", "INCONCLUSIVE")]
        not_run = [r["id"] for r in reqs if r["status"] == "NOT_RUN"]
        para = [f"Of {len(reqs)} business requirements: {status_text}."]
        if failing:
            para.append(f"Not met or undecided: {', '.join(failing)}.")
        if not_run:
            para.append(f"Not measured in this session: {', '.join(not_run)}; a GO needs them.")
        if s["generator"].get("saturated"):
            para.append("The load generator was saturated in at least one test: "
                        "those latencies may be the generator's, not the service's.")  # fmt: skip
        if not s.get("complete", True):
            why = "; ".join(f"{k}: {v}" for k, v in s.get("failures", {}).items())
            para.append(f"The session did not complete (interrupted or a notebook failed). {why}")
        decision = s["decision"]
        return HTML(
            f'<p><span class="kt-decision kt-{decision}">{decision}</span> '
            f"&nbsp; confidence <b>{s['confidence']}</b>/100 &nbsp; session "
            f"<code>{html.escape(s['session'])}</code></p><p>{html.escape(' '.join(para))}</p>"
        )

    def requirements(self) -> HTML:
        return requirements_html(self.summary["requirements"])

    def decision_rule(self) -> HTML:
        return HTML(f"<p><b>Decision rule.</b> {html.escape(DECISION_RULE)}</p>")

    def latency_table(self) -> pd.DataFrame:
        """Per load test: p50/p95/p99/max and success, as measured (seconds)."""
        rows = []
        for test, r in sorted(self.results.items()):
            lat = r.get("latency")
            if not lat:
                continue
            rows.append({
                "test": test, "samples": lat["count"],
                "success rate": f"{lat['success_rate']['value']:.2%}"
                if lat["success_rate"]["value"] is not None else "—",
                "p50 (s)": lat["p50"]["value"], "p95 (s)": lat["p95"]["value"],
                "p99 (s)": lat["p99"]["value"], "max (s)": lat["max"],
                **{f"{k}": v for k, v in lat.get("outcomes", {}).items()},
            })  # fmt: skip
        return pd.DataFrame(rows)

    def generator_health(self) -> pd.DataFrame:
        rows = []
        for test, r in sorted(self.results.items()):
            ld = r.get("load")
            if not ld:
                continue
            rows.append({
                "test": test,
                "target rate (/s)": ld.get("target_rate_per_s"),
                "achieved rate (/s)": ld.get("achieved_rate_per_s"),
                "schedule lag p99 (ms)": (ld.get("schedule_lag_p99") or 0) * 1000,
                "late/dropped": ld.get("late_or_dropped"),
                "saturated": ld.get("saturated"),
                "why": "; ".join(ld.get("saturation_reasons") or []),
            })  # fmt: skip
        return pd.DataFrame(rows)

    def durations(self) -> pd.DataFrame:
        rows = []
        for test, r in sorted(self.results.items()):
            if r.get("started") and r.get("finished"):
                t0, t1 = pd.Timestamp(r["started"]), pd.Timestamp(r["finished"])
                seconds = (t1 - t0).total_seconds()
                rows.append(
                    {"test": test, "started": r["started"], "duration (s)": seconds,
                     "complete": r.get("complete")}
                )  # fmt: skip
        return pd.DataFrame(rows)

    def capacity(self) -> pd.DataFrame:
        cap = self.summary.get("capacity", {})
        return pd.DataFrame(
            [
                {"metric": k.replace("_", " "), "value": "not measured" if v is None else v}
                for k, v in cap.items()
            ]  # fmt: skip
        )

    def links(self) -> HTML:
        pages = sorted((self.session_dir / "html").glob("*.html"))
        if not pages:
            return HTML("<p>No per-test notebooks were rendered.</p>")
        items = "".join(
            f'<li><a href="html/{p.name}">{html.escape(p.stem)}</a></li>' for p in pages
        )
        return HTML(f"<ul>{items}</ul>")

    def params_yaml(self) -> HTML:
        text = yaml.safe_dump(redact(self.params), sort_keys=False)
        return HTML(f"<pre>{html.escape(text)}</pre>")

    def measured_fmt(self, req: dict[str, Any]) -> str:
        return fmt_measured(req.get("measured"), req.get("unit", ""))
