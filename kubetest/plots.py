"""Figures the notebooks display (seaborn/matplotlib); data in, ``Figure`` out.

Figures are built without pyplot, so nothing is shown twice in a notebook and nothing
leaks between figures in a long session; a notebook displays the returned ``Figure``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

sns.set_theme(style="whitegrid", context="notebook")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _show_figures_in_ipython() -> None:
    """Display a returned ``Figure`` as a PNG in notebooks, whatever backend is active.

    Our figures never touch pyplot, so the inline backend's hooks do not apply to them;
    a formatter for the class does, in JupyterLab and under papermill alike.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


_show_figures_in_ipython()

OUTCOME_COLOURS = {
    "accepted": "#2a9d8f", "duplicate": "#8ab17d", "rejected": "#e9c46a",
    "throttled": "#f4a261", "failed": "#e76f51",
}  # fmt: skip


def latency_over_time(records: pd.DataFrame, slo_p95_s: float, window_s: float = 10.0) -> Figure:
    """Each request's latency (from intended send) over the run, rolling p95, the SLO line."""
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    if records.empty:
        ax.text(0.5, 0.5, "no requests recorded", ha="center", transform=ax.transAxes)
        return fig
    sns.scatterplot(
        data=records, x="intended_s", y="latency_s", hue="outcome", palette=OUTCOME_COLOURS,
        s=8, linewidth=0, alpha=0.6, ax=ax,
    )  # fmt: skip
    ok = records[records["outcome"] == "accepted"].sort_values("intended_s")
    if len(ok) >= 5:
        bins = np.floor(ok["intended_s"] / window_s) * window_s
        p95 = ok.groupby(bins)["latency_s"].quantile(0.95)
        ax.plot(p95.index + window_s / 2, p95.values, color="black", lw=1.5,
                label=f"p95 per {window_s:g} s")  # fmt: skip
    ax.axhline(slo_p95_s, color="crimson", ls="--", lw=1, label=f"SLO p95 < {slo_p95_s:g} s")
    ax.set(xlabel="time since start (s)", ylabel="latency (s)", title="Latency over time")
    ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize="small", ncol=3)
    fig.tight_layout()
    return fig


def latency_distribution(records: pd.DataFrame, slo_p95_s: float) -> Figure:
    """Histogram and ECDF of accepted latencies, percentiles marked."""
    fig = Figure(figsize=(10, 3.6))
    hist_ax, cdf_ax = fig.subplots(1, 2)
    lat = records.loc[records["outcome"] == "accepted", "latency_s"]
    if lat.empty:
        hist_ax.text(0.5, 0.5, "no accepted requests", ha="center", transform=hist_ax.transAxes)
        return fig
    sns.histplot(lat, bins=60, ax=hist_ax, color="#457b9d")
    sns.ecdfplot(lat, ax=cdf_ax, color="#457b9d")
    for q, style in ((0.5, ":"), (0.95, "--"), (0.99, "-.")):
        v = float(np.quantile(lat, q))
        for ax in (hist_ax, cdf_ax):
            ax.axvline(v, color="black", ls=style, lw=1, label=f"p{int(q * 100)} = {v:.3f} s")
    cdf_ax.axvline(slo_p95_s, color="crimson", ls="--", lw=1, label=f"SLO {slo_p95_s:g} s")
    hist_ax.set(xlabel="latency (s)", title="Distribution")
    cdf_ax.set(xlabel="latency (s)", ylabel="fraction ≤ x", title="ECDF")
    cdf_ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def availability_timeline(
    probes: pd.DataFrame,
    outages: Mapping[str, list[dict[str, float]]] | list[dict[str, float]] | None = None,
    judged: str | None = None,
) -> Figure:
    """Up/down per probe over the window, one panel per probed endpoint (``endpoint``
    column; the judged one first) on a shared time axis, measured outages shaded and
    throttled (429) probes marked apart from other failures. ``outages``: per endpoint,
    or one list for a single series."""
    series = (
        {str(k): f for k, f in probes.groupby("endpoint")}
        if "endpoint" in probes.columns
        else {judged or "health": probes}
    )
    if judged is not None:
        series.setdefault(judged, probes.iloc[0:0])
    names = sorted(series, key=lambda n: (n != judged, n))
    spans = outages if isinstance(outages, Mapping) else {names[0]: outages or []}
    fig = Figure(figsize=(10, 1.4 + 1.3 * len(names)))
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
    if probes.empty:
        axes[0].text(0.5, 0.5, "no probes", ha="center", transform=axes[0].transAxes)
        return fig
    for ax, name in zip(axes, names, strict=True):
        p = series[name].sort_values("t_s")
        up = p["ok"].astype(str).str.lower().isin(["true", "1"])
        ax.step(p["t_s"], up.astype(int), where="post", color="#457b9d", lw=1)
        throttled = (p["outcome"] == "throttled") & ~up if "outcome" in p.columns else up & False
        for mask, colour, label in (
            (~up & ~throttled, "#e76f51", "failed probe"),
            (throttled, OUTCOME_COLOURS["throttled"], "throttled (429)"),
        ):
            if mask.any():
                ax.scatter(p.loc[mask, "t_s"], [0] * int(mask.sum()), color=colour, s=10,
                           label=label, zorder=3)  # fmt: skip
        for o in spans.get(name, []):
            ax.axvspan(o["start_s"], o["end_s"], color="#e76f51", alpha=0.2)
        title = name + (" (judged)" if name == judged else "")
        ax.set(yticks=[0, 1], yticklabels=["down", "up"], title=title)
        ax.set_ylim(-0.3, 1.3)
        if (~up).any():
            ax.legend(loc="lower right", fontsize="small")
    axes[-1].set_xlabel("time since start (s)")
    fig.suptitle("Availability probes", fontsize="medium")
    fig.tight_layout()
    return fig


def in_flight_over_time(steps: pd.DataFrame, target: int) -> Figure:
    """In-flight requests over the run (from the records), with the target concurrency."""
    fig = Figure(figsize=(10, 3))
    ax = fig.subplots()
    if steps.empty:
        ax.text(0.5, 0.5, "no requests recorded", ha="center", transform=ax.transAxes)
        return fig
    ax.step(steps["t_s"], steps["in_flight"], where="post", color="#457b9d", lw=0.8)
    ax.axhline(target, color="crimson", ls="--", lw=1, label=f"target {target}")
    ax.set(xlabel="time since start (s)", ylabel="in flight", title="Requests in flight")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig
