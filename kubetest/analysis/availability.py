"""Availability from probe timestamps (BR-PA-001).

The guide charged 10 s of downtime per failed probe and allowed 18 s in 30 min (99.9 % of
30 min is 1.8 s). Here downtime is measured from probe timestamps: an outage runs from
its first failed probe to the next successful one, and since the real edges lie somewhere
between neighbouring probes, each outage carries bounds one probe interval wide — the
resolution, which the report states.

A3 probes two endpoints on one schedule (``kubetest.probes``): the webhook, with a real
alert, and the health URL. Each is a series (``endpoint`` column) analysed on its own;
``split_series`` separates them. 429 answers are down and also counted apart
(``throttled_probes``): a service shedding load is not accepting alerts, but it is not
broken either, and the reader needs to tell the two apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Outage:
    start_s: float  # first failed probe
    end_s: float  # next successful probe (or end of window)
    probes: int  # failed probes in the outage
    low_s: float  # at least this long: first to last failed probe (as the service saw them)
    high_s: float  # at most this long: last success before to first success after
    open_ended: bool = False  # still down when the window closed

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Availability:
    window_s: float
    probes: int
    failed_probes: int
    downtime_s: float
    downtime_low_s: float
    downtime_high_s: float
    availability: float  # fraction
    budget_s: float
    target: float
    resolution_s: float
    outages: tuple[Outage, ...]
    throttled_probes: int = 0  # failed probes answered 429 (counted down as well)
    errors: dict[str, int] = field(default_factory=dict)  # failed probes by error class

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["outages"] = [asdict(o) | {"duration_s": o.duration_s} for o in self.outages]
        return d


def downtime_budget(window_s: float, target: float) -> float:
    """Allowed downtime: (1 − target) × window. 99.9 % of 30 min is 1.8 s."""
    return (1.0 - target) * window_s


def split_series(probes: pd.DataFrame, default: str = "health") -> dict[str, pd.DataFrame]:
    """One frame per probed endpoint (``endpoint`` column); a frame without that column
    (records written before A3 probed the webhook) is one ``default`` series."""
    if "endpoint" not in probes.columns:
        return {default: probes}
    return {str(name): frame.reset_index(drop=True) for name, frame in probes.groupby("endpoint")}


def availability_from_probes(
    probes: pd.DataFrame, window_s: float, target: float, interval_s: float
) -> Availability:
    """``probes``: one row per probe with ``t_s`` (sent, from window start) and ``ok``
    (bool); ``outcome`` and ``error``, when present, count throttled probes and errors.

    With ``done_s`` (answered), the bounds allow for when the service saw each probe,
    somewhere between its send and its answer: an outage lasted at least from the first
    failed probe's answer to the last failed probe's send, and at most from the send of
    the success before it to the answer of the success after it."""
    p = probes.sort_values("t_s").reset_index(drop=True)
    times = p["t_s"].to_numpy(dtype=float)
    done = p["done_s"].to_numpy(dtype=float) if "done_s" in p.columns else times
    ok = p["ok"].to_numpy(dtype=bool)
    outages: list[Outage] = []
    i, n = 0, len(p)
    while i < n:
        if ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and not ok[j + 1]:
            j += 1
        first_fail, last_fail = times[i], times[j]
        prev_ok = times[i - 1] if i > 0 else 0.0
        open_ended = j + 1 >= n
        next_ok = window_s if open_ended else times[j + 1]
        next_seen = window_s if open_ended else max(done[j + 1], next_ok)
        outages.append(
            Outage(
                start_s=float(first_fail), end_s=float(max(next_ok, first_fail)),
                probes=j - i + 1, low_s=float(max(0.0, last_fail - max(done[i], first_fail))),
                high_s=float(max(next_seen, first_fail) - prev_ok), open_ended=open_ended,
            )
        )  # fmt: skip
        i = j + 1
    downtime = sum(o.duration_s for o in outages)
    failed = p[~ok]
    throttled = int((failed["outcome"] == "throttled").sum()) if "outcome" in p.columns else 0
    errors: dict[str, int] = {}
    if "error" in p.columns:
        classes = failed["error"].fillna("").astype(str).replace("", "unknown")
        errors = {str(k): int(v) for k, v in classes.value_counts().items()}
    gaps = pd.Series(times).diff().dropna()
    resolution = float(max(interval_s, gaps.max() if not gaps.empty else interval_s))
    return Availability(
        window_s=window_s,
        probes=n,
        failed_probes=int((~ok).sum()),
        downtime_s=float(downtime),
        downtime_low_s=float(sum(o.low_s for o in outages)),
        downtime_high_s=float(sum(o.high_s for o in outages)),
        availability=1.0 - downtime / window_s if window_s > 0 else float("nan"),
        budget_s=downtime_budget(window_s, target),
        target=target,
        resolution_s=resolution,
        outages=tuple(outages),
        throttled_probes=throttled,
        errors=errors,
    )
