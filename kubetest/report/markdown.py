"""``FINAL_TEST_REPORT.md``: the guide's report template, every placeholder filled from the
session's measurements (for wikis and pull requests). Same data as report.html, via
``ReportView``, so the two never disagree."""

from __future__ import annotations

import html
import re
from pathlib import Path

from kubetest.analysis.verdicts import DECISION_RULE
from kubetest.report.view import ReportView
from kubetest.workbook.display import requirements_frame

FILE_NAME = "FINAL_TEST_REPORT.md"


#: Markdown that would turn text into a link, an image or an autolink: ``[``, ``]``
#: (links, images, references) and backticks are backslash-escaped; ``<`` is an entity.
_MD_SPECIAL = re.compile(r"([\[\]`\\])")


def _text(value: object) -> str:
    """Text a service or a suite wrote, as inert Markdown: no HTML, no link, no image.

    ``<``, ``>``, ``&`` become entities (so ``<script>`` or ``<img onerror=...>`` is shown,
    never parsed) and brackets are escaped, so ``[x](javascript:...)`` or ``![x](...)`` stays
    text whatever the scheme; newlines become spaces (one line per cell or bullet).
    """
    text = html.escape(str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _cell(value: object) -> str:
    return _text(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _bullets(items: list[str]) -> list[str]:
    return [f"- {_text(i)}" for i in items] or ["- None."]


def _suites_section(view: ReportView) -> list[str]:
    """The guide's Step 1a results, when suites were configured."""
    from kubetest.workbook.external_suites import by_requirement_frame, suite_row

    reqs = view.suite_requirements()
    if not reqs:
        return []
    cols = ["suite", "status", "passed", "failed", "skipped", "exit code", "why"]
    rows = [[suite_row(r)[c] for c in cols] for r in reqs]
    mapped = by_requirement_frame(reqs)
    lines = ["## The service's own suites (Step 1a)", "", *_table(cols, rows), ""]
    if not mapped.empty:
        header = ["requirement", "suite", "passed", "failed", "skipped", "failing tests"]
        lines += [*_table(header, mapped[header].values.tolist()), ""]
    return lines


def _counters_section(view: ReportView) -> list[str]:
    """The gateway's counters against kubetest's counts (kubernaut profile only)."""
    from kubetest.analysis.gateway_counters import counter_rows

    rows = counter_rows(view.result_dicts())
    if not rows:
        return []
    cols = ["test", "counter", "gateway", "kubetest", "match", "note"]
    return ["## Gateway counters", "",
            "Each counter's increase on the gateway's metrics endpoint over the test, against "
            "kubetest's count of the answers it stands for.", "",
            *_table(cols, [[r[c] if r[c] is not None else "—" for c in cols] for r in rows]),
            ""]  # fmt: skip


def _availability_section(view: ReportView) -> list[str]:
    """Which endpoint BR-PA-001 was judged on, and both probed series (A3)."""
    from kubetest.workbook.a3_availability import report_rows, report_sentences

    a3 = view.result_dicts().get("A3")
    if not a3:
        return []
    rows = report_rows(a3)
    cols = list(rows[0]) if rows else []
    return ["## Availability (BR-PA-001)", "", _text(" ".join(report_sentences(a3))), "",
            *(_table(cols, [[r[c] for c in cols] for r in rows]) if rows else []), ""]  # fmt: skip


def render_markdown(view: ReportView) -> str:
    s = view.summary
    frame = requirements_frame(view.requirement_dicts())
    strengths, concerns, recs = view.findings_lists()
    started = min((r.started or "" for r in view.results.values()), default="") or "—"
    lines = [
        "# Kubernaut integration test report",
        "",
        f"**Test session**: {_text(s.session)}  ",
        f"**Date**: {started[:19].replace('T', ' ')} UTC  ",
        f"**Tests run**: {', '.join(s.tests_run) or 'none'}  ",
        f"**Session complete**: {'yes' if s.complete else 'no'}",
        "",
        "## Executive summary",
        "",
        f"**Decision: {s.decision}** (confidence {s.confidence}/100). "
        + _text(" ".join(view.summary_sentences())),
        "",
        "## Business requirement compliance",
        "",
        *_table(
            [
                "Requirement",
                "What",
                "Measured [95 % CI]",
                "Pass criteria",
                "Judged on",
                "Status",
                "Validity",
            ],
            [
                [
                    r["requirement"],
                    r["what"],
                    r["measured [95 % CI]"],
                    r["criterion"],
                    r["judged on"],
                    f"**{r['status']}**",
                    r["validity"],
                ]
                for r in frame.to_dict("records")
            ],
        ),
        "",
        "## Capacity analysis",
        "",
        *_table(["Capacity", "Value"], [list(row) for row in view.capacity_rows()]),
        "",
        *_availability_section(view),
        *_counters_section(view),
        *_suites_section(view),
        "## Production readiness assessment",
        "",
        f"**Overall confidence rating**: {s.confidence}/100",
        "",
        "### Strengths",
        *_bullets(strengths),
        "",
        "### Areas of concern",
        *_bullets(concerns),
        "",
        "### Recommendations",
        *_bullets(recs),
        "",
        "## Pilot deployment recommendation",
        "",
        f"**Go/No-Go decision**: {s.decision}",
        "",
        "**Rationale**: "
        + _text("; ".join(s.decision_reasons) or "every criterion of the rule was met")
        + ".",
        "",
        f"*Decision rule*: {DECISION_RULE}",
        "",
    ]
    return "\n".join(lines)


def write_markdown(session_dir: Path) -> Path:
    path = Path(session_dir) / FILE_NAME
    path.write_text(render_markdown(ReportView.load(session_dir)), encoding="utf-8")
    return path
