"""A3 — availability (BR-PA-001, the guide's A2).

Probes the health endpoint every ``probe_interval_s`` for the window; downtime comes from
probe timestamps and the budget from the window (99.9 % of 30 min is 1.8 s, not 18 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from kubetest.analysis.availability import Availability, availability_from_probes
from kubetest.analysis.verdicts import REQUIREMENTS, Requirement, Status
from kubetest.checks import preflight_tls
from kubetest.engine.progress import Throttle, in_notebook, session_note
from kubetest.metrics import scrape_metrics
from kubetest.probes import probe
from kubetest.tls import verify
from kubetest.workbook.context import TestContext

BR_ID = "BR-PA-001"


@dataclass
class A3Result:
    requirement: Requirement
    availability: Availability
    probes: pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        a = self.availability
        return pd.DataFrame(
            {
                "value": [f"{a.availability:.4%}", f"{a.downtime_s:.3f} s",
                          f"{a.downtime_low_s:.3f}–{a.downtime_high_s:.3f} s",
                          f"{a.budget_s:.3f} s",
                          a.probes, a.failed_probes, len(a.outages), f"{a.resolution_s:.3f} s"],
            },
            index=["availability", "downtime", "downtime bounds", "budget", "probes",
                   "failed probes", "outages", "resolution"],
        )  # fmt: skip

    @property
    def outages(self) -> pd.DataFrame:
        return pd.DataFrame(
            [o.__dict__ | {"duration_s": o.duration_s} for o in self.availability.outages]
        )


def judge(a: Availability) -> Requirement:
    """FAIL when downtime exceeds the budget; INCONCLUSIVE when probes are too coarse to tell."""
    reasons: list[str] = []
    if a.probes < 2:
        reasons.append("fewer than 2 probes")
    if a.downtime_s == 0 and a.resolution_s > a.budget_s:
        reasons.append(
            f"probes every {a.resolution_s:.3g} s can miss a whole outage longer than the "
            f"{a.budget_s:.3g} s budget: lower probe_interval_s"
        )
    status: Status = "INCONCLUSIVE" if reasons else (
        "PASS" if a.downtime_s <= a.budget_s else "FAIL"
    )  # fmt: skip
    straddles = a.downtime_low_s <= a.budget_s < a.downtime_high_s
    return Requirement(
        BR_ID, a.availability * 100, "%", f"availability ≥ {a.target:.1%} "
        f"(downtime ≤ {a.budget_s:.3g} s in {a.window_s:g} s)", status,
        {
            "title": REQUIREMENTS[BR_ID][0],
            "judged_on": "downtime from probe timestamps (first failed to next successful probe)",
            "downtime_s": a.downtime_s, "downtime_bounds_s": [a.downtime_low_s, a.downtime_high_s],
            "budget_s": a.budget_s, "probes": a.probes, "failed_probes": a.failed_probes,
            "outages": len(a.outages), "resolution_s": a.resolution_s, "window_s": a.window_s,
            "samples": a.probes, "ci_straddles_threshold": bool(straddles), "reasons": reasons,
        },
    )  # fmt: skip


def _progress(window_s: float) -> Callable[[dict[str, object]], None]:
    """Probes so far and how many failed: a line in the notebook, updated in place, and
    one every ``SESSION_EVERY_S`` to a listening ``kubetest run``."""
    handle = None
    if in_notebook():
        from IPython.display import display

        handle = display({"text/plain": "A3 probing ..."}, raw=True, display_id=True)
    due, counts = Throttle(), {"probes": 0, "failed": 0}

    def on_probe(row: dict[str, object]) -> None:
        counts["probes"] += 1
        counts["failed"] += 0 if row["ok"] else 1
        if due():
            line = (f"probes {float(row['t_s']):.0f}/{window_s:.0f} s: {counts['probes']} sent, "
                    f"{counts['failed']} failed")  # fmt: skip
            if handle is not None:
                handle.update({"text/plain": line}, raw=True)
            session_note(line)

    return on_probe


def run(ctx: TestContext) -> A3Result:
    sec = ctx.section
    started = datetime.now(UTC)
    window_s = sec.duration_min * 60.0
    ctx.records_dir.mkdir(parents=True, exist_ok=True)
    preflight_tls(ctx.params, ctx.health_url)  # a refused certificate fails now, in one line
    with scrape_metrics(ctx, "A3") as scrape:  # what the service did while it was probed
        scrape.align({"start_epoch": time.time()})
        probes = probe(
            ctx.health_url, window_s, sec.probe_interval_s,
            out_csv=ctx.records_dir / "A3_probes.csv", on_probe=_progress(window_s),
            verify=verify(ctx.params.target.tls),
        )  # fmt: skip
    avail = availability_from_probes(probes, window_s, sec.target, sec.probe_interval_s)
    req = judge(avail)
    ctx.save_result(
        {
            "title": "A3 availability",
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "complete": True,
            "requirements": [req.as_dict()],
            "availability": avail.as_dict(),
            "records": "records/A3_probes.csv",
            "params": sec.model_dump(),
            "service_metrics": scrape.summary(),
        }
    )
    return A3Result(req, avail, probes)
