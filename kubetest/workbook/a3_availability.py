"""A3 — availability (BR-PA-001, the guide's A2).

Available means "the service accepts alerts", as the guide's availability monitor asks:
by default (``probe: webhook``) a real probe alert is POSTed to the webhook every
``probe_interval_s`` and a probe is up when the profile calls the answer accepted or
duplicate. A health URL can stay green while Redis, the LLM or the Kubernetes API behind
the webhook is down; ``probe: health`` judges on it all the same (the earlier behaviour).
Both endpoints are probed on one schedule either way, and the other is kept as a second
series on the same timeline. Downtime comes from probe timestamps and the budget from the
window (99.9 % of 30 min is 1.8 s, not 18 s).

With ``background_rate_per_min`` an open-loop load runs against the same service for the
window (availability under load); its latency is reported beside the verdict, not judged
(BR-PA-003 is A1's), and it runs without ``slo.abort``. A3's result carries its run
validity (``a3_validity``): a target restart mid-window, or a background load that was not
the one asked for, makes it INCONCLUSIVE.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
from matplotlib.figure import Figure

from kubetest import control
from kubetest.alerts import Alert, make_alert, new_run_token, webhook
from kubetest.analysis.availability import Availability, availability_from_probes, split_series
from kubetest.analysis.validity import Validity, load_validity
from kubetest.analysis.verdicts import REQUIREMENTS, Requirement, Status, apply_validity
from kubetest.checks import env_secrets, preflight_auth, preflight_tls
from kubetest.engine import LoadPlan
from kubetest.engine.client import USER_AGENT, auth_header, classify, problem_detail
from kubetest.engine.pool import WorkloadScheduler
from kubetest.engine.progress import Throttle, in_notebook, session_note
from kubetest.errors import KubetestError
from kubetest.metrics import scrape_metrics
from kubetest.probes import ProbeTarget, probe_endpoints
from kubetest.remediation import RemediationFollower, follower_from_params
from kubetest.tls import verify
from kubetest.workbook.a3_beside import Span, probe_beside, span_window_s
from kubetest.workbook.context import TestContext, result_head
from kubetest.workbook.loadtest import LoadOutcome, execute, make_plan, open_loop_schedule

BR_ID = "BR-PA-001"
ENDPOINTS = ("webhook", "health")
#: The answers that mean "the alert was taken" (any profile's; ``classify`` outcomes).
UP_OUTCOMES = frozenset({"accepted", "duplicate"})
PROBE_TYPE = "high_memory"
PROBE_LABEL = "kubetest_probe"
RECORDS = "A3_probes.csv"
BACKGROUND = "A3_background"
BACKGROUND_TYPES = ["high_memory", "high_cpu", "pod_crash"]
#: A3's lines name it: beside Phase A they reach the terminal among A1's, A2's and A4's.
PROGRESS_PREFIX = "A3: "


@dataclass
class A3Result:
    requirement: Requirement
    availability: Availability  # the judged endpoint's
    probes: pd.DataFrame  # every probe of both endpoints (``endpoint`` column)
    probe: str = "health"  # the endpoint BR-PA-001 was judged on
    series: dict[str, Availability] = field(default_factory=dict)
    background: LoadOutcome | None = None

    @property
    def table(self) -> pd.DataFrame:
        """One column per endpoint, the judged one first and marked."""
        series = self.series or {self.probe: self.availability}
        return pd.DataFrame(
            {
                (f"{name} (judged)" if name == self.probe else name): series_column(a)
                for name, a in sorted(series.items(), key=lambda kv: kv[0] != self.probe)
            },
            index=SERIES_ROWS,
        )

    @property
    def outages(self) -> pd.DataFrame:
        """The judged endpoint's outages."""
        return outage_frame(self.availability)

    def timeline(self) -> Figure:
        from kubetest import plots

        outages = {name: [o.__dict__ for o in a.outages] for name, a in self.series.items()}
        return plots.availability_timeline(self.probes, outages, judged=self.probe)

    @property
    def background_table(self) -> pd.DataFrame:
        """The background load's latency (reported, not judged); empty without one."""
        return self.background.latency.table() if self.background else pd.DataFrame()

    def background_view(self, slo_p95_s: float) -> list[object]:
        """What a notebook shows of the background load: its latency table and figure."""
        from kubetest import plots

        if self.background is None:
            return ["No background load (set a3_availability.background_rate_per_min)."]
        fig = plots.latency_over_time(self.background.records, slo_p95_s)
        fig.axes[0].set_title("Background load: latency over time (reported, not judged)")
        return [self.background_table, fig]


def series_column(a: Availability) -> list[object]:
    return [f"{a.availability:.4%}", f"{a.downtime_s:.3f} s",
            f"{a.downtime_low_s:.3f}–{a.downtime_high_s:.3f} s", f"{a.budget_s:.3f} s",
            a.probes, a.failed_probes, a.throttled_probes, len(a.outages),
            f"{a.resolution_s:.3f} s"]  # fmt: skip


SERIES_ROWS = ["availability", "downtime", "downtime bounds", "budget", "probes",
               "failed probes", "throttled (429)", "outages", "resolution"]  # fmt: skip


def outage_frame(a: Availability) -> pd.DataFrame:
    return pd.DataFrame([o.__dict__ | {"duration_s": o.duration_s} for o in a.outages])


# -- what is probed --------------------------------------------------------------------


def _labelled(alert: Alert) -> Alert:
    """The alert marked as kubetest's availability probe (operators can filter it out)."""
    labels = {**alert.labels, PROBE_LABEL: "availability"}
    return Alert(labels=labels, annotations=alert.annotations, starts_at=alert.starts_at)


def _encode(alert: Alert) -> bytes:
    return json.dumps(webhook([_labelled(alert)])).encode()


def probe_body(ctx: TestContext) -> bytes | Callable[[int], bytes]:
    """The webhook probe's body: one real alert, the same every time, so repeats are one
    signal to the service (``kubernaut``: the first 201 creates a RemediationRequest, the
    rest are 202 duplicates while it lives). With a workload pool it names the pool's first
    Deployment (the gateway answers 400 for one that does not exist). ``kubernaut-legacy``
    answers a repeat 500 while its alertname cools down, so there each probe is a new
    alert (alertname and owner varied)."""
    params = ctx.params
    if params.target.api == "kubernaut-legacy":
        run, seqs = new_run_token(), itertools.count()
        return lambda _k: _encode(make_alert(
            PROBE_TYPE, next(seqs), namespace=params.alerts.namespace, run=run,
            alertname_suffix=True,
        ))  # fmt: skip
    pool = ctx.pool()
    if pool is not None:
        alert = make_alert(
            PROBE_TYPE, unique=False, namespace=pool.namespace, workload=pool.names[0]
        )
    else:
        alert = make_alert(PROBE_TYPE, unique=False, namespace=params.alerts.namespace)
    return _encode(alert)


def probe_targets(ctx: TestContext) -> dict[str, ProbeTarget]:
    """The webhook (a probe alert, with the bearer token) and the health URL."""
    sec, target = ctx.section, ctx.params.target
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **auth_header(target.auth_token_env)}  # fmt: skip
    return {
        "webhook": ProbeTarget(
            "webhook", ctx.target_url, sec.probe_timeout_s or ctx.params.slo.p95_s,
            method="POST", body=probe_body(ctx), headers=headers,
            read=partial(classify, target.api), up=UP_OUTCOMES,
        ),
        "health": ProbeTarget(
            "health", ctx.health_url, sec.probe_timeout_s or sec.probe_interval_s
        ),
    }  # fmt: skip


def check_probe_alert(ctx: TestContext, target: ProbeTarget) -> None:
    """Send the probe alert once before the window. A service that refuses the alert
    itself (400: no such workload; 200 rejected: unmanaged namespace) would be measured
    down for the whole window for a reason in kubetest's params, not its availability:
    raise one line naming the fix instead. Errors, 5xx and 429 are left to the window."""
    try:
        resp = control.post(
            target.url, content=target.content(-1), headers=dict(target.headers),
            timeout_s=target.timeout_s, verify=verify(ctx.params.target.tls),
            proxy=ctx.params.target.proxy,
        )  # fmt: skip
    except httpx.HTTPError:
        return
    outcome, _error = target.read(resp.status_code, resp.content)
    if outcome in target.up or outcome == "throttled" or resp.status_code >= 500:
        return
    said = problem_detail(resp.content, secrets=env_secrets(ctx.params))
    fix = ("name real workloads (alerts.workloads) in a namespace the gateway manages "
           "(alerts.namespace)") if ctx.params.target.api == "kubernaut" else (
           "check that target.api is the service's profile")  # fmt: skip
    raise KubetestError(
        f"A3: the probe alert was refused: POST {target.url} answered {resp.status_code}"
        f"{f' ({said})' if said else ''}: {fix}, or set a3_availability.probe: health"
    )


def background_plan(ctx: TestContext, duration_min: float | None = None) -> LoadPlan:
    """The open-loop load of ``background_rate_per_min`` for the window. With a workload
    pool it names the other Deployments: the first is the probe's. It has no SLO abort
    (``slo.abort`` is for the judged load tests): stopping it when the service fails would
    leave the rest of the window measured without the load it was asked to carry."""
    sec = ctx.section
    mode: dict[str, Any] = {}
    pool = ctx.pool()
    if pool is not None and ctx.params.alerts.unique and len(pool.names) > 1:
        mode["pool"] = WorkloadScheduler(pool.names[1:], pool.namespace)
    schedule = open_loop_schedule(
        ctx, sec.background_rate_per_min, duration_min or sec.duration_min
    )
    return make_plan(ctx, BACKGROUND_TYPES, mode="open", schedule=schedule, abort=None, **mode)


# -- the verdict -----------------------------------------------------------------------


def a3_validity(service: dict[str, Any] | None, background: dict[str, Any] | None) -> Validity:
    """A3's run validity (``analysis.validity``) from its service metrics (``service``: a
    target restart mid-window) and its background load's engine summary, if any. The
    probes are not the engine's load, so a background load that was not what was asked
    (generator health, completeness, clocks) makes A3 INCONCLUSIVE, not INVALID: the
    availability was not measured under that load, so a PASS cannot be claimed, but an
    outage the probes saw stands."""
    v = load_validity({}, service)
    for reason in load_validity(background).reasons if background is not None else []:
        v.add("INCONCLUSIVE", f"background load: {reason}")
    return v


def judged_on(
    probe: str,
    url: str,
    interval_s: float,
    background_per_min: float | None,
    span: Span | None = None,
) -> str:
    """What BR-PA-001 was judged on, in words (the BR table's "judged on")."""
    path = urlsplit(url).path or "/"
    how = (
        f"the webhook (POST {path}): a probe alert every {interval_s:g} s, up when accepted "
        "or duplicate"
        if probe == "webhook"
        else f"the health endpoint (GET {path}) every {interval_s:g} s, up on 2xx"
    )
    if span is not None:
        how += f", {span.words(background_per_min)}"
    elif background_per_min:
        how += f", under a background load of {background_per_min:g} alerts/min"
    return how + "; downtime from probe timestamps (first failed to next successful probe)"


def judge(
    a: Availability, how: str | None = None, extra: dict[str, Any] | None = None
) -> Requirement:
    """FAIL when downtime exceeds the budget; INCONCLUSIVE when probes are too coarse to
    tell. ``how``: what it was judged on (``judged_on``); ``extra``: more details."""
    reasons: list[str] = []
    if a.probes < 2:
        reasons.append("fewer than 2 probes")
    if a.downtime_s == 0 and a.resolution_s > a.budget_s:
        reasons.append(
            f"probes every {a.resolution_s:.3g} s can miss a whole outage longer than the "
            f"{a.budget_s:.3g} s budget: lower probe_interval_s"
        )
    status: Status = (
        "INCONCLUSIVE" if reasons else ("PASS" if a.downtime_s <= a.budget_s else "FAIL")
    )
    straddles = a.downtime_low_s <= a.budget_s < a.downtime_high_s
    return Requirement(
        BR_ID, a.availability * 100, "%", f"availability ≥ {a.target:.1%} "
        f"(downtime ≤ {a.budget_s:.3g} s in {a.window_s:g} s)", status,
        {
            "title": REQUIREMENTS[BR_ID][0],
            "judged_on": how or "downtime from probe timestamps (first failed to next "
                                "successful probe)",
            "downtime_s": a.downtime_s, "downtime_bounds_s": [a.downtime_low_s, a.downtime_high_s],
            "budget_s": a.budget_s, "probes": a.probes, "failed_probes": a.failed_probes,
            "throttled_probes": a.throttled_probes, "errors": a.errors,
            "outages": len(a.outages), "resolution_s": a.resolution_s, "window_s": a.window_s,
            "samples": a.probes, "ci_straddles_threshold": bool(straddles), "reasons": reasons,
            **(extra or {}),
        },
    )  # fmt: skip


def background_summary(ctx: TestContext, outcome: LoadOutcome) -> dict[str, Any]:
    """The background load in the result: its latency and generator, reported only."""
    return {
        "rate_per_min": ctx.section.background_rate_per_min,
        "judged": False,
        "note": "latency under the background load is reported, not judged (BR-PA-003 is A1's)",
        "records": str(outcome.load.records_path.relative_to(ctx.session_dir)),
        "complete": outcome.complete,
        "latency": outcome.latency.as_dict(),
        "load": outcome.load.summary,
        "generator": outcome.generator_health(),
        **outcome.service_result(),
    }


def _background_brief(b: dict[str, Any]) -> dict[str, Any]:
    """The background load as the requirement's details carry it (a few numbers)."""
    lat = b["latency"]
    return {"rate_per_min": b["rate_per_min"], "records": b["records"], "judged": False,
            "achieved_rate_per_s": b["generator"].get("achieved_rate_per_s"),
            "p95_s": lat["p95"]["value"], "success_rate": lat["success_rate"]["value"],
            "saturated": b["generator"].get("saturated")}  # fmt: skip


# -- running it ------------------------------------------------------------------------


def _progress(window_s: float, judged: str) -> Callable[[dict[str, object]], None]:
    """Probes so far and how many failed, per endpoint: a line in the notebook, updated
    in place, and one every ``SESSION_EVERY_S`` to a listening ``kubetest run``."""
    handle = None
    if in_notebook():
        from IPython.display import display

        handle = display({"text/plain": "A3 probing ..."}, raw=True, display_id=True)
    due, sent, failed = Throttle(), {e: 0 for e in ENDPOINTS}, {e: 0 for e in ENDPOINTS}

    def on_probe(row: dict[str, object]) -> None:
        name = str(row["endpoint"])
        sent[name] = sent.get(name, 0) + 1
        failed[name] = failed.get(name, 0) + (0 if row["ok"] else 1)
        if due():
            other = ", ".join(f"{e}: {failed[e]} failed" for e in sent if e != judged)
            line = (
                f"probes {float(row['t_s']):.0f}/{window_s:.0f} s: {sent[judged]} sent, "
                f"{failed[judged]} failed ({judged})"
            )
            line += f"; {other}" if other else ""
            if handle is not None:
                handle.update({"text/plain": line}, raw=True)
            session_note(PROGRESS_PREFIX + line)

    return on_probe


def _top_up(ctx: TestContext) -> Callable[[float], LoadOutcome]:
    """The background load for the rest of a window the load beside A3 left short."""

    def run_for(seconds: float) -> LoadOutcome:
        sec = ctx.section
        plan = background_plan(ctx, seconds / 60.0)
        outcome = execute(ctx, plan, BACKGROUND, progress=False)
        if outcome.load.interrupted:
            raise KeyboardInterrupt("A3 interrupted during its background load")
        session_note(
            f"{PROGRESS_PREFIX}topped up {seconds:.0f} s at {sec.background_rate_per_min:g}/min"
        )
        return outcome

    return run_for


def _under_load(
    ctx: TestContext, probing: Callable[..., pd.DataFrame], plan: LoadPlan
) -> tuple[pd.DataFrame, LoadOutcome]:
    """Probe in a thread while the background load runs in this one: the engine stops a
    load cleanly on Ctrl-C only from the main thread, and the probes stop with it. A pool's
    RemediationRequest follower is made first: loading the Kubernetes client holds the
    interpreter for ~0.3 s, which would stall the first probes and coarsen the resolution."""
    follower = follower_from_params(ctx.params) if plan.pool is not None else None
    try:
        return _probe_beside(ctx, probing, plan, follower)
    finally:
        if follower is not None:
            follower.stop()


def _probe_beside(
    ctx: TestContext,
    probing: Callable[..., pd.DataFrame],
    plan: LoadPlan,
    follower: RemediationFollower | None,
) -> tuple[pd.DataFrame, LoadOutcome]:
    stop, box = threading.Event(), {}

    def probe_thread() -> None:
        try:
            box["probes"] = probing(stop=stop)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=probe_thread, name="kubetest-a3-probes", daemon=True)
    thread.start()
    try:
        outcome = execute(ctx, plan, BACKGROUND, progress=False, follower=follower)
        if outcome.load.interrupted:
            raise KeyboardInterrupt("A3 interrupted during its background load")
        while thread.is_alive():
            thread.join(0.2)
    except BaseException:
        stop.set()
        thread.join(10)
        raise
    if "error" in box:
        raise box["error"]
    return box["probes"], outcome


def run(ctx: TestContext) -> A3Result:
    sec = ctx.section
    started = datetime.now(UTC)
    window_s = sec.duration_min * 60.0
    ctx.records_dir.mkdir(parents=True, exist_ok=True)
    targets = probe_targets(ctx)
    preflight_tls(ctx.params, ctx.health_url)  # a refused certificate fails now, in one line
    if sec.probe == "webhook":
        preflight_auth(ctx.params, targets["webhook"].url)  # and a refused token
        check_probe_alert(ctx, targets["webhook"])  # and a probe alert the service refuses
    ordered = [targets[sec.probe], *(t for name, t in targets.items() if name != sec.probe)]
    probing = partial(
        probe_endpoints, ordered, interval_s=sec.probe_interval_s,
        out_csv=ctx.records_dir / RECORDS, on_probe=_progress(window_s, sec.probe),
        verify=verify(ctx.params.target.tls), proxy=ctx.params.target.proxy,
    )  # fmt: skip
    plan = background_plan(ctx) if sec.background_rate_per_min else None
    outcome: LoadOutcome | None = None
    span: Span | None = None
    with scrape_metrics(ctx, "A3") as scrape:  # what the service did while it was probed
        scrape.align({"start_epoch": time.time()})
        if sec.during_load:
            probes, outcome, span = probe_beside(
                ctx.session_dir, probing, window_s, _top_up(ctx) if plan is not None else None
            )
            window_s = span_window_s(probes, sec.probe_interval_s, window_s)
        elif plan is None:
            probes = probing(window_s)
        else:
            probes, outcome = _under_load(ctx, partial(probing, window_s), plan)
    frames = split_series(probes)
    series = {
        name: availability_from_probes(
            frames.get(name, probes.iloc[0:0]), window_s, sec.target, sec.probe_interval_s
        )
        for name in targets
    }
    avail = series[sec.probe]
    background = background_summary(ctx, outcome) if outcome is not None else None
    others = {name: {"url": targets[name].url, "downtime_s": a.downtime_s,
                     "failed_probes": a.failed_probes, "outages": len(a.outages)}
              for name, a in series.items() if name != sec.probe}  # fmt: skip
    extra: dict[str, Any] = {"probe": sec.probe, "endpoint_url": targets[sec.probe].url,
                             "other_series": others}  # fmt: skip
    if background is not None:
        extra["background"] = _background_brief(background)
    how = judged_on(
        sec.probe, targets[sec.probe].url, sec.probe_interval_s,
        sec.background_rate_per_min, span,
    )  # fmt: skip
    if span is not None:
        extra["beside"] = span.as_dict()
    service = scrape.summary()
    validity = a3_validity(service, outcome.load.summary if outcome is not None else None)
    req = apply_validity(judge(avail, how, extra), validity)
    ctx.save_result(
        {
            **result_head("A3 availability", started, complete=True),
            "requirements": [req.as_dict()],
            "validity": validity.as_dict(),
            "probe": sec.probe,
            "endpoints": {name: t.url for name, t in targets.items()},
            "availability": avail.as_dict(),
            "series": {name: a.as_dict() for name, a in series.items()},
            "records": f"records/{RECORDS}",
            "params": sec.model_dump(),
            "service_metrics": service,
            **({"background": background} if background is not None else {}),
            **({"beside": span.as_dict()} if span is not None else {}),
        }
    )
    return A3Result(req, avail, probes, sec.probe, series, outcome)


# -- what the report says about A3 (from its result file alone) -------------------------


def report_sentences(result: dict[str, Any]) -> list[str]:
    """Which endpoint BR-PA-001 was judged on, the other series, the background load.
    A result from before A3 probed the webhook was judged on the health endpoint."""
    probe = result.get("probe", "health")
    urls = result.get("endpoints") or {}
    req = next((r for r in result.get("requirements", []) if r["id"] == BR_ID), {})
    how = (req.get("details") or {}).get("judged_on", "")
    first = (
        f"BR-PA-001 was judged on {how}."
        if "probe" in result
        else (f"BR-PA-001 was judged on the health endpoint: {how}.")
    )
    out = [first + (f" Probed URL: {urls[probe]}." if urls.get(probe) else "")]
    for name, s in sorted((result.get("series") or {}).items()):
        if name != probe:
            out.append(
                f"The {name} endpoint"
                + (f" ({urls[name]})" if urls.get(name) else "")
                + f" was probed on the same schedule as a second series, not judged: "
                f"{s['downtime_s']:.3f} s down in {len(s['outages'])} outage(s), "
                f"{s['failed_probes']} of {s['probes']} probes failed."
            )
    beside = result.get("beside")
    if beside:
        out.append(
            f"A3 ran beside {', '.join(beside['tests']) or 'no test'} (a3_availability."
            f"during_load): under their load for {beside['load_s']:.0f} s, then "
            + (f"under the background load for {beside['top_up_s']:.0f} s."
               if beside["top_up_s"] else "no top-up was needed.")
        )  # fmt: skip
    bg = result.get("background")
    if bg:
        lat, gen = bg["latency"], bg.get("generator") or {}
        achieved = gen.get("achieved_rate_per_s")
        sr = lat["success_rate"]["value"]
        out.append(
            f"A background load of {bg['rate_per_min']:g} alerts/min ran "
            + ("as the top-up" if beside else "for the window")
            + (f" (achieved {achieved * 60:,.0f}/min)" if achieved is not None else "")
            + f": p95 {lat['p95']['value']:.3f} s, success "
            + ("—" if sr is None else f"{sr:.2%}")
            + f" over {lat['count']} alerts (reported, not judged; {bg['records']})."
        )
    return out


def report_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per probed endpoint, the judged one first."""
    probe = result.get("probe", "health")
    series = result.get("series") or {probe: result.get("availability", {})}
    rows = []
    for name, s in sorted(series.items(), key=lambda kv: kv[0] != probe):
        if not s:
            continue
        rows.append({
            "endpoint": name, "judged": "yes" if name == probe else "no",
            "availability": f"{s['availability']:.4%}", "downtime (s)": f"{s['downtime_s']:.3f}",
            "bounds (s)": f"{s['downtime_low_s']:.3f}–{s['downtime_high_s']:.3f}",
            "budget (s)": f"{s['budget_s']:.3f}", "probes": s["probes"],
            "failed": s["failed_probes"],
            "throttled (429)": s.get("throttled_probes", 0), "outages": len(s["outages"]),
        })  # fmt: skip
    return rows


def report_figures(session_dir: Path, result: dict[str, Any], slo_p95_s: float) -> list[Figure]:
    """Both series on one timeline, and the background load's latency, from the records."""
    from kubetest import plots
    from kubetest.engine.records import read_records

    figs: list[Figure] = []
    path = Path(session_dir) / str(result.get("records", ""))
    if path.is_file():
        probe = result.get("probe", "health")
        series = result.get("series") or {probe: result.get("availability", {})}
        outages = {name: list(s.get("outages", [])) for name, s in series.items()}
        figs.append(plots.availability_timeline(pd.read_csv(path), outages, judged=probe))
    bg = result.get("background") or {}
    bg_path = Path(session_dir) / str(bg.get("records", ""))
    if bg and bg_path.is_file():
        fig = plots.latency_over_time(read_records(bg_path), slo_p95_s)
        fig.axes[0].set_title("A3 background load: latency over time (reported, not judged)")
        figs.append(fig)
    return figs
