"""How throughput scales with load: the knee of a curve, Gunther's Universal Scalability
Law fitted to a closed-loop sweep, and Little's law as a check of a level's numbers.

Pure functions of sweep points (no I/O); ``analysis.capacity`` calls them on B1/B2's phase
tables, the report draws ``UslFit.predict``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

#: Knee: the least departure from the chord (share of the range) that counts as a knee.
KNEE_MIN_DEPARTURE = 0.05


def find_knee(
    x: Sequence[float], y: Sequence[float], *, curve: str, direction: str = "increasing"
) -> float | None:
    """Kneedle (``kneed``) on points sorted by x, repeated x averaged; ``None`` with fewer
    than 3 points or no knee (a straight line has none).

    A sweep has 5-10 points, too few for Kneedle's S = 1 rule (the difference curve must
    fall by S × the mean point spacing after its peak); then the knee is the peak of the
    difference curve itself, if the curve leaves its chord there by ≥ ``KNEE_MIN_DEPARTURE``
    of its range.
    """
    from kneed import KneeLocator

    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)})
    frame = frame.replace([np.inf, -np.inf], np.nan).dropna()
    frame = frame.groupby("x", as_index=False)["y"].mean().sort_values("x")
    if len(frame) < 3 or frame["y"].nunique() < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns "no knee/elbow found"
        loc = KneeLocator(frame["x"], frame["y"], curve=curve, direction=direction)
    if loc.knee is not None:
        return float(loc.knee)
    diff = np.asarray(loc.y_difference, dtype=float)
    best = int(np.argmax(diff))
    if 0 < best < len(diff) - 1 and diff[best] >= KNEE_MIN_DEPARTURE:
        return float(frame["x"].iloc[best])
    return None


def usl(n: np.ndarray | float, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """Gunther's Universal Scalability Law: X(N) = λN / (1 + σ(N−1) + κN(N−1))."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """A USL fit of throughput (per s) on concurrency. ``sigma``: contention (serialised
    share), ``kappa``: coherency (crosstalk cost). The peak is at N* = √((1−σ)/κ); with
    κ = 0 throughput only approaches λ/σ, reported as the peak (at N = ∞)."""

    lam: float
    sigma: float
    kappa: float
    r2: float
    points: int
    peak_concurrency: float | None
    peak_throughput: float | None

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        return usl(n, self.lam, self.sigma, self.kappa)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_usl(n: Sequence[float], x: Sequence[float]) -> UslFit | None:
    """Least-squares USL fit (scipy ``curve_fit``, bounded σ ∈ [0, 1], κ ≥ 0), best of a
    few starting points; ``None`` with fewer than 3 levels or when no fit converges."""
    n_arr = np.asarray(n, dtype=float)
    x_arr = np.asarray(x, dtype=float)
    keep = np.isfinite(n_arr) & np.isfinite(x_arr) & (n_arr > 0)
    n_arr, x_arr = n_arr[keep], x_arr[keep]
    if np.unique(n_arr).size < 3 or not (x_arr > 0).any():
        return None
    lam0 = float(np.max(x_arr / n_arr))
    best: tuple[float, np.ndarray] | None = None
    for s0 in (1e-3, 0.05, 0.3):
        for k0 in (0.0, 1e-5, 1e-3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p, _ = optimize.curve_fit(
                        usl, n_arr, x_arr, p0=(lam0, s0, k0),
                        bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, np.inf]), maxfev=20_000,
                    )  # fmt: skip
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((usl(n_arr, *p) - x_arr) ** 2))
            if best is None or sse < best[0]:
                best = (sse, p)
    if best is None:
        return None
    sse, (lam, sigma, kappa) = best
    sst = float(np.sum((x_arr - x_arr.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    peak_n: float | None = None
    peak_x: float | None = None
    if kappa > 1e-12:
        peak_n = max(1.0, math.sqrt(max(1.0 - sigma, 0.0) / kappa))
        peak_x = float(usl(peak_n, lam, sigma, kappa))
    elif sigma > 1e-9:
        peak_x = lam / sigma
    return UslFit(
        float(lam), float(sigma), float(kappa), float(r2), int(n_arr.size), peak_n, peak_x
    )


def littles_law_error(n: float | None, x_r: float) -> float | None:
    """|X·R − N| / N: Little's law says a closed loop of N clients has N = X·R."""
    if not n or not math.isfinite(x_r):
        return None
    return abs(x_r - n) / n
