"""Windowed SLO abort: stop a load test early once the service is clearly failing it.

A test that runs for ten minutes against a service already far past its SLO only
overloads the service further and wastes the time of everyone waiting for the verdict.
So while a shard dispatches, its housekeeping loop closes a *window* every ``window_s``
seconds of the run and judges it (``SloWatch``):

* **p95** over the window's samples: the latency (from intended send time) of every
  accepted answer that completed in the window, *plus* every request still in flight at
  the window's close that is already older than ``p95_s``, its age counted as its latency
  (a lower bound). Without those a server that stops answering is never "slow": its
  requests never complete, so no window would hold a slow sample (coordinated omission);
* **success**: accepted / answered in the window (generator-side classes left out).

A window *breaches* when its p95 > ``p95_s`` or its success < ``success_below``;
``consecutive`` breaching windows in a row abort the run. A window with no sample
(nothing answered, nothing overdue: a pause in the schedule) is not judged: it neither
breaches nor clears the streak. The abort is the same clean stop as an interrupt
(dispatch stops, in-flight requests get the grace, every record is kept), with a reason:
``aborted at t = 42 s: p95 8.01 s > 2 s in 3 windows of 10 s``.

Sharded runs (Dask): each shard judges its own share of the load (the same windows, on
its own requests) and a shard that aborts stops the whole run (``engine.cluster``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AbortRule:
    """When to abort (params ``slo.abort``); picklable, it travels with the plan."""

    window_s: float = 10.0
    consecutive: int = 3
    p95_s: float = 10.0
    success_below: float = 0.5

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.consecutive < 1 or self.p95_s <= 0:
            raise ValueError("abort rule needs window_s > 0, consecutive >= 1 and p95_s > 0")
        if not 0 <= self.success_below <= 1:
            raise ValueError("abort rule success_below must be within 0..1")


@dataclass(frozen=True)
class Window:
    """One judged window: what it held and which criteria it breached."""

    end_s: float
    samples: int  # accepted answers + overdue in-flight requests
    overdue: int  # in flight at the close, older than p95_s
    answered: int
    p95_s: float | None
    success: float | None
    breaches: tuple[str, ...]  # "p95", "success"


@dataclass
class SloWatch:
    """The windows of one shard: feed answers in, close a window when it is due."""

    rule: AbortRule
    next_end_s: float = field(init=False)
    streak: list[Window] = field(default_factory=list)
    judged: int = 0
    _latencies: list[float] = field(default_factory=list)
    _answered: int = 0
    _accepted: int = 0

    def __post_init__(self) -> None:
        self.next_end_s = self.rule.window_s

    def answered(self, latency_s: float, accepted: bool) -> None:
        """A request answered (or failed on the network) in the current window."""
        self._answered += 1
        if accepted:
            self._accepted += 1
            self._latencies.append(latency_s)

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_end_s

    def close(self, now_s: float, in_flight_ages_s: Iterable[float]) -> str | None:
        """Judge the window ending now (``in_flight_ages_s``: the age of every request in
        flight); the abort reason once ``consecutive`` windows in a row breached."""
        rule = self.rule
        overdue = [a for a in in_flight_ages_s if a > rule.p95_s]
        samples = self._latencies + overdue
        p95 = float(np.percentile(samples, 95)) if samples else None
        success = self._accepted / self._answered if self._answered else None
        window = Window(now_s, len(samples), len(overdue), self._answered, p95, success,
                        tuple(name for name, hit in (
                            ("p95", p95 is not None and p95 > rule.p95_s),
                            ("success", success is not None and success < rule.success_below),
                        ) if hit))  # fmt: skip
        self._latencies, self._answered, self._accepted = [], 0, 0
        while self.next_end_s <= now_s:  # a stalled loop skips windows, never bursts them
            self.next_end_s += rule.window_s
        if window.samples == 0 and window.answered == 0:
            return None  # nothing to judge: the streak stands
        self.judged += 1
        if not window.breaches:
            self.streak = []
            return None
        self.streak.append(window)
        if len(self.streak) < rule.consecutive:
            return None
        return abort_reason(rule, self.streak[-rule.consecutive :])


def abort_reason(rule: AbortRule, windows: list[Window]) -> str:
    """``aborted at t = 42 s: p95 8.01 s > 2 s in 3 windows of 10 s`` (the smallest p95
    of the breaching windows: every one of them was at least that slow)."""
    parts = []
    p95s = [w.p95_s for w in windows if "p95" in w.breaches and w.p95_s is not None]
    if p95s:
        parts.append(f"p95 {min(p95s):.3g} s > {rule.p95_s:g} s")
    rates = [w.success for w in windows if "success" in w.breaches and w.success is not None]
    if rates:
        parts.append(f"success {max(rates):.0%} < {rule.success_below:.0%}")
    end = windows[-1].end_s
    at = f"{end:.0f}" if end >= 10 else f"{end:.1f}"
    return (
        f"aborted at t = {at} s: {' or '.join(parts)} in {len(windows)} windows "
        f"of {rule.window_s:g} s"
    )
