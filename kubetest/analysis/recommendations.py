"""The guide's capacity recommendations (B1's rate, B2's concurrency): the measured number,
its headroom and the guide's grade, in one sentence for the report and the console."""

from __future__ import annotations

from kubetest.analysis.verdicts import RATE_REQUIREMENT_PER_MIN

#: The guide's business requirement for alert throughput (alerts/min).
REQUIREMENT_PER_MIN = RATE_REQUIREMENT_PER_MIN
#: The guide's concurrency requirement (BR-PA-004), for B2's recommendation.
REQUIREMENT_CONCURRENCY = 100


def _grade(value: float, grades: list[tuple[float, str]], below: str) -> str:
    """The text of the first ``(floor, text)`` (highest first) ``value`` reaches, else ``below``."""
    return next((text for floor, text in grades if value >= floor), below)


def rate_recommendation(rate: float | None, *, lower_bound: bool = False) -> str:
    """The guide's B1 recommendation (≥ 2,000/min excellent, ≥ 1,500 adequate, ≥ 1,000
    limited headroom, else at risk), with the measured number and headroom in it."""
    req = REQUIREMENT_PER_MIN
    if rate is None:
        return "Alert capacity not measured: no phase gave evidence about the service."
    if lower_bound and rate < req:
        return (
            f"Sustained every tested rate, up to {rate:,.0f} alerts/min: the phases stop "
            f"below the {req:,.0f}/min requirement, so it is not judged; add higher phases."
        )
    verdict = _grade(rate, [
        (2 * req, "excellent capacity headroom (≥ 2,000/min)"),
        (1.5 * req, "adequate capacity headroom (≥ 1,500/min)"),
        (req, "meets the requirement but with limited headroom (< 1,500/min)"),
    ], "may not sustain the business requirement under load (< 1,000/min)")  # fmt: skip
    bound = " at least (every tested rate was sustainable)" if lower_bound else ""
    return (
        f"Sustained {rate:,.0f} alerts/min{bound}, {rate / req:.2f}× the "
        f"{req:,.0f}/min requirement: {verdict}."
    )


def concurrency_recommendation(n: int | None, *, lower_bound: bool = False) -> str:
    """The guide's B2 thresholds: ≥ 500 excellent, ≥ 200 good, ≥ 100 adequate, else
    insufficient for the 100-concurrent requirement."""
    if n is None:
        return "Concurrency capacity not measured: no level gave evidence about the service."
    if lower_bound and n < REQUIREMENT_CONCURRENCY:
        return (
            f"Sustained every tested level, up to {n:,} concurrent requests: the levels stop "
            f"below the {REQUIREMENT_CONCURRENCY}-concurrent requirement; add higher levels."
        )
    verdict = _grade(n, [
        (500, "excellent concurrent request handling (≥ 500)"),
        (200, "good concurrent request handling (≥ 200)"),
        (REQUIREMENT_CONCURRENCY, "adequate: meets the 100-concurrent minimum"),
    ], "insufficient for the 100-concurrent requirement")  # fmt: skip
    bound = " at least (every tested level was sustainable)" if lower_bound else ""
    return f"Sustained {n:,} concurrent requests{bound}: {verdict}."
