"""What the report notebook shows, computed from a session folder's files only.

Every number here is read from ``summary.json``, ``results/*.json`` or the records; the
report never runs load and never holds a value that was not measured ("not measured"
is said in words, never left as a placeholder).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from IPython.display import HTML
from matplotlib.figure import Figure

from kubetest import plots
from kubetest.analysis.gateway_counters import counter_rows
from kubetest.analysis.verdicts import (
    DECISION_RULE,
    INTEGRITY_ID,
    RATE_REQUIREMENT_PER_MIN,
    REQUIREMENTS,
    SUITE_PREFIX,
)
from kubetest.engine.records import read_records
from kubetest.params import Params
from kubetest.report.findings import CAPACITY_RECOMMENDATIONS, findings_lists, pool_reports
from kubetest.results import StoredResult, Summary
from kubetest.secrets import redact_params
from kubetest.summary import read_results
from kubetest.workbook.display import badge, escaped_table, requirements_html

#: Report sections, in order: (anchor text, title). nbconvert anchors headings by text.
SECTIONS = (
    "Executive summary", "Business requirements", "Decision rule and confidence",
    "Strengths, concerns and recommendations", "Capacity", "Latency", "Availability",
    "The service during the tests", "Data integrity", "Remediation", "Environment",
    "Service test suites", "Generator health", "Test durations", "Per-test notebooks",
    "Parameters of this run",
)  # fmt: skip


def table(frame: pd.DataFrame, empty: str = "Nothing measured.") -> HTML:
    """A frame as an HTML table without the meaningless integer index."""
    if frame.empty:
        return HTML(f"<p><i>{html.escape(empty)}</i></p>")
    return HTML(frame.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:,.4g}"))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


#: The p95 SLO of a session whose params.yaml is missing or leaves ``slo.p95_s`` out:
#: the params' own default (``kubetest.params``), never a second literal.
DEFAULT_SLO_P95_S: float = Params().slo.p95_s


@dataclass
class ReportView:
    """The session's ``summary.json`` (``Summary``) and result files (``StoredResult``),
    typed (``kubetest.results``), and its params as recorded."""

    session_dir: Path
    summary: Summary
    results: dict[str, StoredResult]
    params: dict[str, Any]

    @property
    def slo_p95_s(self) -> float:
        """The session's p95 SLO (s): its params' ``slo.p95_s``, else the params' default."""
        value = (self.params.get("slo") or {}).get("p95_s")
        return float(value) if isinstance(value, int | float) else DEFAULT_SLO_P95_S

    def result_dicts(self) -> dict[str, dict[str, Any]]:
        """The result files as the JSON they hold, for helpers that read plain dicts."""
        return {test: r.as_dict() for test, r in self.results.items()}

    def requirement_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.summary.requirements]

    @classmethod
    def load(cls, session_dir: str | Path) -> ReportView:
        session = Path(session_dir)
        summary_path = session / "summary.json"
        if not summary_path.exists():
            raise FileNotFoundError(f"{summary_path} not found: run `kubetest run` first")
        params_path = session / "params.yaml"
        params = yaml.safe_load(params_path.read_text()) if params_path.exists() else {}
        return cls(session, Summary.read(summary_path), read_results(session), params or {})

    # ------------------------------------------------------------------ summary
    def contents(self) -> HTML:
        items = "".join(
            f'<li><a href="#{html.escape(t.replace(" ", "-"))}">{html.escape(t)}</a></li>'
            for t in SECTIONS
        )
        return HTML(f"<nav><b>Contents</b><ol>{items}</ol></nav>")

    def summary_sentences(self) -> list[str]:
        """The executive paragraph, every sentence built from a measured value."""
        s = self.summary
        reqs = [r for r in s.requirements if r.id in REQUIREMENTS]
        counts = pd.Series([r.status for r in reqs]).value_counts().to_dict()
        status_text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        para = [f"Of the {len(reqs)} critical business requirements: {status_text}."]
        reasons = s.decision_reasons
        if reasons:
            para.append("NO-GO because " + "; ".join(reasons) + ".")
        else:
            para.append("Every critical requirement was measured and met on a clean run.")
        cap = s.capacity
        rate = _num(cap.get("max_sustainable_rate_per_min"))
        if rate is not None:
            para.append(
                f"The service sustained {rate:,.0f} alerts/min "
                f"({rate / RATE_REQUIREMENT_PER_MIN:.1f}× the {RATE_REQUIREMENT_PER_MIN:,.0f}/min "
                "requirement)."
            )
        else:
            para.append("Alert capacity (B1) was not measured in this session.")
        validity = s.validity
        if validity.status != "VALID":  # analysis.validity: the runs themselves
            para.append(f"Run validity {validity.status}: " + "; ".join(validity.reasons) + ".")
        if not s.complete:
            why = "; ".join(f"{k}: {v}" for k, v in s.failures.items())
            para.append("The session did not complete" + (f" ({why})" if why else "") + ".")
        return para

    def executive_summary(self) -> HTML:
        s, para = self.summary, self.summary_sentences()
        decision = s.decision
        return HTML(
            f'<p><span class="kt-decision kt-{decision}">{decision}</span> '
            f"&nbsp; confidence <b>{s.confidence}</b>/100 &nbsp; session "
            f"<code>{html.escape(s.session)}</code></p><p>{html.escape(' '.join(para))}</p>"
        )

    def requirements(self) -> HTML:
        return requirements_html(self.requirement_dicts())

    def decision_rule(self) -> HTML:
        penalties = self.summary.confidence_penalties
        rows = "".join(f"<li>−{v}: {html.escape(k)}</li>" for k, v in penalties.items())
        applied = f"<p>Applied here:</p><ul>{rows}</ul>" if rows else "<p>No penalty applied.</p>"
        return HTML(f"<p>{html.escape(DECISION_RULE)}</p>{applied}")

    def findings_lists(self) -> tuple[list[str], list[str], list[str]]:
        """Strengths, concerns and recommendations (``report/findings.py``)."""
        return findings_lists(self.summary, self.results, self.slo_p95_s)

    def pool_reports(self) -> list[tuple[str, dict[str, Any]]]:
        """``(test, workload_pool)`` of every load and sweep phase that used a pool."""
        return pool_reports(self.results)

    def remediation(self) -> HTML:
        """What happened after the 201s: each followed RemediationRequest's end, its time
        to a terminal phase on kubetest's clock, the RR's own phase timestamps, and how
        the workload pool served each load."""
        rows = []
        for test, result in sorted(self.results.items()):
            rem = result.remediation
            if not isinstance(rem, dict) or not rem.get("followed"):
                continue
            phases = rem.get("phases") or {}
            ttt = rem.get("time_to_terminal_s") or {}
            by_phase = rem.get("time_to_phase_s") or {}
            row: dict[str, Any] = {
                "test": test, "followed": rem.get("followed"),
                "Completed": phases.get("Completed"), "Failed": phases.get("Failed"),
                "waiting": phases.get("waiting"), "pending": phases.get("pending"),
                "not found": phases.get("not_found"),
                "to terminal p50 (s)": ttt.get("p50"), "to terminal p95 (s)": ttt.get("p95"),
            }  # fmt: skip
            for phase in ("Executing", "Completed"):
                stats = by_phase.get(phase) or {}
                row[f"RR to {phase} p50 (s)"] = stats.get("p50")
                row[f"RR to {phase} p95 (s)"] = stats.get("p95")
            rows.append(row)
        pools = [{"load": test, "workloads": pool.get("workloads"),
                  "to a free one": pool.get("to_free"), "to a busy one": pool.get("to_busy"),
                  "busy at start": pool.get("busy_at_start"), "needed": pool.get("needed"),
                  "controller namespace": pool.get("controller_namespace")}
                 for test, pool in self.pool_reports()]  # fmt: skip
        note = (
            "<p>To terminal: from the request's send to the phase seen by kubetest "
            "(its clock). RR to a phase: from the RR's creation to the phase's start "
            "(status.phaseProgress, status.completedAt: the server's clock, whole "
            "seconds). Completed includes the verification window, so the time to "
            "Executing is when the action ran. Waiting: Blocked or AwaitingApproval, "
            "which may wait for a human.</p>"
        )
        parts = [note, table(pd.DataFrame(rows), "No RemediationRequest was followed.").data]
        if pools:
            parts += ["<h4>Workload pool</h4>", table(pd.DataFrame(pools)).data]
        return HTML("".join(parts))

    def findings(self) -> HTML:
        strengths, concerns, recs = self.findings_lists()

        def block(title: str, items: list[str]) -> str:
            lis = "".join(f"<li>{html.escape(i)}</li>" for i in items) or "<li>None.</li>"
            return f"<h4>{title}</h4><ul>{lis}</ul>"

        return HTML(block("Strengths", strengths) + block("Concerns", concerns)
                    + block("Recommendations", recs))  # fmt: skip

    # ------------------------------------------------------------------ tables
    def capacity_rows(self) -> list[tuple[str, str]]:
        """The capacity a planner needs, each value with its caveat ("at least", "not
        reached up to"), never a bare placeholder."""
        cap = self.summary.capacity

        def rate(key: str, lower_key: str = "") -> str:
            v = _num(cap.get(key))
            if v is None:
                return "not measured"
            return ("at least " if cap.get(lower_key) else "") + f"{v:,.0f}/min"

        tested_up_to = _num(cap.get("first_unsustainable_rate_per_min"))
        b1 = self.results.get("B1")
        b1_rows = (b1.phases if b1 is not None else None) or []
        top = max((p.get("offered_per_min") or 0 for p in b1_rows), default=0)

        def reached(key: str) -> str:
            v = _num(cap.get(key))
            if v is not None:
                return f"{v:,.0f}/min"
            return f"not reached up to {top:,.0f}/min" if b1_rows else "not measured"

        def ci_text() -> str:
            ci = cap.get("max_sustainable_ci_per_min")
            if not ci or _num(ci[0]) is None:
                return "not measured"
            top = f"{ci[1]:,.0f}/min" if _num(ci[1]) is not None else "open above (at least)"
            return f"{ci[0]:,.0f} to {top}"  # a failed soak: the recommendation says so

        conc = cap.get("max_sustainable_concurrency")
        rows = [
            ("Max sustainable alert rate (B1)", rate("max_sustainable_rate_per_min",
                                                     "max_sustainable_is_lower_bound")),
            ("Interval on the max sustainable rate", ci_text()),
            ("Load time of the B1 search", f"{cap['search_load_s']:,.0f} s ("
             f"{cap.get('search', 'grid')}, {cap.get('phases_tested', 0)} phases)"
             if _num(cap.get("search_load_s")) is not None else "not measured"),
            ("First unsustainable rate tested",
             f"{tested_up_to:,.0f}/min" if tested_up_to else ("none" if b1_rows else "—")),
            ("Degradation point (success < 90 %)", reached("degradation_point_per_min")),
            ("Breaking point (success < stop threshold)", reached("breaking_point_per_min")),
            ("Knee of the latency curve", rate("knee_rate_per_min")),
            ("Headroom vs 1,000/min", f"{cap['headroom']:.2f}×"
             if _num(cap.get("headroom")) is not None else "not measured"),
            ("Max sustainable concurrency (B2)", "not measured" if conc is None else
             ("at least " if cap.get("max_sustainable_concurrency_is_lower_bound") else "")
             + f"{conc:,}"),
            ("USL predicted peak throughput", rate("usl_peak_throughput_per_min")
             + (f" at N ≈ {cap['usl_peak_concurrency']:.0f}"
                if _num(cap.get("usl_peak_concurrency")) else "")),
            ("USL contention σ / coherency κ",
             f"{cap['usl_sigma']:.3g} / {cap['usl_kappa']:.3g} (R² {cap.get('usl_r2', 0):.3f})"
             if _num(cap.get("usl_sigma")) is not None else "not measured"),
            ("Little's law (N = X·R) worst error",
             f"{cap['littles_law_max_error']:.1%}"
             if _num(cap.get("littles_law_max_error")) is not None else "not measured"),
        ]  # fmt: skip
        return rows

    def capacity(self) -> HTML:
        cap = self.summary.capacity
        rows = pd.DataFrame(self.capacity_rows(), columns=["capacity", "value"])
        recs = [cap[k] for k in CAPACITY_RECOMMENDATIONS if cap.get(k)]
        extra = "".join(f"<p>{html.escape(str(r))}</p>" for r in recs)
        return HTML(table(rows).data + extra)

    def capacity_figures(self) -> list[Figure]:
        """B1's latency and throughput curves and B2's USL curve, from the results alone."""
        from kubetest import capacity_plots
        from kubetest.analysis.usl import UslFit

        slo = self.slo_p95_s
        figs: list[Figure] = []
        b1, b2 = self.results.get("B1"), self.results.get("B2")
        if b1 is not None and b1.phases:
            t = pd.DataFrame(b1.phases)
            figs.append(capacity_plots.latency_vs_rate(t, slo, b1.capacity))
            theory = (b1.as_dict().get("theory") or {}).get("capacity_per_min")
            figs.append(capacity_plots.throughput_vs_offered(t, b1.capacity, theory))
        if b2 is not None and b2.phases:
            usl = b2.as_dict().get("usl")
            fit = UslFit(**usl) if usl else None
            figs.append(capacity_plots.concurrency_curve(pd.DataFrame(b2.phases), fit, slo))
        return figs

    def latency_table(self) -> HTML:
        """Per load test: p50/p95/p99/max and success, as measured (seconds): the test's
        ``latency`` (the figures judged), never the engine's own ``load`` percentiles."""
        rows = []
        for test, r in sorted(self.results.items()):
            lat = r.latency
            if lat is None:
                continue
            sr = lat.success_rate.value
            rows.append({
                "test": test, "samples": lat.count,
                "success rate": "—" if sr is None else f"{sr:.2%}",
                "p50 (s)": lat.p50.value, "p95 (s)": lat.p95.value,
                "p99 (s)": lat.p99.value, "max (s)": lat.max,
                **lat.outcomes,
            })  # fmt: skip
        return table(pd.DataFrame(rows))

    def latency_figures(self) -> list[Figure]:
        """Latency over time for each load test, re-drawn from its records."""
        slo = self.slo_p95_s
        figs = []
        for _test, r in sorted(self.results.items()):
            path = self.session_dir / str(r.records or "")
            if r.latency is not None and path.is_file():
                fig = plots.latency_over_time(read_records(path), slo)
                fig.axes[0].set_title(f"{r.title or _test}: latency over time")
                figs.append(fig)
        return figs

    def availability(self) -> HTML:
        """Which endpoint BR-PA-001 was judged on, both probed series, the background load."""
        from kubetest.workbook.a3_availability import report_rows, report_sentences

        a3 = self.result_dicts().get("A3")
        if not a3:
            return HTML("<p><i>Availability (A3) was not measured in this session.</i></p>")
        text = "".join(f"<p>{html.escape(t)}</p>" for t in report_sentences(a3))
        return HTML(text + table(pd.DataFrame(report_rows(a3))).data)

    def availability_figures(self) -> list[Figure]:
        """A3's probe series on one timeline (and its background load's latency)."""
        from kubetest.workbook.a3_availability import report_figures

        a3 = self.result_dicts().get("A3")
        return report_figures(self.session_dir, a3, self.slo_p95_s) if a3 else []

    def service_figures(self) -> list[Figure]:
        """Per test: the service's own metrics on the same time axis as client latency."""
        from kubetest.service_plots import service_timeline_for

        slo = self.slo_p95_s
        figs = []
        for _test, r in sorted(self.result_dicts().items()):
            fig = service_timeline_for(self.session_dir, r, slo)
            if fig is not None:
                figs.append(fig)
        return figs

    def service_notes(self) -> HTML:
        """Why a test has no service figure (no /metrics, Prometheus unreachable, ...)."""
        notes = [
            f"{t}: {r.service_metrics['note']}"
            for t, r in sorted(self.results.items())
            if (r.service_metrics or {}).get("note")
        ]
        if not notes:
            return HTML("")
        return HTML("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")

    def integrity(self) -> HTML:
        """Every accepted alert handled exactly once: per test and in total."""
        row = next((r for r in self.requirement_dicts() if r["id"] == INTEGRITY_ID), None)
        if row is None:
            return HTML("<p><i>Integrity was not checked.</i></p>" + self.gateway_counters().data)
        d = row.get("details", {})
        per_test = d.get("per_test") or {}
        keys = ("accepted", "handled", "lost", "duplicated", "unexpected")
        frame = pd.DataFrame(
            [
                {"test": t, **{k: c.get(k) for k in keys}, "how": c.get("method", "")}
                for t, c in sorted(per_test.items())
            ]
        )
        why = "; ".join(d.get("reasons") or [])
        head = f"<p>{badge(row['status'])} {html.escape(row.get('threshold', ''))}"
        head += f" — {html.escape(why)}</p>" if why else "</p>"
        return HTML(
            head + table(frame, "No load test was reconciled.").data + self.gateway_counters().data
        )

    def gateway_counters(self) -> HTML:
        """The gateway's own counters against kubetest's counts, per load test (kubernaut
        profile): a mismatch nothing explains is a finding."""
        rows = counter_rows(self.result_dicts())
        if not rows:
            return HTML("")
        intro = (
            "<h4>Gateway counters</h4><p>Each counter's increase on the gateway's "
            "metrics endpoint over the test, against kubetest's count of the answers it "
            "stands for (created ↔ accepted, deduplicated ↔ duplicate, rejected ↔ "
            "rejected).</p>"
        )
        return HTML(intro + table(pd.DataFrame(rows)).data)

    def environment(self) -> HTML:
        env = self.result_dicts().get("ENV")
        if not env:
            return HTML("<p><i>Environment checks were not run.</i></p>")
        frame = pd.DataFrame(env.get("checks", []))
        keep = [c for c in ("name", "status", "required", "detail", "fix") if c in frame]
        ready = "ready" if env.get("ready") else "NOT ready: a required check failed"
        return HTML(f"<p>Environment: <b>{ready}</b>.</p>" + table(frame[keep]).data)

    def suite_requirements(self) -> list[dict[str, Any]]:
        return [r for r in self.requirement_dicts() if r["id"].startswith(SUITE_PREFIX)]

    def suites(self) -> HTML:
        """The guide's Step 1a: each suite's outcome, its tests per BR, what failed."""
        from kubetest.workbook.external_suites import (
            by_requirement_frame,
            failures_frame,
            suite_row,
        )

        reqs = self.suite_requirements()
        if not reqs:
            return HTML(
                "<p><i>No suite of the service's own was configured "
                "(params: external_suites).</i></p>"
            )
        frame = pd.DataFrame([suite_row(r) for r in reqs])
        logs = "".join(
            f"<li>{html.escape(r['id'])}: "
            + ", ".join(
                f'<a href="{html.escape(p)}">{html.escape(k)}</a>'
                for k, p in (r.get("details", {}).get("logs") or {}).items()
            )
            + "</li>"
            for r in reqs
        )
        parts = [
            escaped_table(frame, badges=("status",)),
            "<h4>Tests per business requirement</h4>",
            table(by_requirement_frame(reqs), "No requirement patterns were given.").data,
            "<h4>Failed tests</h4>",
        ]
        failed = failures_frame(reqs)
        pre = '<pre style="margin:0;white-space:pre-wrap;text-align:left;font-size:85%">'
        rows = "".join(
            f"<tr><td>{html.escape(row['suite'])}</td><td>{html.escape(row['test'])}</td>"
            f"<td>{pre}{html.escape(row['last output'] or '(no output)')}</pre></td></tr>"
            for row in failed.to_dict("records")
        )
        parts.append(
            "<table><thead><tr><th>suite</th><th>test</th><th>last output</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            if rows
            else "<p>None.</p>"
        )
        parts.append(f"<p>Logs (in the session folder):</p><ul>{logs}</ul>")
        return HTML("".join(parts))

    def generator_health(self) -> HTML:
        """Each load's generator judgement (``LoadHealth``: the engine's own figures)."""
        rows = []
        for test, r in sorted(self.results.items()):
            loads = r.loads()
            for i, ld in enumerate(loads):
                rows.append(
                    {
                        "test": test if len(loads) == 1 else f"{test} phase {i + 1}",
                        "target rate (/s)": ld.target_rate_per_s,
                        "achieved rate (/s)": ld.achieved_rate_per_s,
                        "schedule lag p99 (ms)": (ld.schedule_lag_p99 or 0) * 1000,
                        "late/dropped": ld.late_or_dropped,
                        "saturated": ld.saturated,
                        "why": "; ".join(ld.saturation_reasons or []),
                    }
                )
        return table(pd.DataFrame(rows))

    def durations(self) -> HTML:
        state_path = self.session_dir / "state.json"
        states = json.loads(state_path.read_text()).get("tests", {}) if state_path.exists() else {}
        rows = []
        for test, r in sorted(self.results.items()):
            if r.started and r.finished:
                t0, t1 = pd.Timestamp(r.started), pd.Timestamp(r.finished)
                rows.append({"test": test, "started (UTC)": t0.strftime("%Y-%m-%d %H:%M:%S"),
                             "duration (s)": (t1 - t0).total_seconds(),
                             "complete": r.complete,
                             "attempt": states.get(test, {}).get("attempt", 1)})  # fmt: skip
        for test, why in self.summary.failures.items():
            rows.append({"test": test, "started (UTC)": "—", "duration (s)": None,
                         "complete": f"failed: {why}",
                         "attempt": states.get(test, {}).get("attempt", 1)})  # fmt: skip
        return table(pd.DataFrame(rows))

    def links(self) -> HTML:
        pages = sorted((self.session_dir / "html").glob("*.html"))
        if not pages:
            return HTML("<p>No per-test notebooks were rendered.</p>")
        items = "".join(
            f'<li><a href="html/{html.escape(p.name)}">{html.escape(p.stem)}</a></li>'
            for p in pages
        )
        return HTML(f"<ul>{items}</ul>")

    def params_yaml(self) -> HTML:
        text = yaml.safe_dump(redact_params(self.params), sort_keys=False)
        return HTML(f"<pre>{html.escape(text)}</pre>")
