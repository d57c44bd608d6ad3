"""Queueing theory for the reference target: M/M/c (Erlang C) response-time quantiles and
the analytic rate at which a p95 SLO is met, so the capacity workbook can be checked
against a model whose answer is known.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import optimize


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load a = λ/μ < c
    (via the numerically stable Erlang B recursion)."""
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho * (1 - b))


def mmc_response_sf(t: float, lam: float, mu: float, c: int) -> float:
    """P(T > t) for the response time T (wait + service) of M/M/c, FIFO."""
    if lam >= c * mu:
        return 1.0
    pw = erlang_c(c, lam / mu)
    theta = c * mu - lam  # the wait, given one, is exponential with this rate
    if abs(theta - mu) < 1e-12 * mu:
        conv = (1 + mu * t) * math.exp(-mu * t)
    else:
        conv = (mu * math.exp(-theta * t) - theta * math.exp(-mu * t)) / (mu - theta)
    return (1 - pw) * math.exp(-mu * t) + pw * conv


def mmc_response_quantile(lam: float, mu: float, c: int, q: float = 0.95) -> float:
    """The q-quantile of M/M/c response time (s); ``inf`` at or above saturation."""
    if lam >= c * mu:
        return math.inf
    hi = 1.0 / mu
    while mmc_response_sf(hi, lam, mu, c) > 1 - q:
        hi *= 2
    return float(optimize.brentq(lambda t: mmc_response_sf(t, lam, mu, c) - (1 - q), 0.0, hi))


def mmc_max_rate(mu: float, c: int, p95_s: float, q: float = 0.95) -> float:
    """The arrival rate (per s) at which M/M/c's q-quantile response time reaches ``p95_s``:
    the analytic max sustainable rate for that SLO (0 if even an idle server misses it)."""
    if mmc_response_quantile(1e-12, mu, c, q) >= p95_s:
        return 0.0
    top = c * mu * (1 - 1e-9)
    return float(
        optimize.brentq(lambda lam: mmc_response_quantile(lam, mu, c, q) - p95_s, 1e-12, top)
    )


def reference_theory(workers: int, service_s: float, dist: str, p95_s: float) -> dict[str, Any]:
    """What queueing theory says about the embedded target: capacity c/D always, and for
    exponential service with Poisson arrivals (M/M/c) the rate at which p95 meets the SLO."""
    out: dict[str, Any] = {
        "model": f"M/{ {'exp': 'M', 'const': 'D'}.get(dist, 'G') }/{workers}".replace(" ", ""),
        "workers": workers,
        "mean_service_s": service_s,
        "capacity_per_min": workers / service_s * 60.0,
    }
    if dist == "exp":
        out["mmc_rate_at_slo_p95_per_min"] = mmc_max_rate(1 / service_s, workers, p95_s) * 60.0
    return out
