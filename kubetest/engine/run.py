"""Run a load plan and judge the measurement: the engine's entry points.

``run_load`` runs a ``LoadPlan`` as shards (``shard.run_shard``: one call in-process, or
one per local process), shows progress, turns SIGINT/SIGTERM into a clean stop, merges
the shards' histograms and writes a summary whose every figure comes from the records'
counters and HDR histograms (bounded memory, however long the run).

The summary also says whether the *generator* kept up (``saturated``), because a
generator that falls behind reports its own delays as target latency:

* achieved send rate < ``RATE_SHORTFALL`` (95 %) of the schedule's rate. Counted on
  requests *sent*, whatever their answer: a slow or failing target with in-flight room
  left does not flag the generator;
* schedule lag p99 > ``LAG_P99_LIMIT_S`` (50 ms), or lag growing by more than
  ``LAG_GROWTH_LIMIT_S`` (25 ms, median of the per-second max lag, last vs first quarter);
* event-loop thread busy > ``LOOP_BUSY_LIMIT`` (90 % CPU of wall time), or its 25 ms
  ticker oversleeping by more than ``LOOP_LAG_P99_LIMIT_S`` (50 ms) at p99;
* any arrival not sent (``dropped`` at the in-flight cap, ``late`` beyond ``max_lag_s``).
  A target too slow for rate × latency to fit under ``max_in_flight`` lands here: the
  numbers then describe what was sent, and the reason says to raise the cap.

Success rates count ``accepted`` over requests that got an answer or a network error;
generator-side classes (late, dropped, cancelled) are kept out and reported apart.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from hdrh.histogram import HdrHistogram

from kubetest.alerts import PayloadFactory
from kubetest.engine.client import APIS, GENERATOR_ERRORS
from kubetest.engine.progress import (
    REFRESH_S,
    Display,
    NullDisplay,
    RecentLatencies,
    Snapshot,
    make_display,
)
from kubetest.engine.records import COLUMNS, OUTCOMES, new_histogram
from kubetest.engine.schedule import constant, mean_rate, planned_duration, poisson
from kubetest.engine.shard import ShardResult, StopFile, StopToken, run_shard
from kubetest.errors import KubetestError

RATE_SHORTFALL = 0.95
LAG_P99_LIMIT_S = 0.050
LAG_GROWTH_LIMIT_S = 0.025
LOOP_BUSY_LIMIT = 0.90
LOOP_LAG_P99_LIMIT_S = 0.050


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

    def __init__(self, token: StopToken | StopFile) -> None:
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


# -- several local processes -------------------------------------------------------------


def _child_init() -> None:
    # Ctrl-C reaches the whole process group; the parent coordinates the stop instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _warm(_: int) -> int:
    import aiohttp  # noqa: F401  (import cost paid before the common start instant)

    return os.getpid()


class _Tail:
    """Progress for multi-process runs: reads the shards' record files as they grow."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.offsets = [0] * len(paths)
        self.rest = [b""] * len(paths)
        self.completed = self.accepted = self.not_sent = 0
        self.recent = RecentLatencies()
        i = COLUMNS.index
        self.col = (i("done_s"), i("latency_s"), i("outcome"), i("error"))

    def poll(self) -> None:
        d, lat, out, err = self.col
        for k, path in enumerate(self.paths):
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets[k])
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            self.offsets[k] += len(chunk)
            lines = (self.rest[k] + chunk).split(b"\n")
            self.rest[k] = lines.pop()
            for line in lines:
                parts = line.decode(errors="replace").split(",")
                if len(parts) != len(COLUMNS) or parts[0] == "seq":
                    continue
                if parts[err] in GENERATOR_ERRORS:
                    self.not_sent += parts[err] != "cancelled"
                    continue
                self.completed += 1
                if parts[out] == "accepted":
                    self.accepted += 1
                    self.recent.add(float(parts[d]), float(parts[lat]))

    def snapshot(self, elapsed: float, planned: float) -> Snapshot:
        self.poll()
        return Snapshot(
            elapsed,
            planned,
            self.completed,
            self.completed,
            self.accepted,
            self.not_sent,
            0,
            self.recent.p95(elapsed),
        )


def _run_processes(
    plan: LoadPlan,
    workers: int,
    part_paths: list[Path],
    stopper: _Stopper,
    stop: StopFile,
    display: Display,
    start_delay_s: float,
) -> tuple[list[ShardResult], list[str], float]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded (notebook) parent
    results: list[ShardResult] = []
    failures: list[str] = []
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_child_init) as pool:
        list(pool.map(_warm, range(workers)))
        start_epoch = time.time() + start_delay_s
        futures = [
            pool.submit(run_shard, plan, k, workers, start_epoch, part_paths[k], stop=stop)
            for k in range(workers)
        ]
        tail, planned = _Tail(part_paths), _planned_s(plan)
        pending = set(futures)
        while pending:
            try:
                _, pending = cf.wait(pending, timeout=REFRESH_S)
            except KeyboardInterrupt:
                stopper()
            if not isinstance(display, NullDisplay):  # tailing files costs parent CPU
                display.update(tail.snapshot(time.time() - start_epoch, planned))
        for k, fut in enumerate(futures):
            exc = fut.exception()
            if exc is None:
                results.append(fut.result())
            else:
                failures.append(f"shard {k}: {type(exc).__name__}: {exc}")
    return results, failures, start_epoch


def _concat(parts: list[Path], dest: Path) -> None:
    """Join shard record files into one CSV (one header), then remove the parts."""
    with dest.open("wb") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        for part in parts:
            if not part.exists():
                continue
            with part.open("rb") as fh:
                fh.readline()  # header
                shutil.copyfileobj(fh, out)
            part.unlink()


# -- the entry point ---------------------------------------------------------------------


def run_load(
    plan: LoadPlan,
    out_dir: Path,
    *,
    name: str = "records",
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool | None = None,
    start_delay_s: float = 0.3,
    write_summary: bool = True,
) -> LoadResult:
    """Run ``plan``; records go to ``out_dir/<name>.csv`` as the run goes, the summary to
    ``out_dir/<name>.summary.json`` (unless ``write_summary`` is false) and the result.

    ``workers > 1`` runs that many local processes (arrival i to process i mod N; closed
    loop: the concurrency split). ``scheduler`` (a Dask address) is issue 10's; it is
    refused for now. SIGINT/SIGTERM stop the run cleanly (``interrupted``, not ``complete``).
    """
    _check_plan(plan)
    if scheduler:
        raise KubetestError(
            "generator.scheduler (Dask) is not supported yet; use generator.workers for "
            "local processes"
        )
    workers = max(1, int(workers))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / f"{name}.csv"
    planned = _planned_s(plan)
    display = make_display(progress, f"load {plan.mode}", planned)
    failures: list[str] = []
    tmp: str | None = None
    try:
        if workers == 1:
            token = StopToken()
            stopper = _Stopper(token)
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
            tmp = tempfile.mkdtemp(prefix="kubetest-stop-")
            stop = StopFile(os.path.join(tmp, "stop"))
            stopper = _Stopper(stop)
            parts = [out_dir / f"{name}.part{k}.csv" for k in range(workers)]
            with _signals(stopper):
                results, failures, start_epoch = _run_processes(
                    plan, workers, parts, stopper, stop, display, max(start_delay_s, 0.5)
                )
            _concat(parts, records_path)
            if not results:
                raise KubetestError("every load shard failed: " + "; ".join(failures))
    finally:
        display.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    interrupted = stopper.count > 0 or any(r.interrupted for r in results)
    summary, hist = summarize(
        results,
        plan,
        start_epoch=start_epoch,
        workers=workers,
        interrupted=interrupted,
        records_path=records_path,
    )
    if failures:
        summary["complete"] = False
        summary["shard_failures"] = failures
    if write_summary:
        (out_dir / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return LoadResult(summary, records_path, hist, interrupted)


# -- judging the measurement -------------------------------------------------------------


def _merge(encoded: list[bytes]) -> HdrHistogram:
    hist = new_histogram()
    for blob in encoded:
        hist.decode_and_add(blob)
    return hist


def _q(hist: HdrHistogram, pct: float) -> float | None:
    if hist.get_total_count() == 0:
        return None
    return hist.get_value_at_percentile(pct) / 1e6


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


def summarize(
    results: list[ShardResult],
    plan: LoadPlan,
    *,
    start_epoch: float,
    workers: int,
    interrupted: bool,
    records_path: Path,
) -> tuple[dict[str, Any], HdrHistogram]:
    """Merge shard results into the run summary (see the module docstring for the rules)."""
    lat = _merge([r.latency_hdr for r in results])
    service = _merge([r.service_hdr for r in results])
    lag = _merge([r.lag_hdr for r in results])
    loop_lag = _merge([r.loop_lag_hdr for r in results])
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
    dispatch_end = max((r.dispatch_end_s for r in results), default=0.0)
    end = max((r.end_s for r in results), default=0.0)
    last_sent = max((r.last_sent_s for r in results), default=0.0)
    loop_busy = max((r.loop_busy for r in results), default=0.0)
    n_sec = max((len(r.lag_max_by_second) for r in results), default=0)
    per_second = np.full(n_sec, -1.0)
    for r in results:
        arr = np.asarray(r.lag_max_by_second)
        per_second[: len(arr)] = np.maximum(per_second[: len(arr)], arr)

    reasons: list[str] = []
    target: float | None = None
    if plan.mode == "open":
        assert plan.schedule is not None
        target = plan.target_rate_per_s or mean_rate(plan.schedule)
        gap = 1.0 / target if target else 0.0
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
        if lag_p99 is not None and lag_p99 > LAG_P99_LIMIT_S:
            reasons.append(
                f"schedule lag p99 {lag_p99 * 1e3:.0f} ms > {LAG_P99_LIMIT_S * 1e3:.0f} ms"
            )
        growth = _lag_growth(per_second)
        if growth is not None and growth > LAG_GROWTH_LIMIT_S:
            reasons.append(f"schedule lag grew by {growth * 1e3:.0f} ms over the run")
    else:
        achieved = completed / max(dispatch_end, 1e-9)
        growth = None
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

    notes = [n for r in results for n in r.notes]
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
        "achieved_rate_per_s": achieved,
        "target_rate_per_s": target,
        "concurrency": plan.concurrency if plan.mode == "closed" else None,
        "schedule_lag_p50": _q(lag, 50) if plan.mode == "open" else None,
        "schedule_lag_p99": _q(lag, 99) if plan.mode == "open" else None,
        "schedule_lag_max": _max(lag) if plan.mode == "open" else None,
        "schedule_lag_growth": growth,
        "late_or_dropped": not_sent,
        "max_in_flight": sum(r.max_in_flight for r in results),
        "max_in_flight_seen": sum(r.max_in_flight_seen for r in results),
        "loop_busy": loop_busy,
        "loop_lag_p99": loop_lag_p99,
        "saturated": bool(reasons),
        "saturation_reasons": reasons,
        "timeout_s": plan.timeout_s,
        "workers": workers,
        "interrupted": interrupted,
        "complete": not interrupted,
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
    progress: bool | None = None,
    auth_token_env: str | None = None,
    arrivals: str = "constant",
    max_in_flight: int = 10_000,
    seed: int = 0,
) -> Path:
    """``kubetest load``: the guide's alert generator, measured properly.

    Writes ``alert_generation_<timestamp>.json`` (the guide's ``sent_count``,
    ``success_count``, ``success_rate`` in PERCENT and ``avg_response_time``, plus p50/p95/
    p99/max in seconds, ``achieved_rate_per_min``, ``schedule_lag_p99``, ``saturated``,
    ``outcomes``, ``complete``) and ``records_<timestamp>.csv`` beside it; returns the JSON
    path. An interrupted run still writes both, marked ``complete: false``.
    """
    if rate_per_min <= 0 or duration_min <= 0:
        raise KubetestError("--rate and --duration must be > 0")
    try:
        payload = PayloadFactory(list(types), unique=unique, seed=seed)
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
    while (out_dir / f"alert_generation_{stamp}{suffix}.json").exists() or (
        out_dir / f"records_{stamp}{suffix}.csv"
    ).exists():
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
    )
    result = run_load(
        plan,
        out_dir,
        name=f"records_{stamp}",
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        write_summary=False,
    )
    s = result.summary
    doc = {
        "sent_count": s["sent_count"],
        "success_count": s["success_count"],
        "success_rate": None if s["success_rate"] is None else s["success_rate"] * 100.0,
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
        "summary": s,
    }
    path = out_dir / f"alert_generation_{stamp}.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
