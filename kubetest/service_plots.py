"""The service's side of a load test, on the client's time axis (Figure out, no pyplot).

One figure, panels sharing the x axis (seconds since the load's start): the client-side
p95 latency, then whatever the service exported — its request rate (from counters, beside
the rate the client saw answered), in-flight requests and queue depth, CPU (cores) and
resident memory — and the generator's own CPU and tick lag, so a reader sees what the
service (and the generator) was doing when latency rose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kubetest import plots  # noqa: F401  (the seaborn theme and the notebook PNG formatter)
from kubetest.analysis.service_metrics import Panels, panels, read_metrics

_COLOURS = ("#457b9d", "#e76f51", "#2a9d8f", "#f4a261", "#8338ec", "#6c757d")


def _window(records: pd.DataFrame, metrics: pd.DataFrame) -> float:
    """About 60 windows over the run, at least a second."""
    ends = [
        float(records["intended_s"].max()) if len(records) else 0.0,
        float(metrics["t_s"].max()) if len(metrics) else 0.0,
    ]
    return max(1.0, round(max(ends) / 60.0))


def _short(name: str) -> str:
    for prefix in ("kubetest_target_", "kubetest_generator_"):
        name = name.removeprefix(prefix)
    return name


def _latency(ax: Axes, records: pd.DataFrame, slo_p95_s: float, window_s: float) -> None:
    ok = records[records["outcome"] == "accepted"]
    if ok.empty:
        ax.text(0.5, 0.5, "no accepted requests", ha="center", transform=ax.transAxes)
    else:
        bins = np.floor(ok["intended_s"] / window_s) * window_s
        p95 = ok.groupby(bins)["latency_s"].quantile(0.95)
        ax.plot(p95.index + window_s / 2, p95.values, color="black", lw=1.5,
                marker=".", label=f"client p95 per {window_s:g} s")  # fmt: skip
    ax.axhline(slo_p95_s, color="crimson", ls="--", lw=1, label=f"SLO {slo_p95_s:g} s")
    ax.set(ylabel="latency (s)", title="Client-side latency (from intended send time)")
    ax.legend(loc="upper left", fontsize="small", ncol=2)


def _rates(ax: Axes, p: Panels, records: pd.DataFrame, window_s: float) -> None:
    for (name, s), colour in zip(p.request_rate.items(), _COLOURS, strict=False):
        ax.plot(s.index, s.values, color=colour, lw=1.2, label=f"{_short(name)} (service)")
    ok = records[records["outcome"] == "accepted"]
    if len(ok):
        bins = np.floor(ok["done_s"].dropna() / window_s) * window_s
        per_s = bins.value_counts().sort_index() / window_s
        ax.step(per_s.index + window_s, per_s.values, where="pre", color="black", lw=1,
                ls=":", label="accepted answers (client)")  # fmt: skip
    ax.set(ylabel="per second", title="Request rate")
    ax.legend(loc="upper left", fontsize="small", ncol=2)


def _depths(ax: Axes, p: Panels) -> None:
    series = {**p.in_flight, **p.queue}
    for (name, s), colour in zip(series.items(), _COLOURS, strict=False):
        ax.step(s.index, s.values, where="post", color=colour, lw=1.2, label=_short(name))
    ax.set(ylabel="requests", title="In flight and queue depth (service)")
    ax.legend(loc="upper left", fontsize="small", ncol=3)


def _resources(ax: Axes, p: Panels) -> None:
    handles = []
    if len(p.cpu_cores):
        handles += ax.plot(
            p.cpu_cores.index, p.cpu_cores.values, color=_COLOURS[0], lw=1.2, label="CPU (cores)"
        )
        ax.set_ylabel("CPU (cores)")
    if len(p.rss_bytes):
        mem_ax = ax.twinx() if len(p.cpu_cores) else ax
        handles += mem_ax.plot(p.rss_bytes.index, p.rss_bytes.values / 2**20, color=_COLOURS[1],
                               lw=1.2, label="resident memory (MiB)")  # fmt: skip
        mem_ax.set_ylabel("memory (MiB)")
        if mem_ax is not ax:
            mem_ax.grid(False)
    ax.set_title("Service CPU and memory (process_*)")
    ax.legend(handles=handles, loc="upper left", fontsize="small")


def _generator(ax: Axes, p: Panels, generator: dict[str, Any] | None) -> None:
    handles = []
    if len(p.generator_cpu_cores):
        handles += ax.plot(p.generator_cpu_cores.index, p.generator_cpu_cores.values,
                           color=_COLOURS[2], lw=1.2, label="CPU (cores)")  # fmt: skip
        ax.set_ylabel("CPU (cores)")
    if len(p.generator_tick_lag_s):
        lag_ax = ax.twinx()
        lag = p.generator_tick_lag_s
        handles += lag_ax.plot(
            lag.index, lag.values * 1e3, color=_COLOURS[3], lw=1, label="sampler wake-up lag (ms)"
        )
        lag_ax.set_ylabel("lag (ms)")
        lag_ax.grid(False)
    title = "Generator (this process)"
    g = generator or {}
    extra = []
    if isinstance(g.get("loop_busy"), int | float):
        extra.append(f"event loop busy {g['loop_busy']:.0%}")
    if isinstance(g.get("loop_lag_p99"), int | float):
        extra.append(f"loop lag p99 {g['loop_lag_p99'] * 1e3:.1f} ms")
    ax.set_title(title + (": " + ", ".join(extra) if extra else ""))
    ax.legend(handles=handles, loc="upper left", fontsize="small")


def service_timeline(
    metrics: pd.DataFrame,
    records: pd.DataFrame,
    *,
    slo_p95_s: float,
    window_s: float | None = None,
    generator: dict[str, Any] | None = None,
    note: str | None = None,
    spans: list[tuple[float, float, str]] | None = None,
) -> Figure:
    """Client p95 over the service's metrics and the generator's (panels that have data).

    ``spans`` (start, end, label) shade the phases of a sweep, so a reader can tell which
    rate or concurrency level the service was under at any instant."""
    if not {"intended_s", "done_s", "latency_s", "outcome"} <= set(records.columns):
        records = pd.DataFrame(columns=["intended_s", "done_s", "latency_s", "outcome"])
    window = window_s or _window(records, metrics)
    p = panels(metrics)
    drawers: list[Any] = []
    if len(records):  # a load test (availability probes have no latency panel)
        drawers.append(lambda ax: _latency(ax, records, slo_p95_s, window))
    if p.request_rate or len(records):
        drawers.append(lambda ax: _rates(ax, p, records, window))
    if p.in_flight or p.queue:
        drawers.append(lambda ax: _depths(ax, p))
    if len(p.cpu_cores) or len(p.rss_bytes):
        drawers.append(lambda ax: _resources(ax, p))
    if len(p.generator_cpu_cores) or len(p.generator_tick_lag_s) or not drawers:
        drawers.append(lambda ax: _generator(ax, p, generator))
    fig = Figure(figsize=(10, 2.3 * len(drawers) + 0.6))
    axes = np.atleast_1d(fig.subplots(len(drawers), 1, sharex=True))
    for draw, ax in zip(drawers, axes, strict=True):
        draw(ax)
        for i, (t0, t1, _label) in enumerate(spans or []):
            ax.axvspan(t0, t1, color="#e9ecef" if i % 2 else "#dee2e6", alpha=0.6, lw=0, zorder=0)
    if spans:  # the phase labels on a top axis, above the first panel
        top = axes[0].secondary_xaxis("top")
        top.set_xticks([(t0 + t1) / 2 for t0, t1, _ in spans],
                       [label for *_, label in spans], fontsize="x-small", rotation=30)  # fmt: skip
        top.tick_params(length=0)
        axes[0].set_title(axes[0].get_title(), pad=28)
    axes[-1].set_xlabel("time since the test's start (s)")
    fig.suptitle("What the service and the generator were doing", fontsize="medium")
    if note:
        axes[0].text(0.99, 0.95, note, ha="right", va="top", fontsize="small",
                     transform=axes[0].transAxes, color="#6c757d", wrap=True)  # fmt: skip
    fig.tight_layout()
    return fig


def service_timeline_for(
    session_dir: str | Path, result: dict[str, Any], slo_p95_s: float = 5.0
) -> Figure | None:
    """The figure of one test's result file (``results/<test>.json``): its metrics CSV and
    records, read from the session folder. ``None`` when the result has no metrics."""
    from kubetest.engine.records import read_records

    if result.get("phases_service"):
        return _sweep_timeline(Path(session_dir), result, slo_p95_s)
    info = result.get("service_metrics") or {}
    if not info.get("path"):
        return None
    session = Path(session_dir)
    metrics = read_metrics(session / info["path"])
    if result.get("records") and result.get("latency"):  # a load test's request records
        records = read_records(session / result["records"])
    else:
        records = pd.DataFrame(columns=["intended_s", "done_s", "latency_s", "outcome"])
    note = info.get("note")
    if not info.get("service_metrics_found") and not note:
        note = "the service exported no metrics"
    return service_timeline(
        metrics, records, slo_p95_s=slo_p95_s, generator=info.get("generator"), note=note
    )


def _sweep_timeline(session: Path, result: dict[str, Any], slo_p95_s: float) -> Figure | None:
    """A Phase B sweep as one timeline: every phase's metrics and records moved onto the
    sweep's clock (from each phase's start instant), the phases shaded and labelled."""
    from kubetest.engine.records import read_records

    phases = [p for p in result["phases_service"]
              if isinstance(p.get("start_epoch"), int | float)
              and (p.get("service_metrics") or {}).get("path")]  # fmt: skip
    if not phases:
        return None
    t0 = min(float(p["start_epoch"]) for p in phases)
    metrics, records, spans, notes = [], [], [], set()
    for p in phases:
        shift = float(p["start_epoch"]) - t0
        info = p["service_metrics"]
        m = read_metrics(session / info["path"])
        if len(m):
            metrics.append(m.assign(t_s=m["epoch_s"] - t0, segment=len(spans)))
        end = shift + (float(m["t_s"].max()) if len(m) else 0.0)
        path = session / str(p.get("records", ""))
        if p.get("records") and path.is_file():
            r = read_records(path)
            if len(r):
                records.append(
                    r.assign(intended_s=r["intended_s"] + shift, done_s=r["done_s"] + shift)
                )
                end = max(end, shift + float(r["intended_s"].max()))
        spans.append((shift, end, str(p.get("label", p.get("phase", "")))))
        if info.get("note"):
            notes.add(str(info["note"]))
    if metrics:
        frame = pd.concat(metrics, ignore_index=True)
    else:  # no phase's scrape wrote a sample: the empty frame, with its columns
        frame = read_metrics(session / phases[0]["service_metrics"]["path"])
    recs = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    fig = service_timeline(
        frame, recs, slo_p95_s=slo_p95_s, spans=spans, note="; ".join(sorted(notes)) or None
    )
    fig.suptitle(
        f"{result.get('title', result.get('test', ''))}: the service across the sweep",
        fontsize="medium",
    )
    return fig
