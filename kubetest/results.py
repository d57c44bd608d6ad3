"""The result contracts, typed: ``results/<TEST>.json`` and ``summary.json``.

Every test notebook writes its result file through ``TestContext.save_result``, which
validates it against ``TestResult`` (a malformed result is refused with the field named);
``summary.build_summary`` reads the result files as ``TestResult`` and writes
``summary.json`` through ``Summary``; the report (``report/view.py``, ``report/markdown.py``)
and the session (``session.py``) read both typed. ``docs/design.md`` (Contracts) says
which module writes each section.

The models are open (``extra="allow"``): a key a test writes that is not declared here
(A3's ``availability``, A4's ``actions``, B1's ``theory`` ...) is kept as written, so a
file round-trips (load → dump) without losing a key, and other tools reading today's files
see the same keys.

**One latency summary per test.** A load test's file carries two sets of percentiles:

* ``latency`` (``Latency``): the figures every verdict is judged on, computed from the
  records (``analysis.latency.summarise``): accepted requests only, from the intended send
  time, each percentile with its 95 % interval. The report and the summary read latency
  from here, and only from here.
* ``load``: the engine's own summary of the run (``engine.run.summarise_shards``), kept as
  the generator's figures: rate held, schedule lag, saturation, per worker, and its own
  HDR-histogram percentiles (``load["p95"]`` ...), which are never judged. Only its
  saturation fields are read (``LoadHealth``), for generator health and validity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubetest.errors import ResultError
from kubetest.files import jsonable

#: A BR verdict (``analysis.verdicts``).
Status = Literal["PASS", "FAIL", "NOT_RUN", "INCONCLUSIVE"]
#: A run's validity (``analysis.validity``), apart from its verdict.
ValidityStatus = Literal["VALID", "INCONCLUSIVE", "INVALID"]

__all__ = [
    "BrEntry", "Estimate", "GeneratorHealth", "Latency", "LoadHealth", "ResultError",
    "Status", "Summary", "SummaryValidity", "TestResult", "ValidityResult", "ValidityStatus",
    "jsonable", "load_result", "validate_result",
]  # fmt: skip


class _Open(BaseModel):
    """Declared fields typed and checked; any other key kept as written."""

    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict[str, Any]:
        """The JSON object this model was read from (or built as): the keys it was given,
        nothing added."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return out


Number = int | float  # an int stays an int on disk (no 3 → 3.0)


class BrEntry(_Open):
    """One business requirement's verdict (``analysis.verdicts.Requirement``): a row of a
    result file's and the summary's ``requirements``."""

    id: str
    measured: Number | None = None  # in ``unit``; null when nothing was measured
    unit: str = ""
    threshold: str = ""  # the criterion, in words
    status: Status
    details: dict[str, Any] = Field(default_factory=dict)  # title, judged_on, reasons, ...


class ValidityResult(_Open):
    """A run's validity (``analysis.validity.Validity``): whether its numbers describe the
    service. INVALID: the generator could not keep up; INCONCLUSIVE: incomplete or unsure."""

    status: ValidityStatus = "VALID"
    reasons: list[str] = Field(default_factory=list)


class SummaryValidity(ValidityResult):
    """The worst validity of the session's tests, and each test's."""

    tests: dict[str, ValidityResult] = Field(default_factory=dict)


class Estimate(_Open):
    """A value with its 95 % interval (``analysis.latency.Estimate``); null when there was
    nothing to estimate from."""

    value: float | None = None
    low: float | None = None
    high: float | None = None


class Latency(_Open):
    """``latency``: the one latency summary a test is judged on (seconds), from its records
    (``analysis.latency.summarise``). Percentiles and ``max``/``mean`` cover accepted
    requests, measured from the intended send time (no coordinated omission)."""

    count: int  # requests the generator sent (arrivals it never sent are in not_sent)
    accepted: int  # of which the service accepted
    success_rate: Estimate  # accepted / count, with its Wilson interval
    p50: Estimate
    p95: Estimate  # what latency BRs are judged on
    p99: Estimate
    max: float | None = None
    mean: float | None = None
    schedule_lag_p99: float | None = None  # the generator's own delay (sent − intended)
    not_sent: int = 0  # arrivals late or dropped by the generator (never sent)
    outcomes: dict[str, int] = Field(default_factory=dict)  # accepted, duplicate, ...
    errors: dict[str, int] = Field(default_factory=dict)  # error class → count


class LoadHealth(_Open):
    """The generator's judgement of one load (the saturation fields of the engine's summary,
    ``load`` or one of ``phases_load``; ``engine.judge``)."""

    model_config = ConfigDict(extra="ignore")  # a view of the engine's summary, not a copy

    saturated: bool | None = None
    saturation_reasons: list[str] | None = None
    target_rate_per_s: float | None = None
    achieved_rate_per_s: float | None = None
    schedule_lag_p99: float | None = None  # seconds; open loop only
    late_or_dropped: int | None = None
    loop_busy: float | None = None
    workers: int | None = None
    outcomes: dict[str, Any] | None = None  # accepted, duplicate, ... (the engine's count)
    #: a sweep phase's verdict (``phases_load``); ``generator-limited`` phases are not
    #: evidence, so their saturation does not blame the generator for the session
    phase_status: str | None = "judged"

    @property
    def judged_saturated(self) -> bool:
        """Saturated on load that judged something (not a generator-limited phase)."""
        return bool(self.saturated) and self.phase_status != "generator-limited"

    @property
    def accepted(self) -> int:
        return int((self.outcomes or {}).get("accepted", 0))


class GeneratorHealth(_Open):
    """``summary.json``'s ``generator``: whether the load generator kept up, over every load
    of the session (``LoadHealth`` of each ``load`` and ``phases_load``)."""

    saturated: bool = False
    schedule_lag_p99_s: float | None = None  # the worst load's schedule lag p99

    @classmethod
    def of(cls, loads: list[LoadHealth]) -> GeneratorHealth:
        lags = [ld.schedule_lag_p99 for ld in loads if ld.schedule_lag_p99 is not None]
        return cls(
            saturated=any(ld.judged_saturated for ld in loads),
            schedule_lag_p99_s=max(lags) if lags else None,
        )


class TestResult(_Open):
    """``results/<TEST>.json``, as ``TestContext.save_result`` writes it.

    Every test writes ``title``, ``started``, ``finished`` (ISO 8601, UTC) and
    ``complete``. The sections after them are each written by the tests named.
    """

    __test__: ClassVar[bool] = False  # not a pytest class, despite the name

    test: str | None = None  # the test key (A1 ...); save_result adds it
    title: str
    started: str | None
    finished: str | None
    complete: bool | None
    requirements: list[BrEntry] = Field(default_factory=list)  # all but ENV
    params: dict[str, Any] | None = None  # the test's params section, as parsed
    validity: ValidityResult | None = None  # load tests, sweeps and A3
    #: load tests (A1, A2): the engine's own summary of the run, the generator's figures
    #: (``engine.run.summarise_shards``); its percentiles are never judged: see ``latency``
    load: dict[str, Any] | None = None
    latency: Latency | None = None  # load tests: the latency judged (see the module doc)
    records: str | None = None  # the records file, relative to the session folder
    aborted: str | None = None  # the SLO abort's reason, when it stopped the load
    service_metrics: dict[str, Any] | None = None  # metrics.py: the scrape's summary
    integrity: dict[str, int | None] | None = None  # reconciled counts (analysis.integrity)
    integrity_check: dict[str, Any] | None = None  # how the reconciliation went
    gateway_counters: dict[str, Any] | None = None  # analysis.gateway_counters
    remediation: dict[str, Any] | None = None  # kubernaut: RemediationRequests followed
    workload_pool: dict[str, Any] | None = None  # kubernaut: how the pool served the alerts
    phases: list[dict[str, Any]] | None = None  # sweeps (B1, B2): one row per phase
    phases_load: list[dict[str, Any]] | None = None  # sweeps: each phase's engine summary
    phases_service: list[dict[str, Any]] | None = None  # sweeps: each phase's service side
    capacity: dict[str, Any] | None = None  # sweeps: analysis.capacity's figures
    stopped: str | None = None  # sweeps: why the sweep stopped where it did

    def loads(self) -> list[LoadHealth]:
        """The generator's judgement of each load this test ran (its load, or each phase)."""
        raw = [self.load] if isinstance(self.load, dict) else []
        raw += [p for p in self.phases_load or [] if isinstance(p, dict)]
        return [LoadHealth.model_validate(ld) for ld in raw]


class StoredResult(TestResult):
    """A result file as read back: files written by older versions or by hand may lack the
    keys every test writes today, which read as absent."""

    title: str = ""
    started: str | None = None
    finished: str | None = None
    complete: bool | None = None


class Summary(_Open):
    """``summary.json`` (``summary.build_summary``)."""

    session: str
    complete: bool
    failures: dict[str, str] = Field(default_factory=dict)  # test → why its notebook failed
    tests_run: list[str] = Field(default_factory=list)
    validity: SummaryValidity = Field(default_factory=SummaryValidity)
    #: every BR (NOT_RUN when its test did not run), then extra ones, then DATA-INTEGRITY
    requirements: list[BrEntry] = Field(default_factory=list)
    #: max sustainable rate, degradation point, knee, max sustainable concurrency (null
    #: when not measured), then every other figure B1 and B2 wrote
    capacity: dict[str, Any] = Field(default_factory=dict)
    generator: GeneratorHealth = Field(default_factory=GeneratorHealth)
    integrity: dict[str, int | None] = Field(default_factory=dict)  # accepted, handled, ...
    confidence: int = 0  # 0–100
    confidence_penalties: dict[str, int] = Field(default_factory=dict)
    decision: Literal["GO", "NO-GO"] = "NO-GO"
    decision_reasons: list[str] = Field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Summary:
        return cls.model_validate_json(Path(path).read_text())


def _explain(exc: ValidationError, what: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']} (got {err.get('input')!r:.80})")
    return f"{what} does not match its contract (kubetest.results): " + "; ".join(lines)


def validate_result(data: dict[str, Any], what: str = "the result") -> TestResult:
    """A result dict as ``TestResult``, or ``ResultError`` naming each bad field."""
    try:
        return TestResult.model_validate(jsonable(data))
    except ValidationError as exc:
        raise ResultError(_explain(exc, what)) from None


def load_result(path: Path) -> StoredResult:
    """One result file, typed; ``ResultError`` when it is not JSON or not a result."""
    try:
        return StoredResult.model_validate(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultError(f"{path}: unreadable: {exc}") from None
    except ValidationError as exc:
        raise ResultError(_explain(exc, str(path))) from None
