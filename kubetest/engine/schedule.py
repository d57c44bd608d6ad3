"""Open-loop arrival schedules: intended send offsets (seconds from the run's start).

A schedule is computed before the run, never while it goes: the generator then only has
to keep appointments, and every request's latency is measured from its appointment
(coordinated omission cannot hide a stall). Offsets are a sorted float64 array.

Stages (``stages``) take a list of items, each one of:

* ``(rate_per_s, duration_s)`` - constant rate;
* ``("constant", rate_per_s, duration_s)`` - the same, spelled out;
* ``("poisson", rate_per_s, duration_s)`` - Poisson arrivals at that mean rate;
* ``("ramp", r0_per_s, r1_per_s, duration_s)`` - rate ramping linearly from r0 to r1;
* ``("pause", duration_s)`` - no arrivals (a recovery gap).

Deterministic stages place arrival k where the cumulative intensity reaches k, so a
stage of rate r and duration d carries floor(r·d) arrivals and consecutive stages join
without a gap or a double arrival at the seam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_EPS = 1e-9


def _check(rate_per_s: float, duration_s: float) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s >= 0):
        raise ValueError(f"rate must be a finite number >= 0, got {rate_per_s!r}")
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration must be a finite number >= 0, got {duration_s!r}")


def constant(rate_per_s: float, duration_s: float) -> np.ndarray:
    """Evenly spaced arrivals: offsets k/rate for k = 0 .. floor(rate·duration) - 1."""
    _check(rate_per_s, duration_s)
    n = int(math.floor(rate_per_s * duration_s + _EPS))
    if n == 0:
        return np.empty(0, dtype=np.float64)
    return np.arange(n, dtype=np.float64) / rate_per_s


def poisson(rate_per_s: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """Poisson arrivals (exponential gaps, mean 1/rate) in [0, duration), reproducible by seed.

    Real alert streams are bursty; a Poisson schedule exposes queueing that an evenly
    spaced one hides (M/M/c vs D/M/c waiting times).
    """
    _check(rate_per_s, duration_s)
    if rate_per_s == 0 or duration_s == 0:
        return np.empty(0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    expected = rate_per_s * duration_s
    chunk = int(expected + 6 * math.sqrt(expected) + 16)
    times = np.cumsum(rng.exponential(1.0 / rate_per_s, size=chunk))
    while times[-1] < duration_s:  # astronomically rare: extend instead of failing
        more = np.cumsum(rng.exponential(1.0 / rate_per_s, size=chunk)) + times[-1]
        times = np.concatenate([times, more])
    return times[times < duration_s]


def _deterministic(r0: float, r1: float, duration_s: float, carried: float) -> np.ndarray:
    """Arrival offsets of a linear-rate stage (r0 == r1: constant).

    ``carried`` is the cumulative intensity (arrivals owed) before the stage: arrival k of
    the whole run falls where the cumulative intensity reaches k, so stages join cleanly.
    """
    _check(r0, duration_s)
    _check(r1, duration_s)
    total = (r0 + r1) / 2 * duration_s  # arrivals this stage carries (integral of the rate)
    first = math.ceil(carried - _EPS)
    ks = np.arange(first, carried + total - _EPS, dtype=np.float64) - carried
    ks = np.clip(ks, 0.0, None)
    if ks.size == 0:
        return ks
    if r0 == r1:
        return ks / r0
    a = (r1 - r0) / (2 * duration_s)  # Λ(t) = r0·t + a·t²; solve Λ(t) = k (stable form)
    den = r0 + np.sqrt(r0 * r0 + 4 * a * ks)
    return np.divide(2 * ks, den, out=np.zeros_like(ks), where=den > 0)


def stages(items: Sequence[Sequence[object]], seed: int = 0) -> np.ndarray:
    """Concatenate stages (see the module docstring for the item forms)."""
    out: list[np.ndarray] = []
    start = 0.0
    carried = 0.0  # cumulative intensity of the deterministic stages so far
    for i, item in enumerate(items):
        kind, args = _parse_stage(item, i)
        if kind == "pause":
            _check(0.0, args[0])
            start += args[0]
            continue
        if kind == "poisson":
            rate, duration = args
            out.append(poisson(rate, duration, seed=seed + i) + start)
            start += duration
            continue
        r0, r1, duration = args if kind == "ramp" else (args[0], args[0], args[1])
        out.append(_deterministic(r0, r1, duration, carried) + start)
        carried += (r0 + r1) / 2 * duration
        start += duration
    if not out:
        return np.empty(0, dtype=np.float64)
    return np.sort(np.concatenate(out)).astype(np.float64)


def _parse_stage(item: Sequence[object], index: int) -> tuple[str, tuple[float, ...]]:
    where = f"stage {index} ({item!r})"
    if not isinstance(item, Sequence) or isinstance(item, str) or not item:
        raise ValueError(f"{where}: expected (rate_per_s, duration_s) or a tagged tuple")
    if isinstance(item[0], str):
        kind, rest = item[0], tuple(float(x) for x in item[1:])  # type: ignore[arg-type]
        arity = {"constant": 2, "poisson": 2, "ramp": 3, "pause": 1}
        if kind not in arity:
            raise ValueError(f"{where}: unknown stage kind {kind!r}; use {', '.join(arity)}")
        if len(rest) != arity[kind]:
            raise ValueError(f"{where}: {kind!r} takes {arity[kind]} numbers")
        return ("constant" if kind == "constant" else kind), rest
    if len(item) != 2:
        raise ValueError(f"{where}: expected (rate_per_s, duration_s)")
    return "constant", (float(item[0]), float(item[1]))  # type: ignore[arg-type]


def planned_duration(schedule: np.ndarray, rate_hint: float | None = None) -> float:
    """The span a schedule covers: last offset plus one mean gap (so n arrivals at rate r
    span n/r, the duration that produced them)."""
    n = len(schedule)
    if n == 0:
        return 0.0
    if rate_hint:
        return max(float(schedule[-1]) + 1.0 / rate_hint, n / rate_hint)
    if n == 1:
        return float(schedule[0]) + 1.0
    gap = (float(schedule[-1]) - float(schedule[0])) / (n - 1)
    return float(schedule[-1]) + gap


def mean_rate(schedule: np.ndarray) -> float:
    """Mean arrival rate of a schedule (arrivals per second over its planned span)."""
    span = planned_duration(schedule)
    return len(schedule) / span if span > 0 else 0.0
