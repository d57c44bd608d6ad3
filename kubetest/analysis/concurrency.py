"""In-flight requests over time, from the records (BR-PA-004 is about *simultaneous* load).

Each record is an interval [sent_s, done_s]; a sweep over their edges gives the exact
in-flight count as a step function, so "100 concurrent" is verified, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def in_flight_steps(records: pd.DataFrame) -> pd.DataFrame:
    """Step function: at ``t_s`` the in-flight count becomes ``in_flight``."""
    starts = records["sent_s"].to_numpy(dtype=float)
    ends = records["done_s"].to_numpy(dtype=float)
    t = np.concatenate([starts, ends])
    d = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
    order = np.lexsort((d, t))  # at equal times, ends (-1) before starts (+1)
    return pd.DataFrame({"t_s": t[order], "in_flight": np.cumsum(d[order]).astype(int)})


@dataclass(frozen=True)
class Concurrency:
    target: int
    time_weighted_mean: float
    p05: float  # 5 % of the steady window had fewer in flight than this
    max: int
    fraction_at_target: float  # of the steady window, time with ≥ target in flight
    steady_from_s: float
    steady_to_s: float


def sustained_concurrency(records: pd.DataFrame, target: int, trim: float = 0.1) -> Concurrency:
    """In-flight statistics over the steady window (``trim`` of the run cut at each end)."""
    steps = in_flight_steps(records)
    if steps.empty:
        return Concurrency(target, 0.0, 0.0, 0, 0.0, 0.0, 0.0)
    t0, t1 = float(steps["t_s"].iloc[0]), float(steps["t_s"].iloc[-1])
    lo, hi = t0 + trim * (t1 - t0), t1 - trim * (t1 - t0)
    t = steps["t_s"].to_numpy()
    v = steps["in_flight"].to_numpy()
    # durations of each step, clipped to the steady window
    nxt = np.append(t[1:], t1)
    dur = np.clip(np.minimum(nxt, hi) - np.maximum(t, lo), 0, None)
    total = dur.sum()
    if total <= 0:
        return Concurrency(target, float(v.mean()), float(v.min()), int(v.max()), 0.0, lo, hi)
    order = np.argsort(v)
    cum = np.cumsum(dur[order]) / total
    p05 = float(v[order][np.searchsorted(cum, 0.05)])
    return Concurrency(
        target=target,
        time_weighted_mean=float((v * dur).sum() / total),
        p05=p05,
        max=int(v.max()),
        fraction_at_target=float(dur[v >= target].sum() / total),
        steady_from_s=lo,
        steady_to_s=hi,
    )
