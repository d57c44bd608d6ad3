"""The comparison's figures, the two runs overlaid: data in, ``Figure`` out (as ``plots``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kubetest.compare.stats import UNSENT

BASE_COLOUR, NEW_COLOUR = "#457b9d", "#e76f51"


def _accepted(records: pd.DataFrame) -> pd.DataFrame:
    ok = records[(records["outcome"] == "accepted") & ~records["error"].isin(UNSENT)]
    return ok.sort_values("intended_s")


def latency_cdfs(
    pairs: dict[str, tuple[pd.DataFrame, pd.DataFrame]], names: tuple[str, str]
) -> Figure:
    """One panel per load: the empirical CDF of accepted latency, BASE and NEW."""
    n = max(1, len(pairs))
    fig = Figure(figsize=(5 * min(n, 3), 3.6 * ((n + 2) // 3)))
    axes = np.atleast_1d(fig.subplots((n + 2) // 3, min(n, 3), squeeze=False)).ravel()
    for ax, (label, runs) in zip(axes, pairs.items(), strict=False):
        for records, name, colour in zip(runs, names, (BASE_COLOUR, NEW_COLOUR), strict=True):
            lat = _accepted(records)["latency_s"].to_numpy() * 1000
            if lat.size:
                ax.ecdf(lat, label=f"{name} (n={lat.size})", color=colour)
        ax.set_title(label)
        ax.set_xlabel("latency (ms, from intended send)")
        ax.set_ylabel("share of requests")
        for q in (0.5, 0.95, 0.99):
            ax.axhline(q, color="grey", lw=0.5, ls=":")
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def latency_over_time(
    pairs: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    names: tuple[str, str],
    window_s: float = 1.0,
) -> Figure:
    """One panel per load: p95 per ``window_s`` of schedule time, BASE and NEW."""
    n = max(1, len(pairs))
    fig = Figure(figsize=(10, 2.8 * n))
    axes = np.atleast_1d(fig.subplots(n, 1, squeeze=False)).ravel()
    for ax, (label, runs) in zip(axes, pairs.items(), strict=False):
        for records, name, colour in zip(runs, names, (BASE_COLOUR, NEW_COLOUR), strict=True):
            ok = _accepted(records)
            if ok.empty:
                continue
            bucket = (ok["intended_s"] // window_s) * window_s
            p95 = ok.groupby(bucket)["latency_s"].quantile(0.95) * 1000
            ax.plot(p95.index, p95.to_numpy(), marker=".", label=name, color=colour)
        ax.set_title(f"{label}: p95 per {window_s:g} s")
        ax.set_xlabel("s since the load's start")
        ax.set_ylabel("p95 latency (ms)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def against_offered_rate(points: dict[str, pd.DataFrame]) -> Figure | None:
    """p95 latency and throughput against the offered rate, one line per session;
    ``points`` maps a session's name to rows of ``offered_per_min``, ``p95_ms``,
    ``throughput_per_min``. None when no load had an offered rate."""
    if all(p.empty for p in points.values()):
        return None
    fig = Figure(figsize=(10, 3.6))
    lat_ax, thr_ax = fig.subplots(1, 2)
    for (name, rows), colour in zip(points.items(), (BASE_COLOUR, NEW_COLOUR), strict=False):
        rows = rows.sort_values("offered_per_min")
        lat_ax.plot(rows["offered_per_min"], rows["p95_ms"], marker="o", label=name, color=colour)
        thr_ax.plot(
            rows["offered_per_min"],
            rows["throughput_per_min"],
            marker="o",
            label=name,
            color=colour,
        )
    lat_ax.set(
        xlabel="offered (alerts/min)",
        ylabel="p95 latency (ms)",
        title="latency against offered rate",
    )
    thr_ax.set(
        xlabel="offered (alerts/min)",
        ylabel="accepted (alerts/min)",
        title="throughput against offered rate",
    )
    lat_ax.legend(fontsize=8)
    thr_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
