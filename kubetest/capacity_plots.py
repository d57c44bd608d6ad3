"""Phase B figures (seaborn/matplotlib, no pyplot): data in, ``Figure`` out.

They draw from the phases table of a B1/B2 result (``kubetest.analysis.capacity.phase_row``
rows, also stored in ``results/B1.json`` / ``B2.json``), so the report can redraw them
from the session folder without the records.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

import kubetest.plots  # noqa: F401  (sets the one seaborn theme of every figure)
from kubetest.analysis.capacity import KEEP_UP
from kubetest.analysis.usl import UslFit

STATUS_STYLE: dict[str, dict[str, Any]] = {
    "sustainable": {"color": "#2a9d8f", "marker": "o", "label": "sustainable"},
    "unsustainable": {"color": "#e76f51", "marker": "X", "label": "unsustainable"},
    "generator-limited": {"color": "#8d99ae", "marker": "s", "label": "generator-limited"},
    "inconclusive": {"color": "#8d99ae", "marker": "D", "label": "inconclusive"},
}


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _status_points(ax: Axes, frame: pd.DataFrame, x: str, y: str) -> None:
    """Each phase as a marker whose colour and shape say its verdict."""
    for status, style in STATUS_STYLE.items():
        sel = frame[frame["status"] == status]
        if not sel.empty:
            ax.scatter(sel[x], sel[y], s=55, zorder=4, edgecolor="white", linewidth=0.6, **style)


def _measured(values: pd.DataFrame) -> bool:
    """Whether some latency was measured: a sweep where nothing was accepted has none,
    and matplotlib cannot place log ticks on an axis without a drawn positive value (it
    raises while drawing), so such a figure keeps linear axes."""
    arr = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return bool(np.any(arr[np.isfinite(arr)] > 0))


def _plain_log(axis: Any) -> None:
    """Log-scale ticks as plain numbers (0.02, not 2×10⁻²)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _by_rate(table: pd.DataFrame) -> tuple[Figure, Axes, pd.DataFrame | None]:
    """A one-plot figure and the phases by offered rate (None, and the plot says so, when
    no phase ran)."""
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    if table.empty:
        _empty(ax, "no phases run")
        return fig, ax, None
    return fig, ax, table.sort_values("offered_per_min")


def latency_vs_rate(
    table: pd.DataFrame, slo_p95_s: float, capacity: dict[str, Any] | None = None
) -> Figure:
    """p50/p95/p99 against offered rate (p95 with its CI), the SLO line, the knee and the
    max sustainable rate marked; markers show each phase's verdict."""
    fig, ax, t = _by_rate(table)
    if t is None:
        return fig
    ev = t[t["status"].isin(["sustainable", "unsustainable"])]
    for col, style, name in (("p50_s", ":", "p50"), ("p95_s", "-", "p95"), ("p99_s", "--", "p99")):
        ax.plot(ev["offered_per_min"], ev[col], ls=style, color="#264653", lw=1.2, label=name)
    err = np.vstack([(t["p95_s"] - t["p95_ci_low_s"]).clip(lower=0),
                     (t["p95_ci_high_s"] - t["p95_s"]).clip(lower=0)])  # fmt: skip
    ax.errorbar(t["offered_per_min"], t["p95_s"], yerr=err, fmt="none", ecolor="#264653",
                elinewidth=0.8, capsize=3, zorder=3)  # fmt: skip
    _status_points(ax, t, "offered_per_min", "p95_s")
    ax.axhline(slo_p95_s, color="crimson", ls="--", lw=1, label=f"SLO p95 < {slo_p95_s:g} s")
    cap = capacity or {}
    if (knee := _num(cap.get("knee_rate_per_min"))) is not None:
        ax.axvline(knee, color="#6d597a", ls="-.", lw=1, label=f"knee ≈ {knee:,.0f}/min")
    if (best := _num(cap.get("max_sustainable_rate_per_min"))) is not None and best > 0:
        ax.axvline(best, color="#2a9d8f", ls=":", lw=1.5, label=f"max sustainable {best:,.0f}/min")
    if _measured(t[["p50_s", "p95_s", "p99_s"]]):
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
    ax.set(xlabel="offered rate (alerts/min)", ylabel="latency from intended send (s)",
           title="Latency against offered rate")  # fmt: skip
    ax.legend(fontsize="small", loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


def throughput_vs_offered(
    table: pd.DataFrame, capacity: dict[str, Any] | None = None, theory_per_min: float | None = None
) -> Figure:
    """Completed and accepted per minute (steady window) against the offered rate: on the
    diagonal the service keeps up; below the 95 % line it falls behind."""
    fig, ax, t = _by_rate(table)
    if t is None:
        return fig
    top = float(max(t["offered_per_min"].max(), t["throughput_per_min"].max())) * 1.05
    diag = np.array([0.0, top])
    ax.plot(diag, diag, color="grey", lw=1, label="completed = offered")
    ax.plot(diag, KEEP_UP * diag, color="grey", lw=0.8, ls="--", label=f"{KEEP_UP:.0%} of offered")
    ax.plot(t["offered_per_min"], t["goodput_per_min"], color="#264653", lw=1, ls=":",
            label="accepted/min")  # fmt: skip
    ax.plot(t["offered_per_min"], t["throughput_per_min"], color="#264653", lw=1.2,
            label="completed/min")  # fmt: skip
    _status_points(ax, t, "offered_per_min", "throughput_per_min")
    if theory_per_min:
        ax.axhline(theory_per_min, color="#6d597a", ls="-.", lw=1,
                   label=f"theoretical capacity {theory_per_min:,.0f}/min")  # fmt: skip
    best = _num((capacity or {}).get("max_sustainable_rate_per_min"))
    if best:
        ax.axvline(best, color="#2a9d8f", ls=":", lw=1.5, label=f"max sustainable {best:,.0f}/min")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="offered rate (alerts/min)",
           ylabel="throughput (per min)", title="Throughput against offered load")  # fmt: skip
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def concurrency_curve(table: pd.DataFrame, fit: UslFit | None, slo_p95_s: float) -> Figure:
    """Left: accepted per minute (goodput) against concurrency with the USL fit and its
    predicted peak.
    Right: p95 (and mean) latency against concurrency, with the SLO and the response time
    the USL implies through Little's law, R(N) = N / X(N)."""
    fig = Figure(figsize=(11, 4.3))
    x_ax, r_ax = fig.subplots(1, 2)
    if table.empty:
        _empty(x_ax, "no levels run")
        return fig
    t = table.sort_values("concurrency")
    n_max = float(t["concurrency"].max())
    grid = np.geomspace(1, max(n_max * 1.3, 2), 200)
    _status_points(x_ax, t, "concurrency", "goodput_per_min")
    x_ax.plot(t["concurrency"], t["goodput_per_min"], color="#264653", lw=1,
              label="accepted per min (measured)")  # fmt: skip
    if fit is not None:
        x_ax.plot(
            grid,
            fit.predict(grid) * 60,
            color="#6d597a",
            ls="--",
            lw=1.2,
            label=f"USL fit (σ={fit.sigma:.3g}, κ={fit.kappa:.2g}, R²={fit.r2:.2f})",
        )
        if fit.peak_concurrency is not None and fit.peak_throughput is not None:
            x_ax.scatter([fit.peak_concurrency], [fit.peak_throughput * 60], marker="*", s=160,
                         color="#6d597a", zorder=5,
                         label=f"USL peak {fit.peak_throughput * 60:,.0f}/min "
                               f"at N≈{fit.peak_concurrency:,.0f}")  # fmt: skip
        elif fit.peak_throughput is not None:
            x_ax.axhline(fit.peak_throughput * 60, color="#6d597a", ls=":", lw=1,
                         label=f"USL asymptote {fit.peak_throughput * 60:,.0f}/min")  # fmt: skip
    x_ax.set_xscale("log")
    _plain_log(x_ax.xaxis)
    x_ax.set(xlabel="concurrency N (requests in flight)", ylabel="accepted per min",
             title="Throughput against concurrency")  # fmt: skip
    x_ax.set_ylim(bottom=0)
    x_ax.legend(fontsize="small", loc="lower right")

    r_ax.plot(t["concurrency"], t["p95_s"], color="#264653", lw=1.2, label="p95")
    r_ax.plot(t["concurrency"], t["mean_s"], color="#264653", lw=1, ls=":", label="mean")
    _status_points(r_ax, t, "concurrency", "p95_s")
    if fit is not None:
        r_ax.plot(grid, grid / np.maximum(fit.predict(grid), 1e-12), color="#6d597a", ls="--",
                  lw=1, label="USL + Little: N / X(N)")  # fmt: skip
    r_ax.axhline(slo_p95_s, color="crimson", ls="--", lw=1, label=f"SLO p95 < {slo_p95_s:g} s")
    if _measured(t[["p95_s", "mean_s"]]):
        r_ax.set_xscale("log")
        r_ax.set_yscale("log")
        _plain_log(r_ax.xaxis)
        _plain_log(r_ax.yaxis)
    r_ax.set(xlabel="concurrency N", ylabel="latency (s)", title="Latency against concurrency")
    r_ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig


def phase_distributions(records: pd.DataFrame, slo_p95_s: float) -> Figure:
    """Latency ECDF of every phase (accepted requests), coloured by offered load."""
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    ok = records[records["outcome"] == "accepted"] if not records.empty else records
    if ok.empty:
        _empty(ax, "no accepted requests")
        return fig
    key = "load" if "load" in ok else "phase"
    order = ok.drop_duplicates("label").sort_values(key)["label"].tolist()
    sns.ecdfplot(data=ok, x="latency_s", hue="label", hue_order=order, palette="viridis",
                 log_scale=True, ax=ax)  # fmt: skip
    ax.axvline(slo_p95_s, color="crimson", ls="--", lw=1)
    ax.axhline(0.95, color="grey", ls=":", lw=0.8)
    _plain_log(ax.xaxis)
    ax.set(xlabel="latency from intended send (s)", ylabel="fraction ≤ x",
           title=f"Latency distribution per phase (SLO: p95 < {slo_p95_s:g} s, red)")  # fmt: skip
    legend = ax.get_legend()
    if legend is not None:
        legend.set_title("phase")
    fig.tight_layout()
    return fig
