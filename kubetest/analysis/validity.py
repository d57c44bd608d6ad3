"""Run validity, apart from the verdict: can this run's numbers be judged at all?

A verdict (PASS / FAIL) says whether the *service* met its requirement; validity says
whether the run measured the service in the first place. Kept apart so a report never
blames the service for the generator, nor credits it for a run that went wrong:

* ``VALID``: judge as usual;
* ``INCONCLUSIVE``: the evidence is partial or disturbed. A PASS cannot be claimed from
  it (it becomes INCONCLUSIVE); a FAIL that was measured stands;
* ``INVALID``: the numbers describe the generator or its clocks, not the service: the
  test is never judged PASS or FAIL (``verdicts.apply_validity``).

Reasons, from the engine's summary of a load (``engine.run``) and the service's metrics
scraped beside it (``kubetest.metrics``):

* generator health (INVALID): the engine's own saturation judgement — schedule lag,
  achieved / offered rate, arrivals dropped at the in-flight cap or sent late, the event
  loop's CPU (its busy share of wall time, stalls of its ticker);
* completeness (INCONCLUSIVE): the run was interrupted, or shards (Dask workers) were
  lost. An SLO abort is not incompleteness: it is the verdict (FAIL);
* clock offsets (Dask, per worker): a clock known only to ± more than ``CLOCK_WARN_S``
  (5 ms) makes the shards' slices of the schedule that far apart (INCONCLUSIVE); more
  than ``LAG_P99_LIMIT_S`` (50 ms), worse than the schedule lag a generator may have
  (INVALID). A worker more than ``CLOCK_UNSYNCED_S`` (1 s) off is unsynchronised: its
  clock drifts during the run, which the start correction does not follow (INCONCLUSIVE);
* the target restarting mid-test (INCONCLUSIVE): a service counter fell between two
  scrapes, or ``process_start_time_seconds`` changed (``analysis/service_metrics.target_restarts``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

ValidityStatus = Literal["VALID", "INCONCLUSIVE", "INVALID"]
#: Worst last.
ORDER: tuple[ValidityStatus, ...] = ("VALID", "INCONCLUSIVE", "INVALID")
#: A worker clock this far off the client's is not synchronised at all (no NTP).
CLOCK_UNSYNCED_S = 1.0


def worst(statuses: Iterable[str]) -> ValidityStatus:
    """The worst of some statuses (VALID for none)."""
    ranks = [ORDER.index(s) for s in statuses if s in ORDER]
    return ORDER[max(ranks, default=0)]


@dataclass
class Validity:
    """A run's validity and every reason that lowered it."""

    status: ValidityStatus = "VALID"
    reasons: list[str] = field(default_factory=list)

    def add(self, status: ValidityStatus, reason: str) -> None:
        self.reasons.append(reason)
        self.status = worst([self.status, status])

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Validity:
        data = data or {}
        status = data.get("status", "VALID")
        return cls(status if status in ORDER else "INCONCLUSIVE", list(data.get("reasons") or []))


def _generator(load: dict[str, Any], v: Validity) -> None:
    if load.get("saturated"):
        why = load.get("saturation_reasons") or ["the generator could not keep up"]
        for reason in why:
            v.add("INVALID", f"generator: {reason}")


def _completeness(load: dict[str, Any], v: Validity) -> None:
    if load.get("interrupted"):
        ran = load.get("duration_s")
        at = f" after {ran:.0f} s" if isinstance(ran, int | float) else ""
        v.add("INCONCLUSIVE", f"incomplete: the run was interrupted{at}")
    lost = load.get("lost_shards") or []
    if lost:
        shards = load.get("shards") or len(lost)
        v.add(
            "INCONCLUSIVE",
            f"incomplete: {len(lost)} of {shards} shards lost ({lost[0].get('reason')})",
        )


def _clocks(load: dict[str, Any], v: Validity) -> None:
    from kubetest.engine.judge import CLOCK_WARN_S, LAG_P99_LIMIT_S  # the engine's own limits

    for row in load.get("per_worker") or []:
        offset = abs(float(row.get("clock_offset_s") or 0.0))
        known = float(row.get("clock_uncertainty_s") or 0.0)
        where = f"worker {row.get('worker')}" + (
            f" ({row['address']})" if row.get("address") else ""
        )
        if known > LAG_P99_LIMIT_S:
            v.add("INVALID", f"clock: {where} offset known only to ±{known * 1e3:.0f} ms "
                             f"(> {LAG_P99_LIMIT_S * 1e3:.0f} ms): shards may have started "
                             "that far apart")  # fmt: skip
        elif known > CLOCK_WARN_S:
            v.add("INCONCLUSIVE", f"clock: {where} offset known only to ±{known * 1e3:.1f} ms "
                                  f"(> {CLOCK_WARN_S * 1e3:.0f} ms)")  # fmt: skip
        if offset > CLOCK_UNSYNCED_S:
            v.add("INCONCLUSIVE", f"clock: {where} is {offset:.1f} s off the client's: "
                                  "unsynchronised clocks drift during a run (sync them: "
                                  "chrony/NTP)")  # fmt: skip


def _restarts(service: dict[str, Any] | None, v: Validity) -> None:
    restarts = (service or {}).get("restarts") or []
    if restarts:
        first = restarts[0]
        more = f" (and {len(restarts) - 1} more)" if len(restarts) > 1 else ""
        v.add("INCONCLUSIVE", f"target restarted mid-test at t ≈ {first['t_s']:.0f} s: "
                              f"{first['why']}{more} (unless target.metrics_url is balanced "
                              "over several replicas: point it at one)")  # fmt: skip


def load_validity(load: dict[str, Any], service: dict[str, Any] | None = None) -> Validity:
    """The validity of one load run from its engine summary and its service metrics
    summary (``MetricsScrape.summary()``; None when not scraped)."""
    v = Validity()
    _generator(load, v)
    _completeness(load, v)
    _clocks(load, v)
    _restarts(service, v)
    return v


def validity_of(requirement: dict[str, Any]) -> str:
    """The validity of the run a requirement row was judged on, or "—" for one whose test
    carries none (A4, which sends no load; a test not run) (the BR table's and
    ``kubetest run``'s column)."""
    v = (requirement.get("details") or {}).get("validity")
    return str(v.get("status", "—")) if isinstance(v, dict) else "—"


def combine(parts: dict[str, Validity]) -> Validity:
    """Several validities (tests, phases) as one, each reason prefixed with its name."""
    out = Validity(worst(p.status for p in parts.values()))
    out.reasons = [f"{name}: {r}" for name, p in parts.items() for r in p.reasons]
    return out
