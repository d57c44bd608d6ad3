"""The one result type of every runner: what a shard hands back, and where it ran.

``ShardResult`` is plain and picklable (counters, encoded HDR histograms), so the in-process
runner and Dask return the same thing; ``result_from_records`` rebuilds one from the records
a dead worker had flushed. ``ShardInfo`` says where a shard ran and how it ended, for the
summary's ``per_worker``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubetest.engine.client import GENERATOR_ERRORS
from kubetest.engine.plan import LoadPlan
from kubetest.engine.records import OUTCOMES, new_histogram


@dataclass
class ShardResult:
    """What a shard hands back: counters, encoded HDR histograms (µs), self-measurement."""

    shard: int
    n_shards: int
    mode: str
    records_path: str
    scheduled: int  # arrivals assigned to this shard that came due before dispatch ended
    dispatched: int  # requests actually sent
    completed: int  # sent and answered or failed on the network (not cancelled)
    outcomes: dict[str, int]  # over completed requests
    errors: dict[str, int]  # over all records, generator-side classes included
    error_samples: dict[str, str]
    latency_hdr: bytes  # accepted: done - intended
    service_hdr: bytes  # accepted: done - sent
    lag_hdr: bytes  # dispatched: sent - intended
    loop_lag_hdr: bytes  # housekeeping ticker oversleep
    lag_max_by_second: list[float]  # max lag per second of intended time (trend)
    first_intended_s: float
    last_sent_s: float
    dispatch_end_s: float  # when this shard stopped dispatching (relative to start)
    end_s: float  # when its last request finished
    loop_busy: float  # loop thread CPU / wall over [start, end]
    max_in_flight: int  # effective cap for this shard
    max_in_flight_seen: int
    interrupted: bool  # stopped from outside (signal, token), not by its abort rule
    notes: list[str] = field(default_factory=list)
    aborted: str | None = None  # the abort rule's reason, when it stopped the shard
    aborted_at_s: float | None = None
    hdr_log: str = ""  # its HDR interval log (engine.hdrlog), also on disk beside its records
    records_kept: int | None = None  # records written (None: not counted, every one)
    records_every: int = 1  # at most one in this many requests had a record (sampling)
    decided: dict[str, Any] | None = None  # the plan's decider stopped it: status, reason, at_s


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


def first_abort(results: list[ShardResult]) -> ShardResult | None:
    """The shard whose abort rule stopped the run first, if one did."""
    aborted = [r for r in results if r.aborted]
    return min(aborted, key=lambda r: r.aborted_at_s or 0.0) if aborted else None


def first_decision(results: list[ShardResult]) -> dict[str, Any] | None:
    """The first early decision (``LoadPlan.decide``) that stopped a shard, if one did."""
    decided = [r.decided for r in results if r.decided]
    return min(decided, key=lambda d: d["at_s"]) if decided else None


def share_of(total: int, shard: int, n_shards: int) -> int:
    """Shard ``shard``'s part of ``total`` (in-flight cap, concurrency) split ``n_shards`` ways."""
    return total // n_shards + (1 if shard < total % n_shards else 0)


def hdr_us(seconds: float) -> int:
    """Seconds as an HDR histogram value (µs), clamped to the histogram's range."""
    return max(1, min(3_600_000_000, int(seconds * 1e6)))


def result_from_records(
    records: Any, plan: LoadPlan, shard: int, n_shards: int, *, note: str
) -> ShardResult:
    """What a shard that died had measured, rebuilt from the records it had flushed.

    A killed worker returns nothing, but its streamed records are on disk: counts and
    histograms come from them, so the run's merged numbers still equal those of the union
    of its records. Requests in flight at the moment of death were never recorded.
    """
    df = records
    gen = df["error"].isin(list(GENERATOR_ERRORS))
    not_sent = df["error"].isin(["late", "dropped"])
    sent = df[~not_sent]
    done = df[~gen]
    accepted = done[done["outcome"] == "accepted"]
    latency, service, lag = new_histogram(), new_histogram(), new_histogram()
    for value in accepted["latency_s"].to_numpy():
        latency.record_value(hdr_us(float(value)))
    for value in accepted["service_s"].to_numpy():
        service.record_value(hdr_us(float(value)))
    for value in sent["lag_s"].to_numpy():
        lag.record_value(hdr_us(float(value)))
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for key, count in done["outcome"].value_counts().items():
        outcomes[str(key)] = int(count)
    errors = {str(k): int(v) for k, v in df.loc[df["error"] != "", "error"].value_counts().items()}
    span = int(math.ceil(float(df["intended_s"].max()))) + 2 if len(df) else 2
    by_second = np.full(span, -1.0)
    if len(sent):
        secs = sent["intended_s"].to_numpy().astype(int).clip(0, span - 1)
        np.maximum.at(by_second, secs, sent["lag_s"].to_numpy())
    share = plan.max_in_flight if plan.mode == "open" else plan.concurrency
    return ShardResult(
        shard=shard,
        n_shards=n_shards,
        mode=plan.mode,
        records_path="",
        scheduled=len(df),
        dispatched=len(sent),
        completed=len(done),
        outcomes=outcomes,
        errors=dict(sorted(errors.items())),
        error_samples={},
        latency_hdr=latency.encode(),
        service_hdr=service.encode(),
        lag_hdr=lag.encode(),
        loop_lag_hdr=new_histogram().encode(),
        lag_max_by_second=[float(x) for x in by_second],
        first_intended_s=float(df["intended_s"].min()) if len(df) else 0.0,
        last_sent_s=float(sent["sent_s"].max()) if len(sent) else 0.0,
        dispatch_end_s=float(df["intended_s"].max()) if len(df) else 0.0,
        end_s=float(df["done_s"].max()) if len(df) else 0.0,
        loop_busy=0.0,
        max_in_flight=share_of(share, shard, n_shards),
        max_in_flight_seen=0,
        interrupted=True,
        notes=[note],
    )
