"""Run a load plan and summarise it: the engine's entry point.

``run_load`` runs a ``LoadPlan`` (``engine.plan``) as shards through a runner
(``engine.runner``: one ``shard.run_shard`` call in-process, or one per Dask worker),
shows progress, turns SIGINT/SIGTERM into a clean stop (``engine.stop``), merges the
shards' histograms and writes a summary whose every figure comes from the records'
counters and HDR histograms (bounded memory, however long the run).

The summary also says whether the *generator* kept up (``saturated``): the rules are in
``engine.judge``. A lost shard (its worker died) keeps its flushed records in the counts
and makes the run ``complete: false``.

Success rates count ``accepted`` over requests that got an answer or a network error;
generator-side classes (late, dropped, cancelled) are kept out and reported apart.

A plan's ``abort`` rule (``engine.abort``, params ``slo.abort``) stops the run early once
the service breaches it window after window: the summary's ``aborted`` holds the reason
(the first shard's to abort), the records up to the stop are kept, and the run is judged
on what came due before it (so an abort never looks like a generator shortfall). An
aborted run is not ``interrupted``: it ended by rule, not by a user. Nor is a run its
plan's ``decide`` rule stopped once its verdict was clear (``decided``: status, reason).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from kubetest.engine.hdrlog import hdr_log_of
from kubetest.engine.judge import judge, max_s, merged, per_worker, quantile_s
from kubetest.engine.plan import LoadPlan, check_plan, planned_s, public_url
from kubetest.engine.progress import make_display, session_note
from kubetest.engine.records import OUTCOMES, part_name
from kubetest.engine.result import ShardInfo, ShardResult, first_abort, first_decision
from kubetest.engine.runner import DaskRunner, InProcessRunner, RunControl, Runner
from kubetest.engine.schedule import mean_rate
from kubetest.engine.stop import Stopper, StopToken
from kubetest.tls import tls_problem


@dataclass
class LoadResult:
    summary: dict[str, Any]
    records_path: Path
    histogram: HdrHistogram
    interrupted: bool


def run_load(
    plan: LoadPlan,
    out_dir: Path,
    *,
    name: str = "records",
    workers: int = 1,
    scheduler: str | None = None,
    records_url: str | None = None,
    progress: bool | None = None,
    start_delay_s: float = 0.3,
    write_summary: bool = True,
) -> LoadResult:
    """Run ``plan``; the summary goes to ``out_dir/<name>.summary.json`` (unless
    ``write_summary`` is false) and into the result.

    One process (``workers=1``, no ``scheduler``): ``run_shard`` once, in a thread here;
    records stream to ``out_dir/<name>.csv``. ``workers > 1``: that many shards on a local
    Dask cluster (arrival i to shard i mod N; closed loop: the concurrency split);
    ``scheduler``: on an existing Dask cluster (``workers`` shards, or one per worker when
    ``workers`` is 1). Sharded records are the folder ``out_dir/<name>/`` of Parquet parts
    (``records_url``: where remote workers write them, see ``engine.cluster``).
    SIGINT/SIGTERM stop the run cleanly (``interrupted``, not ``complete``).
    """
    check_plan(plan)
    if plan.pool is not None and hasattr(plan.payload, "warm"):
        # a template per workload and type (~0.3 ms each): built before the common start
        # instant is fixed, or the first arrivals would be late (the shard's warm-up,
        # after it, then finds them built)
        plan.payload.warm(plan.pool.names)
    workers = max(1, int(workers))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    display = make_display(progress, f"load {plan.mode}", planned_s(plan))
    token = StopToken()
    stopper = Stopper(token)
    runner: Runner
    if workers == 1 and not scheduler:
        runner = InProcessRunner(start_delay_s)
    else:
        runner = DaskRunner(workers, scheduler, records_url, progress, start_delay_s)
    records_path = runner.records_path(out_dir, name)
    try:
        runs = runner.run(plan, records_path, RunControl(token, stopper, display))
    finally:
        display.close()
    results, infos = runs.results, runs.shards
    write_hdr_logs(results, records_path)
    lost = {i.shard for i in infos if i.lost}
    interrupted = stopper.count > 0 or any(r.interrupted for r in results if r.shard not in lost)
    aborted = first_abort(results)
    if aborted is not None:  # the other shards stopped because of it, not a user
        interrupted = stopper.count > 0
        if progress is not False:
            sys.stderr.write(f"kubetest: {aborted.aborted}\n")
        session_note(f"load {plan.mode}: {aborted.aborted}")
    elif first_decision(results) is not None:  # the decider stopped it, not a user
        interrupted = stopper.count > 0
    summary, hist = summarise_shards(
        results,
        plan,
        start_epoch=runs.start_epoch,
        workers=len(infos),
        interrupted=interrupted,
        records_path=records_path,
        shards=infos,
        dashboard_url=runs.dashboard_url,
        cluster=runs.cluster,
    )
    if write_summary:
        (out_dir / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return LoadResult(summary, records_path, hist, interrupted)


def hdr_log_path(records_path: Path, shard: int) -> Path:
    """Where a shard's HDR interval log is: beside a CSV, or in the folder of parts."""
    if Path(records_path).suffix == ".csv":
        return hdr_log_of(records_path)
    return hdr_log_of(Path(records_path) / part_name(shard, ".csv"))


def write_hdr_logs(results: list[ShardResult], records_path: Path) -> None:
    """Every shard's log from its result, where the run's records are: a shard on a
    remote Dask worker streamed its own to a folder of that machine."""
    for r in results:
        if r.hdr_log and Path(records_path).is_dir():
            hdr_log_path(records_path, r.shard).write_text(r.hdr_log)


def sampling(results: list[ShardResult], plan: LoadPlan) -> dict[str, Any] | None:
    """How the records were sampled (``records.max_per_s``), or None when every request
    has one."""
    if all(r.records_every <= 1 for r in results):
        return None
    kept = sum(r.records_kept or 0 for r in results)
    total = sum(
        r.dispatched + r.errors.get("late", 0) + r.errors.get("dropped", 0) for r in results
    )
    return {"max_per_s": plan.records_max_per_s, "kept": kept, "of": total,
            "every": max(r.records_every for r in results)}  # fmt: skip


def summarise_shards(
    results: list[ShardResult],
    plan: LoadPlan,
    *,
    start_epoch: float,
    workers: int,
    interrupted: bool,
    records_path: Path,
    shards: list[ShardInfo] | None = None,
    dashboard_url: str | None = None,
    cluster: str | None = None,
) -> tuple[dict[str, Any], HdrHistogram]:
    """Merge shard results into the run summary (see the module docstring for the rules).

    ``shards`` (one per shard run, default: one per result) says where each ran and
    which were lost. Counts and percentiles cover every result, lost shards' rebuilt
    partial ones included (so they equal those of the union of the records); the
    generator is judged on the shards that finished, overall and one by one. A lost
    shard makes the run incomplete, never a quietly lower rate.
    """
    if shards is None:
        shards = [ShardInfo(r.shard) for r in results]
    lost = {i.shard for i in shards if i.lost}
    lat = merged([r.latency_hdr for r in results])
    service = merged([r.service_hdr for r in results])
    outcomes = dict.fromkeys(OUTCOMES, 0)
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for r in results:
        for k, v in r.outcomes.items():
            outcomes[k] = outcomes.get(k, 0) + v
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r.error_samples.items():
            samples.setdefault(k, v)
    sent = sum(r.dispatched for r in results)
    completed = sum(r.completed for r in results)
    accepted = outcomes["accepted"]
    not_sent = errors.get("late", 0) + errors.get("dropped", 0)
    scheduled = sum(r.scheduled for r in results)
    end = max((r.end_s for r in results), default=0.0)

    finished = [r for r in results if r.shard not in lost]
    n_shards = max(1, len(shards))
    share = len(finished) / n_shards
    abort = first_abort(results)
    decided = first_decision(results)
    cut = interrupted or abort is not None or decided is not None  # on what came due
    judged = judge(finished, plan, interrupted=cut, share=share)
    overall = judge(results, plan, interrupted=cut, share=1.0)
    workers_rows, shard_reasons, shard_notes = per_worker(results, shards, plan, cut)
    reasons = judged.reasons + shard_reasons
    target: float | None = None
    if plan.mode == "open":
        assert plan.schedule is not None
        target = plan.target_rate_per_s or mean_rate(plan.schedule)
    lag = overall.lag
    notes = [n for r in results for n in r.notes] + shard_notes
    sampled = sampling(results, plan)
    if sampled is not None:
        notes.append(
            f"records sampled: {sampled['kept']} of {sampled['of']} requests have a record "
            f"(above records.max_per_s = {sampled['max_per_s']:g}/s, up to 1 in "
            f"{sampled['every']}); counts and percentiles come from the HDR histograms and "
            "interval logs, which count every request"
        )
    problem = tls_problem(samples.get("tls", ""))
    if problem is not None:  # every request fails alike: say the fix once
        notes.append(problem.line(public_url(plan.url)))
    lost_rows = [
        {"worker": i.shard, "address": i.address, "reason": i.lost, "records": i.records}
        for i in shards
        if i.lost
    ]
    if lost_rows:
        notes.append(
            f"{len(lost_rows)} of {n_shards} shards lost: the run is incomplete; counts, "
            "percentiles and achieved_rate_per_s cover the records kept (a lost shard's "
            "flushed ones included), the saturation judgement the shards that finished"
        )
    summary: dict[str, Any] = {
        "start_epoch": start_epoch,
        "start_time": datetime.fromtimestamp(start_epoch, UTC).isoformat(timespec="milliseconds"),
        "duration_s": end,
        "mode": plan.mode,
        "api": plan.api,
        "url": public_url(plan.url),
        "scheduled_count": scheduled,
        "sent_count": sent,
        "completed_count": completed,
        "success_count": accepted,
        "success_rate": accepted / completed if completed else None,
        "outcomes": outcomes,
        "errors": dict(sorted(errors.items())),
        "error_samples": samples,
        "p50": quantile_s(lat, 50),
        "p95": quantile_s(lat, 95),
        "p99": quantile_s(lat, 99),
        "max": max_s(lat),
        "mean": lat.get_mean_value() / 1e6 if lat.get_total_count() else None,
        "service_p50": quantile_s(service, 50),
        "service_p95": quantile_s(service, 95),
        "achieved_rate_per_s": overall.achieved,
        "target_rate_per_s": target,
        "concurrency": plan.concurrency if plan.mode == "closed" else None,
        "schedule_lag_p50": quantile_s(lag, 50) if plan.mode == "open" else None,
        "schedule_lag_p99": quantile_s(lag, 99) if plan.mode == "open" else None,
        "schedule_lag_max": max_s(lag) if plan.mode == "open" else None,
        "schedule_lag_growth": judged.growth,
        "late_or_dropped": not_sent,
        "max_in_flight": sum(r.max_in_flight for r in results),
        "max_in_flight_seen": sum(r.max_in_flight_seen for r in results),
        "loop_busy": judged.loop_busy,
        "loop_lag_p99": judged.loop_lag_p99,
        "saturated": bool(reasons),
        "saturation_reasons": reasons,
        "timeout_s": plan.timeout_s,
        "workers": sum(1 for r in results if r.dispatched > 0),  # whose load is on record
        "shards": max(workers, n_shards),
        "per_worker": workers_rows,
        "workers_lost": len(lost_rows),
        "lost_shards": lost_rows,
        "cluster": cluster,
        "dashboard_url": dashboard_url,
        "interrupted": interrupted,
        "aborted": abort.aborted if abort is not None else None,
        "aborted_at_s": abort.aborted_at_s if abort is not None else None,
        "abort_rule": asdict(plan.abort) if plan.abort is not None else None,
        "decided": decided,  # the plan's early decision (status, reason, at_s) when it stopped
        "complete": not interrupted and not lost_rows,
        "records": str(records_path),
        "records_sampled": sampled,
        "hdr_logs": [str(hdr_log_path(records_path, r.shard)) for r in results if r.hdr_log],
        "client": plan.client,
        "notes": notes,
    }
    return summary, lat
