"""The sections every load test reads: what the alerts name (``alerts``, its
``workloads``), the ``generator``, the ``slo`` and how ``remediation`` requests are
followed; and the labels kubetest puts on what it creates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubetest.params.fields import Fraction, PositiveFloat, PositiveInt, _Model

#: ``kubetest cleanup`` finds what interrupted runs left behind by it.
RUN_LABEL = "kubetest.io/run"
#: Label the Kubernaut gateway reads to decide a resource is in scope.
MANAGED_LABEL = "kubernaut.ai/managed"


class Workloads(_Model):
    """The Deployments alerts name (the real gateway resolves each alert's owner in the
    cluster and answers 400 when it does not exist). ``create: N`` makes N Deployments
    (replicas 0, ``image``) labelled ``kubernaut.ai/managed=true`` and
    ``kubetest.io/run=<token>`` in ``alerts.namespace`` before the load and deletes them
    afterwards; ``selector`` uses existing ones (a label selector) and never deletes them."""

    create: PositiveInt | None = Field(
        None, description="N idle Deployments kubetest creates before the run and deletes after"
    )
    selector: str | None = Field(
        None, description="label selector of existing Deployments to use (never deleted)"
    )
    image: str = Field(
        "registry.k8s.io/pause:3.10", description="image of the created Deployments (replicas 0)"
    )
    ready_timeout_s: PositiveFloat = Field(
        60.0, description="longest wait for the created Deployments to exist, s"
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must be a label selector like app=checkout, or leave it out")
        return v.strip() if v else v

    @model_validator(mode="after")
    def _one(self) -> Workloads:
        if (self.create is None) == (self.selector is None):
            raise ValueError(
                "give exactly one of create: N (kubetest makes N Deployments) or "
                "selector: '<label selector>' (existing ones)"
            )
        return self


class Alerts(_Model):
    """``unique`` varies what services deduplicate on (owner and pod names, fingerprint;
    the alertname too for ``kubernaut-legacy``, whose cooldown is per alertname and
    namespace); ``namespace`` is where the alerts say the resource lives (a managed one);
    ``workloads`` the pool of real Deployments alerts name (``kubernaut`` profile)."""

    unique: bool = Field(
        True,
        description="vary names and fingerprint per alert; false repeats one alert (dedup test)",
    )
    namespace: str = Field(
        "test-workloads", description="namespace the alerts name (one the service manages)"
    )
    workloads: Workloads | None = Field(
        None, description="a pool of real Deployments for alerts to name (kubernaut)"
    )


#: RemediationRequest phases after which the gateway accepts a new signal for the owner
#: (``IsTerminalPhase`` in Kubernaut's ``pkg/gateway/processing/phase_checker.go``).
TERMINAL_PHASES = ["Completed", "Failed", "TimedOut", "Skipped", "Cancelled"]
#: Non-terminal phases that can wait indefinitely (cooldown, a human's approval).
WAITING_PHASES = ["Blocked", "AwaitingApproval"]


class Remediation(_Model):
    """Following created signals to their RemediationRequest's terminal phase (``kubernaut``
    profile with ``environment.kubeconfig``): where, how long to wait and how hard to ask.
    ``namespace`` is the controller namespace the gateway creates RRs in; left out, it is
    read from the first 201 answer (``remediationRequestNamespace``)."""

    follow: bool = Field(
        True, description="follow created signals to their RemediationRequest's terminal phase"
    )
    namespace: str | None = Field(
        None,
        description="controller namespace of the RemediationRequests; null: from the first 201",
    )
    timeout_min: PositiveFloat = Field(10.0, description="longest wait for a terminal phase, min")
    mode: Literal["watch", "poll"] = Field(
        "watch", description="watch the RemediationRequests, or poll them"
    )
    poll_interval_s: PositiveFloat = Field(2.0, description="seconds between polls (mode: poll)")
    max_requests_per_s: PositiveFloat = Field(
        5.0, description="cap on Kubernetes API requests/s while following"
    )
    group: str = Field(
        "kubernaut.ai",
        description="API group of RemediationRequest (earlier releases: remediation.kubernaut.ai)",
    )
    version: str = Field("v1alpha1", description="API version of RemediationRequest")
    plural: str = Field("remediationrequests", description="resource plural of RemediationRequest")
    terminal_phases: list[str] = Field(
        TERMINAL_PHASES,
        description="phases after which a remediation has ended (must include Completed)",
    )
    waiting_phases: list[str] = Field(
        WAITING_PHASES, description="non-terminal phases that may wait for a human, counted apart"
    )

    @field_validator("terminal_phases")
    @classmethod
    def _terminal(cls, v: list[str]) -> list[str]:
        if "Completed" not in v:
            raise ValueError("must include Completed (a remediation's success)")
        return v

    @model_validator(mode="after")
    def _apart(self) -> Remediation:
        both = sorted(set(self.terminal_phases) & set(self.waiting_phases))
        if both:
            raise ValueError(
                f"{both[0]} is in both terminal_phases and waiting_phases: keep it in one"
            )
        return self


class Generator(_Model):
    workers: PositiveInt = Field(
        1, description="generator processes; > 1: shards on a local Dask cluster"
    )
    scheduler: str | None = Field(
        None, description="existing Dask scheduler (tcp://host:8786): one shard per worker"
    )
    # where remote Dask workers write records (fsspec URL); None: shipped back to the client
    records_url: str | None = Field(
        None, description="where remote Dask workers write records (fsspec URL); null: shipped back"
    )
    max_in_flight: PositiveInt = Field(
        10_000, description="requests in flight before arrivals are dropped (and the run saturated)"
    )
    # bytes of each answer the engine reads; a longer body is the error class ``oversized``
    max_body_bytes: PositiveInt = Field(
        64 << 10, description="bytes of each answer read; longer is the error class oversized"
    )
    arrivals: Literal["constant", "poisson"] = Field(
        "constant", description="arrival process of open-loop load"
    )
    # the load's HTTP client (engine.transport): fast = asyncio Protocol + httptools
    client: Literal["fast", "aiohttp"] = Field(
        "fast", description="HTTP client of the load: fast (protocol-level) or aiohttp"
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "tls://", "inproc://")):
            raise ValueError(f"must be a Dask scheduler address like tcp://host:8786, got {v!r}")
        return v


class Records(_Model):
    """The per-request records (CSV / Parquet) and the HDR interval logs beside them
    (``kubetest.engine.records``, ``kubetest.engine.hdrlog``)."""

    max_per_s: PositiveFloat | None = Field(
        2000.0,
        description="records a second above which they are sampled (the HDR log keeps "
        "every request); null: a record for every request",
    )
    hdr_interval_s: PositiveFloat = Field(
        1.0, description="length of one window of the HDR interval log, s"
    )


class SloAbort(_Model):
    """Stop a load test early (A1, A2, each B1 phase and B2 level) once ``consecutive``
    windows of ``window_s`` in a row breach: p95 > ``p95_s`` (left out: 2 × ``slo.p95_s``)
    or success < ``success_below`` (``kubetest.engine.abort``)."""

    window_s: PositiveFloat = Field(10.0, description="length of one judged window, s")
    consecutive: PositiveInt = Field(3, description="breaching windows in a row that stop the test")
    p95_s: PositiveFloat | None = Field(
        None, description="a window breaches above this p95, s; null: 2 × slo.p95_s"
    )
    success_below: Fraction = Field(
        0.5, description="a window breaches below this success rate (0..1)"
    )


class Slo(_Model):
    p95_s: PositiveFloat = Field(5.0, description="p95 response time BR-PA-003 allows, s")
    success_rate: Fraction = Field(0.95, description="success rate a load must keep (0..1)")
    abort: SloAbort | None = Field(
        SloAbort(),
        description="stop a clearly failing load test early; null: every test runs its full length",
    )

    @model_validator(mode="after")
    def _abort_p95(self) -> Slo:
        if self.abort is not None and self.abort.p95_s is None:
            self.abort = self.abort.model_copy(update={"p95_s": 2 * self.p95_s})
        return self
