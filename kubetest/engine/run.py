"""Run a load plan and judge the measurement: the engine's entry points.

``run_load`` runs a ``LoadPlan`` as shards (``shard.run_shard``: one call in-process, or
one per Dask worker, ``engine.cluster``), shows progress, turns SIGINT/SIGTERM into a
clean stop, merges the shards' histograms and writes a summary whose every figure comes
from the records' counters and HDR histograms (bounded memory, however long the run).

The summary also says whether the *generator* kept up (``saturated``), because a
generator that falls behind reports its own delays as target latency:

* achieved send rate < ``RATE_SHORTFALL`` (95 %) of the schedule's rate. Counted on
  requests *sent*, whatever their answer: a slow or failing target with in-flight room
  left does not flag the generator;
* schedule lag p99 > ``LAG_P99_LIMIT_S`` (50 ms) with at least ``LAG_LATE_MIN`` (3)
  arrivals that late: below 100 arrivals a p99 is the maximum, and one stall of a busy
  machine (a page fault, a neighbour's burst) is not a generator that cannot keep up;
  or lag growing by more than ``LAG_GROWTH_LIMIT_S`` (25 ms, median of the per-second
  max lag, last vs first quarter);
* event-loop thread busy > ``LOOP_BUSY_LIMIT`` (90 % CPU of wall time), or its 25 ms
  ticker oversleeping by more than ``LOOP_LAG_P99_LIMIT_S`` (50 ms) at p99;
* any arrival not sent (``dropped`` at the in-flight cap, ``late`` beyond ``max_lag_s``).
  A target too slow for rate × latency to fit under ``max_in_flight`` lands here: the
  numbers then describe what was sent, and the reason says to raise the cap.

Sharded runs are judged overall and shard by shard (``per_worker``: a shard that falls
behind distorts the union of the schedule even when the total looks fine). A shard whose
worker died is *lost*: its flushed records still count, the run is ``complete: false``,
and the rate judgement covers the shards that finished, so a death is never reported as
generator saturation nor hidden in a lower achieved rate.

Success rates count ``accepted`` over requests that got an answer or a network error;
generator-side classes (late, dropped, cancelled) are kept out and reported apart.

A plan's ``abort`` rule (``engine.abort``, params ``slo.abort``) stops the run early once
the service breaches it window after window: the summary's ``aborted`` holds the reason
(the first shard's to abort), the records up to the stop are kept, and the run is judged
on what came due before it (so an abort never looks like a generator shortfall). An
aborted run is not ``interrupted``: it ended by rule, not by a user.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from hdrh.histogram import HdrHistogram

from kubetest.alerts import PayloadFactory
from kubetest.engine.abort import AbortRule
from kubetest.engine.client import APIS, MAX_BODY_BYTES
from kubetest.engine.guide import header_line, summary_line
from kubetest.engine.pool import WorkloadScheduler
from kubetest.engine.progress import Display, in_notebook, make_display, session_note
from kubetest.engine.records import OUTCOMES, new_histogram
from kubetest.engine.schedule import constant, mean_rate, planned_duration, poisson
from kubetest.engine.shard import ShardResult, StopToken, run_shard
from kubetest.errors import KubetestError
from kubetest.tls import TlsSettings, tls_problem

RATE_SHORTFALL = 0.95
LAG_P99_LIMIT_S = 0.050
#: Arrivals later than LAG_P99_LIMIT_S needed before the p99 rule speaks.
LAG_LATE_MIN = 3
LAG_GROWTH_LIMIT_S = 0.025
LOOP_BUSY_LIMIT = 0.90
LOOP_LAG_P99_LIMIT_S = 0.050
#: A worker clock further than this from the client's gets a warning (engine.cluster).
CLOCK_WARN_S = 0.005


@dataclass
class LoadPlan:
    """What to send. Open loop: ``schedule`` (intended offsets, s). Closed loop:
    ``concurrency`` workers for ``duration_s``. The bearer token is read from
    ``os.environ[auth_token_env]`` when requests are sent and never stored."""

    url: str
    api: str = "webhook"
    mode: str = "open"
    schedule: np.ndarray | None = None
    concurrency: int = 0
    duration_s: float = 0.0
    timeout_s: float = 30.0
    max_in_flight: int = 10_000
    payload: PayloadFactory = field(
        default_factory=lambda: PayloadFactory(["high_memory", "high_cpu", "pod_crash"])
    )
    auth_token_env: str | None = None
    target_rate_per_s: float | None = None
    max_lag_s: float = 1.0  # an arrival this far behind schedule is recorded late, not sent
    tls: TlsSettings = field(default_factory=TlsSettings)  # the context is built per shard
    # the workloads alerts name (kubernaut: real Deployments); one process only (params)
    pool: WorkloadScheduler | None = None
    abort: AbortRule | None = None  # stop early on a windowed SLO breach (engine.abort)
    max_body_bytes: int = MAX_BODY_BYTES  # bytes of an answer read; past it: ``oversized``


@dataclass
class LoadResult:
    summary: dict[str, Any]
    records_path: Path
    histogram: HdrHistogram
    interrupted: bool


def _check_plan(plan: LoadPlan) -> None:
    parts = urlsplit(plan.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KubetestError(f"load URL must be http(s)://host..., got {plan.url!r}")
    if plan.api not in APIS:
        raise KubetestError(f"api must be one of {', '.join(APIS)}, got {plan.api!r}")
    if plan.mode == "open":
        if plan.schedule is None:
            raise KubetestError("open-loop plan needs a schedule (kubetest.engine.schedule)")
        if len(plan.schedule) and np.any(np.diff(plan.schedule) < 0):
            raise KubetestError("schedule offsets must be sorted")
    elif plan.mode == "closed":
        if plan.concurrency <= 0 or plan.duration_s <= 0:
            raise KubetestError("closed-loop plan needs concurrency > 0 and duration_s > 0")
    else:
        raise KubetestError(f"mode must be 'open' or 'closed', got {plan.mode!r}")
    if plan.timeout_s <= 0 or plan.max_in_flight <= 0 or plan.max_lag_s <= 0:
        raise KubetestError("timeout_s, max_in_flight and max_lag_s must be > 0")
    if plan.auth_token_env and plan.auth_token_env not in os.environ:
        raise KubetestError(f"${plan.auth_token_env} (auth_token_env) is not set: export it")


def _planned_s(plan: LoadPlan) -> float:
    if plan.mode == "closed":
        return plan.duration_s
    assert plan.schedule is not None
    return planned_duration(plan.schedule, plan.target_rate_per_s)


# -- stopping ----------------------------------------------------------------------------


class _Stopper:
    """First signal: graceful stop. Second: cancel in-flight requests now."""

    def __init__(self, token: StopToken) -> None:
        self.token = token
        self.count = 0

    def __call__(self, *_: object) -> None:
        self.count += 1
        if self.count == 1:
            self.token.set()
            sys.stderr.write(
                "\nkubetest: stopping - in-flight requests get a short grace "
                "(interrupt again to cancel them now)\n"
            )
        else:
            self.token.force()


@contextmanager
def _signals(handler: Callable[..., None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``handler`` for the run (main thread only); restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


# -- one process: run_shard in a thread, so a notebook's running loop and signals both work --


def _run_in_thread(fn: Callable[[], ShardResult], stopper: _Stopper) -> ShardResult:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kubetest-load", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:  # a handler we could not replace (not the main thread...)
            stopper()
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- several processes or machines: Dask (engine/cluster.py) --------------------------------


@dataclass
class ShardInfo:
    """Where a shard ran and how it ended, for the summary's ``per_worker``."""

    shard: int
    address: str | None = None  # Dask worker; None in-process
    clock_offset_s: float = 0.0  # worker clock - client clock
    clock_uncertainty_s: float = 0.0
    lost: str | None = None  # why it ended without a result (worker died, task failed)
    records: str | None = None  # its part in the records folder
    notes: list[str] = field(default_factory=list)


def _announce(url: str | None, progress: bool | None) -> None:
    """The Dask dashboard link: a link in a notebook, a line on the terminal."""
    if not url or progress is False:
        return
    if in_notebook():
        from html import escape

        from IPython.display import HTML, display

        link = escape(url, quote=True)
        display(HTML(f'Dask dashboard (live while the load runs): <a href="{link}" '
                     f'target="_blank">{link}</a>'))  # fmt: skip
    else:
        sys.stderr.write(f"kubetest: Dask dashboard {url}\n")


def _prepare_folder(folder: Path) -> None:
    """A fresh records folder: parts of an earlier run of the same name would mix in."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("part-*.parquet"), *folder.glob("part-*.csv")]:
        old.unlink()


def _run_dask(
    plan: LoadPlan,
    folder: Path,
    workers: int,
    scheduler: str | None,
    records_url: str | None,
    stopper: _Stopper,
    token: StopToken,
    display: Display,
    progress: bool | None,
    start_delay_s: float,
) -> tuple[list[ShardResult], list[ShardInfo], float, str | None, str]:
    from kubetest.engine import cluster as dask_cluster

    _prepare_folder(folder)
    with dask_cluster.open_cluster(workers, scheduler) as cl:
        _announce(cl.dashboard_url, progress)
        with _signals(stopper):
            shards, start_epoch = dask_cluster.run_on_dask(
                plan,
                cl,
                workers,
                folder,
                stop=token,
                display=display,
                planned_s=_planned_s(plan),
                records_url=records_url,
                start_delay_s=max(start_delay_s, dask_cluster.START_DELAY_S),
            )
    results = [s.result for s in shards if s.result is not None]
    infos = [
        ShardInfo(s.shard, s.address, s.clock_offset_s, s.clock_uncertainty_s, s.lost, s.part,
                  s.notes)
        for s in shards
    ]  # fmt: skip
    return results, infos, start_epoch, cl.dashboard_url, cl.address


# -- the entry point ---------------------------------------------------------------------


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
    _check_plan(plan)
    if plan.pool is not None and hasattr(plan.payload, "warm"):
        # a template per workload and type (~0.3 ms each): built before the common start
        # instant is fixed, or the first arrivals would be late (the shard's warm-up,
        # after it, then finds them built)
        plan.payload.warm(plan.pool.names)
    workers = max(1, int(workers))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    planned = _planned_s(plan)
    display = make_display(progress, f"load {plan.mode}", planned)
    token = StopToken()
    stopper = _Stopper(token)
    infos: list[ShardInfo] = [ShardInfo(0)]
    dashboard: str | None = None
    where: str | None = None
    try:
        if workers == 1 and not scheduler:
            records_path = out_dir / f"{name}.csv"
            start_epoch = time.time() + start_delay_s
            with _signals(stopper):
                result = _run_in_thread(
                    lambda: run_shard(
                        plan,
                        0,
                        1,
                        start_epoch,
                        records_path,
                        stop=token,
                        on_progress=display.update,
                    ),
                    stopper,
                )
            results = [result]
        else:
            records_path = out_dir / name
            results, infos, start_epoch, dashboard, where = _run_dask(
                plan, records_path, workers, scheduler, records_url, stopper, token, display,
                progress, start_delay_s,
            )  # fmt: skip
            if not results:
                raise KubetestError(
                    "every load shard failed: " + "; ".join(f"{i.shard}: {i.lost}" for i in infos)
                )
    finally:
        display.close()
    lost = {i.shard for i in infos if i.lost}
    interrupted = stopper.count > 0 or any(r.interrupted for r in results if r.shard not in lost)
    aborted = first_abort(results)
    if aborted is not None:  # the other shards stopped because of it, not a user
        interrupted = stopper.count > 0
        if progress is not False:
            sys.stderr.write(f"kubetest: {aborted.aborted}\n")
        session_note(f"load {plan.mode}: {aborted.aborted}")
    summary, hist = summarize(
        results,
        plan,
        start_epoch=start_epoch,
        workers=len(infos),
        interrupted=interrupted,
        records_path=records_path,
        shards=infos,
        dashboard_url=dashboard,
        cluster=where,
    )
    if write_summary:
        (out_dir / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return LoadResult(summary, records_path, hist, interrupted)


# -- judging the measurement -------------------------------------------------------------


def first_abort(results: list[ShardResult]) -> ShardResult | None:
    """The shard whose abort rule stopped the run first, if one did."""
    aborted = [r for r in results if r.aborted]
    return min(aborted, key=lambda r: r.aborted_at_s or 0.0) if aborted else None


def _merge(encoded: list[bytes]) -> HdrHistogram:
    hist = new_histogram()
    for blob in encoded:
        hist.decode_and_add(blob)
    return hist


def _q(hist: HdrHistogram, pct: float) -> float | None:
    if hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(pct) / 1e6


def _count_above(hist: HdrHistogram, limit_s: float) -> int:
    """How many recorded values exceed ``limit_s`` (to the histogram's precision)."""
    edge = hist.get_highest_equivalent_value(int(limit_s * 1e6))
    return sum(
        item.count_at_value_iterated_to
        for item in hist.get_recorded_iterator()
        if item.value_iterated_to > edge
    )


def _max(hist: HdrHistogram) -> float | None:
    return hist.get_max_value() / 1e6 if hist.get_total_count() else None


def _lag_growth(per_second: np.ndarray) -> float | None:
    seen = per_second[per_second >= 0]
    if len(seen) < 8:
        return None
    quarter = len(seen) // 4
    return float(np.median(seen[-quarter:]) - np.median(seen[:quarter]))


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class _Judgement:
    """The generator's self-judgement over a set of shards (all of them, or one)."""

    achieved: float
    reasons: list[str]
    lag: HdrHistogram
    loop_lag_p99: float | None
    growth: float | None
    loop_busy: float


def _judge(
    results: list[ShardResult], plan: LoadPlan, *, interrupted: bool, share: float
) -> _Judgement:
    """Did these shards, carrying ``share`` of the plan, keep up? (module docstring rules)"""
    lag = _merge([r.lag_hdr for r in results])
    loop_lag = _merge([r.loop_lag_hdr for r in results])
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    sent = sum(r.dispatched for r in results)
    scheduled = sum(r.scheduled for r in results)
    dispatch_end = max((r.dispatch_end_s for r in results), default=0.0)
    last_sent = max((r.last_sent_s for r in results), default=0.0)
    loop_busy = max((r.loop_busy for r in results), default=0.0)
    n_sec = max((len(r.lag_max_by_second) for r in results), default=0)
    per_second = np.full(n_sec, -1.0)
    for r in results:
        arr = np.asarray(r.lag_max_by_second)
        per_second[: len(arr)] = np.maximum(per_second[: len(arr)], arr)

    reasons: list[str] = []
    growth: float | None = None
    if plan.mode == "open":
        assert plan.schedule is not None
        target = plan.target_rate_per_s or mean_rate(plan.schedule)
        gap = 1.0 / (target * share) if target else 0.0
        full_span = planned_duration(plan.schedule, plan.target_rate_per_s)
        span = dispatch_end if interrupted else full_span
        window = max(span, last_sent + gap, 1e-9)
        achieved = sent / window
        expected = scheduled / max(span, 1e-9)
        if scheduled and achieved < RATE_SHORTFALL * expected:
            reasons.append(
                f"sent {achieved:.1f}/s, {achieved / expected:.0%} of the scheduled "
                f"{expected:.1f}/s (limit {RATE_SHORTFALL:.0%})"
            )
        lag_p99 = _q(lag, 99)
        if (
            lag_p99 is not None
            and lag_p99 > LAG_P99_LIMIT_S
            and _count_above(lag, LAG_P99_LIMIT_S) >= LAG_LATE_MIN
        ):
            reasons.append(
                f"schedule lag p99 {lag_p99 * 1e3:.0f} ms > {LAG_P99_LIMIT_S * 1e3:.0f} ms"
            )
        growth = _lag_growth(per_second)
        if growth is not None and growth > LAG_GROWTH_LIMIT_S:
            reasons.append(f"schedule lag grew by {growth * 1e3:.0f} ms over the run")
    else:
        achieved = sum(r.completed for r in results) / max(dispatch_end, 1e-9)
    if loop_busy > LOOP_BUSY_LIMIT:
        reasons.append(f"event loop busy {loop_busy:.0%} > {LOOP_BUSY_LIMIT:.0%} (CPU-bound)")
    loop_lag_p99 = _q(loop_lag, 99)
    if loop_lag_p99 is not None and loop_lag_p99 > LOOP_LAG_P99_LIMIT_S:
        reasons.append(f"event loop stalls: ticker lag p99 {loop_lag_p99 * 1e3:.0f} ms")
    if errors.get("dropped"):
        cap = sum(r.max_in_flight for r in results)
        reasons.append(
            f"{errors['dropped']} arrivals dropped: {cap} requests already in flight "
            "(the target is slower than rate x latency allows; raise max_in_flight)"
        )
    if errors.get("late"):
        reasons.append(
            f"{errors['late']} arrivals late by more than {plan.max_lag_s:g} s, not sent"
        )
    return _Judgement(achieved, reasons, lag, loop_lag_p99, growth, loop_busy)


def _per_worker(
    results: list[ShardResult],
    shards: list[ShardInfo],
    plan: LoadPlan,
    interrupted: bool,
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Per-shard rows of the summary, with the shard-level saturation and clock warnings.
    Returns (rows, reasons to add to the overall judgement, notes)."""
    by_shard = {r.shard: r for r in results}
    n = max(1, len(shards))
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    notes: list[str] = []
    for info in shards:
        r = by_shard.get(info.shard)
        row: dict[str, Any] = {
            "worker": info.shard,
            "address": info.address,
            "status": "lost" if info.lost else "ok",
            "sent_count": r.dispatched if r else 0,
            "achieved_rate_per_s": None,
            "schedule_lag_p99": None,
            "loop_busy": None,
            "clock_offset_s": info.clock_offset_s,
            "clock_uncertainty_s": info.clock_uncertainty_s,
            "saturated": None,
            "saturation_reasons": [],
            "records": info.records,
        }
        if info.lost:
            row["lost_reason"] = info.lost
        if r is not None:
            j = _judge([r], plan, interrupted=interrupted or bool(info.lost), share=1.0 / n)
            row["achieved_rate_per_s"] = j.achieved
            row["schedule_lag_p99"] = _q(j.lag, 99) if plan.mode == "open" else None
            row["loop_busy"] = None if info.lost else j.loop_busy
            if not info.lost:
                row["saturated"] = bool(j.reasons)
                row["saturation_reasons"] = j.reasons
                if j.reasons and n > 1:
                    reasons.append(f"worker {info.shard}: " + "; ".join(j.reasons))
        where = f"worker {info.shard}" + (f" ({info.address})" if info.address else "")
        if abs(info.clock_offset_s) > CLOCK_WARN_S:
            notes.append(
                f"{where}: clock {info.clock_offset_s * 1e3:+.1f} ms off the client's "
                f"(±{info.clock_uncertainty_s * 1e3:.1f} ms); its start was shifted to match, "
                "but its timestamps only agree with other hosts' to that precision: sync "
                "clocks (chrony/NTP)"
            )
        elif info.clock_uncertainty_s > CLOCK_WARN_S:
            notes.append(
                f"{where}: clock offset known only to ±{info.clock_uncertainty_s * 1e3:.1f} ms "
                "(slow scheduler round trips); shards may start that far apart"
            )
        notes.extend(info.notes)
        rows.append(row)
    return rows, reasons, notes


def summarize(
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
    lat = _merge([r.latency_hdr for r in results])
    service = _merge([r.service_hdr for r in results])
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
    cut = interrupted or abort is not None  # judged on what came due before the stop
    judged = _judge(finished, plan, interrupted=cut, share=share)
    overall = _judge(results, plan, interrupted=cut, share=1.0)
    per_worker, shard_reasons, shard_notes = _per_worker(results, shards, plan, cut)
    reasons = judged.reasons + shard_reasons
    target: float | None = None
    if plan.mode == "open":
        assert plan.schedule is not None
        target = plan.target_rate_per_s or mean_rate(plan.schedule)
    lag = overall.lag
    notes = [n for r in results for n in r.notes] + shard_notes
    problem = tls_problem(samples.get("tls", ""))
    if problem is not None:  # every request fails alike: say the fix once
        notes.append(problem.line(_public_url(plan.url)))
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
        "url": _public_url(plan.url),
        "scheduled_count": scheduled,
        "sent_count": sent,
        "completed_count": completed,
        "success_count": accepted,
        "success_rate": accepted / completed if completed else None,
        "outcomes": outcomes,
        "errors": dict(sorted(errors.items())),
        "error_samples": samples,
        "p50": _q(lat, 50),
        "p95": _q(lat, 95),
        "p99": _q(lat, 99),
        "max": _max(lat),
        "mean": lat.get_mean_value() / 1e6 if lat.get_total_count() else None,
        "service_p50": _q(service, 50),
        "service_p95": _q(service, 95),
        "achieved_rate_per_s": overall.achieved,
        "target_rate_per_s": target,
        "concurrency": plan.concurrency if plan.mode == "closed" else None,
        "schedule_lag_p50": _q(lag, 50) if plan.mode == "open" else None,
        "schedule_lag_p99": _q(lag, 99) if plan.mode == "open" else None,
        "schedule_lag_max": _max(lag) if plan.mode == "open" else None,
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
        "per_worker": per_worker,
        "workers_lost": len(lost_rows),
        "lost_shards": lost_rows,
        "cluster": cluster,
        "dashboard_url": dashboard_url,
        "interrupted": interrupted,
        "aborted": abort.aborted if abort is not None else None,
        "aborted_at_s": abort.aborted_at_s if abort is not None else None,
        "abort_rule": asdict(plan.abort) if plan.abort is not None else None,
        "complete": not interrupted and not lost_rows,
        "records": str(records_path),
        "notes": notes,
    }
    return summary, lat


# -- the guide's generate_synthetic_alerts.py --------------------------------------------


def run_guide_load(
    url: str,
    rate_per_min: float,
    duration_min: float,
    types: list[str],
    out_dir: Path,
    *,
    unique: bool = True,
    api: str = "webhook",
    timeout_s: float = 30.0,
    workers: int = 1,
    scheduler: str | None = None,
    records_url: str | None = None,
    progress: bool | None = None,
    auth_token_env: str | None = None,
    arrivals: str = "constant",
    max_in_flight: int = 10_000,
    seed: int = 0,
    tls: TlsSettings | None = None,
    echo: TextIO | None = None,
) -> Path:
    """``kubetest load``: the guide's alert generator, measured properly.

    Writes ``alert_generation_<timestamp>.json`` (the guide's ``sent_count``,
    ``success_count``, ``success_rate`` as a fraction 0..1 like every summary, and
    ``avg_response_time``, plus p50/p95/p99/max in seconds, ``achieved_rate_per_min``,
    ``schedule_lag_p99``, ``saturated``, ``outcomes``, ``complete``) and
    ``records_<timestamp>.csv`` beside it (a folder ``records_<timestamp>/`` of Parquet
    parts with ``workers`` > 1 or ``scheduler``; the Dask dashboard link is in
    ``dashboard_url``); returns the JSON path. An interrupted run still writes both,
    marked ``complete: false``. ``echo``: where the plan line (rate, duration, alerts,
    URL) goes before the load and the summary line after (``engine.guide``).
    """
    if rate_per_min <= 0 or duration_min <= 0:
        raise KubetestError("--rate and --duration must be > 0")
    try:
        payload = PayloadFactory(list(types), unique=unique, seed=seed, api=api)
    except ValueError as exc:
        raise KubetestError(str(exc)) from None
    rate_s, duration_s = rate_per_min / 60.0, duration_min * 60.0
    if arrivals == "poisson":
        sched = poisson(rate_s, duration_s, seed=seed)
    elif arrivals == "constant":
        sched = constant(rate_s, duration_s)
    else:
        raise KubetestError(f"arrivals must be constant or poisson, got {arrivals!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    suffix, n = "", 1
    while (
        (out_dir / f"alert_generation_{stamp}{suffix}.json").exists()
        or (out_dir / f"records_{stamp}{suffix}.csv").exists()
        or (out_dir / f"records_{stamp}{suffix}").exists()
    ):
        suffix, n = f"_{n}", n + 1
    stamp += suffix
    plan = LoadPlan(
        url=url,
        api=api,
        mode="open",
        schedule=sched,
        timeout_s=timeout_s,
        max_in_flight=max_in_flight,
        payload=payload,
        auth_token_env=auth_token_env,
        target_rate_per_s=rate_s,
        tls=tls or TlsSettings(),
    )
    if echo is not None:
        echo.write(header_line(_public_url(url), rate_per_min, duration_min, len(sched)) + "\n")
        echo.flush()
    result = run_load(
        plan,
        out_dir,
        name=f"records_{stamp}",
        workers=workers,
        scheduler=scheduler,
        records_url=records_url,
        progress=progress,
        write_summary=False,
    )
    s = result.summary
    doc = {
        "sent_count": s["sent_count"],
        "success_count": s["success_count"],
        "success_rate": s["success_rate"],  # a fraction, as in ``summary``
        "avg_response_time": s["mean"],
        "p50": s["p50"],
        "p95": s["p95"],
        "p99": s["p99"],
        "max": s["max"],
        "achieved_rate_per_min": s["achieved_rate_per_s"] * 60.0,
        "target_rate_per_min": rate_per_min,
        "schedule_lag_p99": s["schedule_lag_p99"],
        "saturated": s["saturated"],
        "saturation_reasons": s["saturation_reasons"],
        "outcomes": s["outcomes"],
        "errors": s["errors"],
        "complete": s["complete"],
        "interrupted": s["interrupted"],
        "rate_per_min": rate_per_min,
        "duration_min": duration_min,
        "types": list(types),
        "records": result.records_path.name,
        "workers": s["workers"],
        "dashboard_url": s["dashboard_url"],
        "summary": s,
    }
    path = out_dir / f"alert_generation_{stamp}.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    if echo is not None:
        echo.write(summary_line(doc) + "\n")
        echo.flush()
    return path


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
