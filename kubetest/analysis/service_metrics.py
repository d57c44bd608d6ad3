"""The service's metrics as a test recorded them: read, turned into rates and panels.

Pure functions over a ``records/<test>_metrics.csv`` frame (written by the scraper in
``kubetest/metrics.py``): counter rates across resets, gauges, the panels the report
draws (requests, in flight, queue, CPU, memory), their summary, and restarts of the
service's process (a validity reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = ("t_s", "epoch_s", "metric", "labels", "value", "type")

#: The generator's own samples, written beside the service's.
GENERATOR_CPU = "kubetest_generator_cpu_seconds_total"
GENERATOR_TICK_LAG = "kubetest_generator_tick_lag_seconds"

#: What the figure and the summary look for, by metric name (whatever of it exists).
REQUEST_RE = re.compile(r"(request|alert|signal|webhook)s?(_[a-z0-9]+)*_total$")
IN_FLIGHT_RE = re.compile(r"in_?flight|inflight|busy|concurren|active_(request|worker)")
QUEUE_RE = re.compile(r"queue|pending|waiting|backlog")
CPU_METRIC = "process_cpu_seconds_total"
MEMORY_METRIC = "process_resident_memory_bytes"
#: Changes when the service's process restarts (with counters falling back to zero).
START_TIME_METRIC = "process_start_time_seconds"
#: Label values of requests that are not the service's work (the scraper's own, probes).
_HOUSEKEEPING = re.compile(r"metrics|health|ready|live|outcomes|actions")


def parse_labels(text: Any) -> dict[str, str]:
    """The inverse of the ``labels`` column (values hold no ``",`` sequence in practice)."""
    if not isinstance(text, str) or not text:
        return {}
    out = {}
    for part in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', text):
        out[part.group(1)] = part.group(2)
    return out


def read_metrics(path: str | Path) -> pd.DataFrame:
    """A ``*_metrics.csv`` as a frame (empty, with the columns, when there is none)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("t_s", "epoch_s", "value")
                                          else "string") for c in COLUMNS})  # fmt: skip
    frame = pd.read_csv(path, dtype={"metric": "string", "labels": "string", "type": "string"},
                        keep_default_na=False, na_values={"value": ["NaN", "nan"]})  # fmt: skip
    return frame


def counter_rate(frame: pd.DataFrame, metric: str, *, skip_housekeeping: bool = False) -> pd.Series:
    """Per-second rate of a counter, summed over its label sets, by ``t_s`` of each sample
    (the rate over the interval that ends there). A reset (the value falls) counts the
    new value as the increase, as Prometheus' ``rate`` does."""
    rows = frame[frame["metric"] == metric]
    if skip_housekeeping:
        values = (",".join(parse_labels(s).values()) for s in rows["labels"])
        keep = [not _HOUSEKEEPING.search(v) for v in values]
        rows = rows[np.asarray(keep, dtype=bool)] if len(rows) else rows
    if rows.empty:
        return pd.Series(dtype=float)
    parts = []
    for _, series in rows.sort_values("epoch_s").groupby("labels", sort=False):
        dv = series["value"].diff()
        dv = dv.where(dv >= 0, series["value"])
        dt = series["epoch_s"].diff()
        rate = (dv / dt).where(dt > 0)
        parts.append(pd.Series(rate.to_numpy(), index=series["t_s"].to_numpy()).dropna())
    if not parts:
        return pd.Series(dtype=float)
    return pd.concat(parts).groupby(level=0).sum().sort_index()


def gauge(frame: pd.DataFrame, metric: str) -> pd.Series:
    """A gauge summed over its label sets, by ``t_s``."""
    rows = frame[frame["metric"] == metric]
    return rows.groupby("t_s")["value"].sum().sort_index() if len(rows) else pd.Series(dtype=float)


def _names(frame: pd.DataFrame, pattern: re.Pattern[str], kinds: tuple[str, ...]) -> list[str]:
    if frame.empty:
        return []
    typed = frame.drop_duplicates("metric")
    names = [
        str(m)
        for m, k in zip(typed["metric"], typed["type"], strict=True)
        if pattern.search(str(m))
        and str(k) in kinds
        and not str(m).startswith(("kubetest_generator_", "process_", "python_", "go_"))
    ]
    return sorted(names)


@dataclass(frozen=True)
class Panels:
    """The series the figure shows, by kind: name -> values by ``t_s``."""

    request_rate: dict[str, pd.Series]
    in_flight: dict[str, pd.Series]
    queue: dict[str, pd.Series]
    cpu_cores: pd.Series
    rss_bytes: pd.Series
    generator_cpu_cores: pd.Series
    generator_tick_lag_s: pd.Series


def panels(frame: pd.DataFrame) -> Panels:
    """Pick what exists: request/alert counters as rates, in-flight and queue gauges,
    ``process_*`` CPU (cores) and resident memory, the generator's CPU and tick lag.

    A ``segment`` column (a sweep's phases, scraped separately) gets each segment's series
    on its own, joined with a gap: no rate is computed, nor line drawn, across the pause
    between two phases."""
    if "segment" in frame.columns and frame["segment"].nunique() > 1:
        parts = [_panels(g) for _, g in frame.groupby("segment", sort=True)]
        return Panels(
            **{attr: {name: _with_gaps([getattr(p, attr).get(name, _EMPTY) for p in parts])
                      for name in sorted({n for p in parts for n in getattr(p, attr)})}
               for attr in ("request_rate", "in_flight", "queue")},
            **{attr: _with_gaps([getattr(p, attr) for p in parts])
               for attr in ("cpu_cores", "rss_bytes", "generator_cpu_cores",
                            "generator_tick_lag_s")},
        )  # fmt: skip
    return _panels(frame)


_EMPTY = pd.Series(dtype=float)


def _with_gaps(series: list[pd.Series]) -> pd.Series:
    """Consecutive segments as one series, a NaN after each so a plotted line breaks."""
    parts: list[pd.Series] = []
    for s in series:
        if len(s):
            parts += [s, pd.Series([np.nan], index=[float(s.index[-1]) + 1e-6])]
    return pd.concat(parts[:-1]) if parts else _EMPTY.copy()


def _panels(frame: pd.DataFrame) -> Panels:
    return Panels(
        request_rate={m: counter_rate(frame, m, skip_housekeeping=True)
                      for m in _names(frame, REQUEST_RE, ("counter",))},
        in_flight={m: gauge(frame, m)
                   for m in _names(frame, IN_FLIGHT_RE, ("gauge", "untyped", "unknown"))},
        queue={m: gauge(frame, m)
               for m in _names(frame, QUEUE_RE, ("gauge", "untyped", "unknown"))
               if not IN_FLIGHT_RE.search(m)},
        cpu_cores=counter_rate(frame, CPU_METRIC),
        rss_bytes=gauge(frame, MEMORY_METRIC),
        generator_cpu_cores=counter_rate(frame, GENERATOR_CPU),
        generator_tick_lag_s=gauge(frame, GENERATOR_TICK_LAG),
    )  # fmt: skip


def _stats(values: pd.Series, unit: str) -> dict[str, Any]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"unit": unit, "samples": 0, "mean": None, "max": None, "last": None}
    return {"unit": unit, "samples": int(v.size), "mean": float(v.mean()),
            "max": float(v.max()), "last": float(v[-1])}  # fmt: skip


def target_restarts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Scrapes at which the service had restarted since the one before: one of its
    counters fell, or ``process_start_time_seconds`` changed. Each ``{t_s, why}``."""
    if frame is None or frame.empty:
        return []
    own = frame[~frame["metric"].isin([GENERATOR_CPU, GENERATOR_TICK_LAG])]
    watched = own[(own["type"] == "counter") | (own["metric"] == START_TIME_METRIC)]
    seen: dict[float, list[str]] = {}
    for (metric, _labels), series in watched.groupby(["metric", "labels"], sort=False):
        series = series.sort_values("epoch_s")
        step = series["value"].diff()  # NaN at the first scrape: nothing to compare
        hit = (step != 0) & step.notna() if metric == START_TIME_METRIC else step < 0
        for t in series["t_s"][hit.to_numpy(dtype=bool)]:
            seen.setdefault(float(t), []).append(str(metric))
    out = []
    for t, metrics in sorted(seen.items()):
        names = sorted(set(metrics))
        if START_TIME_METRIC in names:
            why = f"{START_TIME_METRIC} changed"
        else:
            why = f"{len(metrics)} counter(s) fell ({', '.join(names[:3])})"
        out.append({"t_s": t, "why": why})
    return out


def summarise_panels(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A few numbers per plotted series (mean / max / last), for the result JSON."""
    if frame is None or frame.empty:
        return {}
    p = panels(frame)
    out: dict[str, dict[str, Any]] = {}
    for name, s in p.request_rate.items():
        out[name] = {"kind": "request rate", **_stats(s, "1/s")}
    for name, s in {**p.in_flight, **p.queue}.items():
        out[name] = {"kind": "queue depth" if name in p.queue else "in flight", **_stats(s, "")}
    for name, s, kind, unit in (
        (CPU_METRIC, p.cpu_cores, "service CPU", "cores"),
        (MEMORY_METRIC, p.rss_bytes, "service memory", "bytes"),
        (GENERATOR_CPU, p.generator_cpu_cores, "generator CPU", "cores"),
        (GENERATOR_TICK_LAG, p.generator_tick_lag_s, "generator tick lag", "s"),
    ):
        if len(s):
            out[name] = {"kind": kind, **_stats(s, unit)}
    return out
