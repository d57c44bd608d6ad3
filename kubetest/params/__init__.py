"""The YAML parameter sets: one pydantic model per section, refused early with one line.

Every mistake a user can make in a params file must be caught before any load is sent,
and reported as a single line naming the key and the fix (see ``ParamsError``).
A section that is absent from the file is ``None`` here and its test is not run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kubetest.errors import ParamsError
from kubetest.secrets import secret_named
from kubetest.tls import check_ca_file

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]

API = Literal["webhook", "kubernaut", "kubernaut-legacy"]

#: The webhook path each profile posts to when ``target.url`` gives none.
API_PATHS: dict[str, str] = {
    "webhook": "/webhook/prometheus",
    "kubernaut": "/api/v1/signals/prometheus",
    "kubernaut-legacy": "/alerts",
}

#: Tests in the order they run; keys are the ``--only`` names, values the params section.
TESTS: dict[str, str] = {
    "ENV": "environment",
    "EXT": "external_suites",
    "A1": "a1_response_time",
    "A2": "a2_concurrent",
    "A3": "a3_availability",
    "A4": "a4_actions",
    "B1": "b1_capacity",
    "B2": "b2_concurrency",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_http_url(value: str | None, *, allow_embedded: bool = False) -> str | None:
    if value is None or (allow_embedded and value == "embedded"):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = "'embedded' or " if allow_embedded else ""
        raise ValueError(f"must be {hint}an http(s):// URL with a host, got {value!r}")
    return value


class EmbeddedTarget(_Model):
    """Knobs of the built-in reference target (an M/G/c queue whose truth is known).

    ``api`` and ``auth_token_env`` follow ``target.api`` / ``target.auth_token_env`` when
    left out; the other profile knobs default to the target's own (``TargetConfig``).
    For ``kubernaut`` the target holds a small cluster: ``managed_namespaces`` (labelled
    ``kubernaut.ai/managed=true``) and ``kube_namespaces`` exist in it, RemediationRequests
    live in ``controller_namespace`` and spend ``remediation_phase_s`` (processing,
    analyzing, executing, verifying) in their phases, ``remediation_fail_rate`` of them
    failing and ``blocked_rate`` Blocked for ``blocked_s``; ``kube_denied``
    (``verb:resource``) takes grants from kubetest's token to its Kubernetes API.
    """

    workers: PositiveInt = Field(8, description="servers of the M/G/c queue (c)")
    service_ms: PositiveFloat = Field(150.0, description="mean service time of one alert, ms")
    service_dist: Literal["exp", "const", "lognormal"] = Field(
        "lognormal", description="service-time distribution"
    )
    error_rate: Fraction = Field(0.0, description="share of alerts answered 500")
    outages: list[tuple[Annotated[float, Field(ge=0)], PositiveFloat]] = Field(
        [], description="[start_s, duration_s] windows (from start) in which it answers 503"
    )
    api: API | None = Field(None, description="profile it speaks; null: target.api")
    auth_token_env: str | None = Field(
        None, description="env var of the bearer token it asks for; null: target.auth_token_env"
    )
    max_concurrent_requests: PositiveInt | None = Field(
        None, description="in-flight limit (429 above); null: the profile's (kubernaut: 100)"
    )
    managed_namespaces: list[str] | None = Field(
        None,
        description="namespaces it takes signals for (kubernaut; else 200 rejected); null: its own",
    )
    future_tolerance_s: NonNegative | None = Field(
        None, description="newest startsAt accepted ahead of now, s; null: 120 (kubernaut)"
    )
    rate_limit_per_s: PositiveFloat | None = Field(
        None, description="requests/s before 429; null: no limit"
    )
    cooldown_s: NonNegative | None = Field(
        None, description="per alertname/namespace cooldown, s (kubernaut-legacy); null: 60"
    )
    # integrity faults: shares of accepted alerts lost from / duplicated in the history
    lose_rate: Fraction = Field(
        0.0, description="share of accepted alerts lost from its history (integrity fault)"
    )
    duplicate_rate: Fraction = Field(
        0.0, description="share of accepted alerts duplicated in its history (integrity fault)"
    )
    seed: int | None = Field(
        None, description="seed for service times, errors and faults; null: random"
    )
    # kubernaut: the target's cluster (defaults: TargetConfig's)
    controller_namespace: str | None = Field(
        None, description="where its RemediationRequests live; null: kubernaut-system"
    )
    kube_namespaces: list[str] | None = Field(
        None, description="namespaces its cluster holds; null: [default, test-workloads]"
    )
    remediation_phase_s: tuple[NonNegative, NonNegative, NonNegative, NonNegative] | None = Field(
        None, description="seconds in processing, analyzing, executing, verifying"
    )
    remediation_fail_rate: Fraction | None = Field(
        None, description="share of RemediationRequests that end Failed; null: 0"
    )
    blocked_rate: Fraction | None = Field(
        None, description="share of RemediationRequests Blocked for blocked_s; null: 0"
    )
    blocked_s: NonNegative | None = Field(
        None, description="how long a Blocked RemediationRequest waits, s; null: 1"
    )
    kube_denied: list[str] | None = Field(
        None,
        description="VERB:RESOURCE grants taken from kubetest's token, e.g. delete:deployments",
    )

    @model_validator(mode="after")
    def _faults(self) -> EmbeddedTarget:
        if self.lose_rate + self.duplicate_rate > 1:
            raise ValueError("lose_rate + duplicate_rate must be at most 1")
        return self

    @field_validator("kube_denied")
    @classmethod
    def _denied(cls, v: list[str] | None) -> list[str] | None:
        verbs = ("get", "list", "watch", "create", "update", "patch", "delete",
                 "deletecollection")  # fmt: skip
        for item in v or []:
            verb, sep, resource = item.partition(":")
            if not sep or verb not in verbs or not resource:
                raise ValueError(f"{item!r} must be VERB:RESOURCE (e.g. delete:deployments), "
                                 f"VERB one of {', '.join(verbs)}")  # fmt: skip
        return v

    @field_validator("controller_namespace", "kube_namespaces", "managed_namespaces")
    @classmethod
    def _namespaces(cls, v: str | list[str] | None) -> str | list[str] | None:
        for ns in [v] if isinstance(v, str) else v or []:
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
                raise ValueError(f"{ns!r} is not a namespace name (lowercase letters, digits "
                                 "and '-', at most 63)")  # fmt: skip
        return v


class Tls(_Model):
    """How HTTPS to the service is verified: ``ca_file`` (PEM) trusts a private CA;
    ``insecure`` skips verification (a test setup only). A relative ``ca_file`` starts at
    the params file's folder, like ``external_suites.cwd``; it is kept absolute here."""

    ca_file: str | None = Field(
        None,
        description="PEM CA that signed the service's certificate (relative to the params file)",
    )
    insecure: bool = Field(False, description="skip certificate verification (test setups only)")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        path = (base / Path(v).expanduser()).resolve()
        try:
            check_ca_file(path)
        except ValueError as exc:
            if Path(v).expanduser().is_absolute() or path.exists():
                raise
            hint = "a relative path starts at the params file's folder"
            raise ValueError(f"{exc} ({hint})") from None
        return str(path)

    @model_validator(mode="after")
    def _one_way(self) -> Tls:
        if self.insecure and self.ca_file:
            raise ValueError(
                "ca_file and insecure: true contradict each other: keep ca_file to verify "
                "the service against that CA, or insecure: true to skip verification"
            )
        return self


class Target(_Model):
    url: str = Field(
        "embedded",
        description="webhook URL, or embedded (the reference target); no path: the profile's",
    )
    api: API = Field(
        "webhook",
        description="profile: webhook (the guide), kubernaut (current gateway), kubernaut-legacy",
    )
    health_url: str | None = Field(
        None,
        description="health endpoint; null: kubernaut <host>:8081/readyz, else <origin>/health",
    )
    actions_url: str | None = Field(
        None, description="action history read by A4 (verify: history) and integrity; null: none"
    )
    metrics_url: str | None = Field(
        None,
        description="/metrics scraped in tests; null: kubernaut <host>:9090/metrics, else <origin>",
    )
    # a Prometheus server that scrapes the service: its query_range API is read after each
    # test instead of scraping metrics_url; the selector narrows it to the service's series
    prometheus_url: str | None = Field(
        None,
        description="a Prometheus server to query after each test instead of scraping metrics_url",
    )
    prometheus_selector: str = Field(
        "", description='label matchers narrowing prometheus_url to the service, e.g. job="gateway"'
    )
    metrics_interval_s: Annotated[float, Field(ge=0.5, le=300)] = Field(
        2.0, description="seconds between /metrics scrapes"
    )
    # longest wait for the history to show every accepted alert (integrity)
    integrity_wait_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0, description="longest wait for the history to show every accepted alert, s"
    )
    auth_token_env: str | None = Field(
        None, description="env var holding the bearer token (its value is never written)"
    )
    timeout_s: PositiveFloat = Field(30.0, description="timeout of one request to the service, s")
    tls: Tls = Field(Tls(), description="how HTTPS to the service is verified")
    # none: control-plane calls ignore HTTP(S)_PROXY like the engine; env: honour it
    proxy: Literal["none", "env"] = Field(
        "none", description="none: ignore HTTP(S)_PROXY (like the load engine); env: honour it"
    )
    embedded: EmbeddedTarget = Field(
        EmbeddedTarget(), description="knobs of the embedded reference target"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v, allow_embedded=True)  # type: ignore[return-value]

    @field_validator("health_url", "actions_url", "metrics_url", "prometheus_url")
    @classmethod
    def _aux_url(cls, v: str | None) -> str | None:
        return _check_http_url(v)

    @field_validator("prometheus_selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        v = v.strip().removeprefix("{").removesuffix("}").strip()
        if v and "=" not in v:
            raise ValueError(f'must be label matchers like job="gateway", got {v!r}')
        return v

    @model_validator(mode="after")
    def _profile_defaults(self) -> Target:
        # A URL without a path means the profile's webhook path (the user names the host).
        if not self.is_embedded and urlsplit(self.url).path in ("", "/"):
            self.url = self.url.rstrip("/") + API_PATHS[self.api]
        # The embedded target speaks the profile the answers are read with.
        fill = {
            key: value
            for key, value in (("api", self.api), ("auth_token_env", self.auth_token_env))
            if getattr(self.embedded, key) is None and value is not None
        }
        if fill:
            self.embedded = self.embedded.model_copy(update=fill)
        return self

    @property
    def is_embedded(self) -> bool:
        return self.url == "embedded"


#: Label every workload kubetest creates carries, with the run token as its value:
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

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("tcp://", "tls://", "inproc://")):
            raise ValueError(f"must be a Dask scheduler address like tcp://host:8786, got {v!r}")
        return v


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


class Environment(_Model):
    llm_url: str | None = Field(
        None, description="the LLM endpoint the service uses (Ollama or OpenAI-compatible)"
    )
    llm_model: str | None = Field(None, description="model name the LLM must serve")
    redis_url: str | None = Field(
        None, description="redis://host:port/db the service uses (no password here)"
    )
    redis_password_env: str | None = Field(
        "REDIS_PASSWORD", description="env var holding the Redis password"
    )
    postgres_dsn_env: str | None = Field(None, description="env var holding the PostgreSQL DSN")
    # a kubeconfig file, or "embedded": the embedded kubernaut target's own cluster
    kubeconfig: str | None = Field(
        None, description="kubeconfig of the cluster the service remediates, or embedded"
    )

    @field_validator("llm_url")
    @classmethod
    def _llm(cls, v: str | None) -> str | None:
        return _check_http_url(v)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"must be a redis://host:port/db URL, got {v!r}")
        if parts.password:
            # params are copied into outputs/: a password here would land there
            raise ValueError(
                "must not hold a password: put it in the env var named by redis_password_env"
            )
        return v


ALERT_TYPES = ("high_memory", "high_cpu", "pod_crash", "disk_full", "network_latency", "random")


class A1ResponseTime(_Model):
    rate_per_min: PositiveFloat = Field(60.0, description="open-loop load, alerts/min")
    duration_min: PositiveFloat = Field(10.0, description="length of the load, min")
    types: list[Literal[ALERT_TYPES]] = Field(
        ["high_memory", "high_cpu", "pod_crash"], description="alert types sent in turn"
    )  # type: ignore[valid-type]

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one alert type")
        return v


class A2Concurrent(_Model):
    concurrency: PositiveInt = Field(100, description="requests kept in flight (closed loop)")
    duration_min: PositiveFloat = Field(5.0, description="length of the load, min")


class A3Availability(_Model):
    """``probe``: the endpoint BR-PA-001 is judged on. ``webhook`` POSTs a probe alert
    (available means "accepts alerts": a health URL can stay green while Redis, the LLM or
    the Kubernetes API behind the webhook is down); ``health`` GETs the health URL. The
    other is probed too, as a second series. ``probe_timeout_s``: a probe not answered
    within it is down (default: the interval for health, ``slo.p95_s`` for the webhook,
    which answers only after doing work). ``background_rate_per_min``: an open-loop load
    of that many alerts/min runs while probing (availability under load)."""

    duration_min: PositiveFloat = Field(30.0, description="probing window, min")
    probe_interval_s: PositiveFloat = Field(1.0, description="seconds between probes")
    target: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.999, description="availability BR-PA-001 asks (0..1)"
    )
    probe: Literal["webhook", "health"] = Field(
        "webhook", description="endpoint judged: webhook (a probe alert) or health"
    )
    probe_timeout_s: PositiveFloat | None = Field(
        None, description="a probe unanswered this long is down, s; null: see A3"
    )
    background_rate_per_min: PositiveFloat | None = Field(
        None, description="open-loop load during the window, alerts/min; null: none"
    )


class A4Actions(_Model):
    actions: Literal["all", "guide", "kubernaut"] | list[str] = Field(
        "all", description="all, guide (25), kubernaut (27), or a list of action names"
    )
    verify: Literal["history", "kubernetes", "none"] = Field(
        "history",
        description="how execution is verified: action history, Kubernetes (RR Completed), or none",
    )
    allow_destructive: bool = Field(
        False, description="send destructive actions (drain, cordon, restart, …) to a real service"
    )
    namespaces: list[str] = Field(
        ["test-workloads"], description="allow-list of namespaces destructive actions may target"
    )
    min_actions: PositiveInt = Field(
        25, description="distinct actions BR-PA-011 needs; below 25 the verdict says it was lowered"
    )
    # None: 60 s for the history; remediation.timeout_min for verify: kubernetes
    verify_timeout_s: PositiveFloat | None = Field(
        None,
        description="longest wait to verify, s; null: 60 (history) or remediation.timeout_min",
    )


class B1Capacity(_Model):
    phases: list[tuple[PositiveFloat, PositiveFloat]] = Field(
        [
            (500, 5),
            (1000, 5),
            (2000, 5),
            (5000, 3),
            (10000, 2),
        ],
        description="[alerts/min, minutes] steps of the rate sweep",
    )
    recovery_s: Annotated[float, Field(ge=0)] = Field(30.0, description="pause between phases, s")
    stop_below_success: Fraction = Field(
        0.5, description="end the sweep below this success rate (0..1)"
    )
    refine: bool = Field(
        True,
        description="bisect the rate between the last sustainable phase and the first that was not",
    )


class B2Concurrency(_Model):
    levels: list[PositiveInt] = Field(
        [50, 100, 200, 500, 1000, 2000], description="in-flight levels, in order"
    )
    duration_s: PositiveFloat = Field(60.0, description="length of each level, s")
    recovery_s: Annotated[float, Field(ge=0)] = Field(30.0, description="pause between levels, s")
    stop_below_success: Fraction = Field(
        0.75, description="end the sweep below this success rate (0..1)"
    )


SUITE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ExternalSuite(_Model):
    """One of the service's own suites (the guide's Step 1a), run as a command.

    ``command``: a string runs under ``/bin/sh -c`` (as typed in a terminal); a list runs
    without a shell. ``cwd`` is relative to the params file. Results are read from
    ``go test -json`` on stdout or from JUnit XML (``junit_path``, relative to ``cwd``, or
    stdout). ``requirements`` maps a regular expression, searched in each test's
    ``package.TestName`` (or ``classname.name``), to the BR id that test evidences.
    """

    name: Annotated[str, Field(pattern=SUITE_NAME)] = Field(
        description="suite name (letters, digits, . _ -): its SUITE:<name> row and log files"
    )
    command: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)] = (
        Field(description="a string (run by /bin/sh -c) or a list (no shell)")
    )
    cwd: str | None = Field(
        None, description="working folder, relative to the params file; null: its folder"
    )
    timeout_s: PositiveFloat = Field(
        900.0, description="the whole process group is stopped after this, s"
    )
    format: Literal["auto", "go-json", "junit"] = Field(
        "auto", description="result format: auto, go-json (go test -json) or junit"
    )
    junit_path: str | None = Field(
        None, description="JUnit XML file, relative to cwd; null: read stdout"
    )
    env: dict[str, str] = Field(
        {}, description="non-secret extra environment (secrets: export them instead)"
    )
    requirements: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        {}, description="regular expression on package.TestName → the BR id it evidences"
    )

    @field_validator("requirements")
    @classmethod
    def _patterns(cls, v: dict[str, str]) -> dict[str, str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return v

    @field_validator("env")
    @classmethod
    def _no_secrets(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if secret_named(name):
                # params are copied into outputs/: a secret here would land there
                raise ValueError(
                    f"{name} looks like a secret: export it before the run instead "
                    "(the suite inherits your environment)"
                )
        return v


class Params(_Model):
    """A whole params file. Absent test sections are ``None``: that test is NOT_RUN."""

    target: Target = Field(Target(), description="the service under test")
    alerts: Alerts = Field(Alerts(), description="what the alerts name")
    generator: Generator = Field(Generator(), description="the load generator")
    slo: Slo = Field(Slo(), description="service-level objectives the verdicts use")
    remediation: Remediation = Field(
        Remediation(), description="following RemediationRequests (kubernaut with a kubeconfig)"
    )
    environment: Environment | None = Field(
        None, description="test ENV: readiness of what the service depends on; null: not run"
    )
    external_suites: list[ExternalSuite] | None = Field(
        None, description="test EXT: the service's own suites; null: not run"
    )
    a1_response_time: A1ResponseTime | None = Field(
        None, description="test A1: response time under load (BR-PA-003); null: not run"
    )
    a2_concurrent: A2Concurrent | None = Field(
        None, description="test A2: concurrent requests (BR-PA-004); null: not run"
    )
    a3_availability: A3Availability | None = Field(
        None, description="test A3: availability (BR-PA-001); null: not run"
    )
    a4_actions: A4Actions | None = Field(
        None, description="test A4: Kubernetes actions (BR-PA-011); null: not run"
    )
    b1_capacity: B1Capacity | None = Field(
        None, description="test B1: capacity, an open-loop rate sweep; null: not run"
    )
    b2_concurrency: B2Concurrency | None = Field(
        None, description="test B2: a concurrency sweep; null: not run"
    )
    continue_on_phase_a_failure: bool = Field(
        True, description="run Phase B even when a Phase A test failed"
    )

    @field_validator("external_suites")
    @classmethod
    def _suite_names(cls, v: list[ExternalSuite] | None) -> list[ExternalSuite] | None:
        if v is not None and not v:
            raise ValueError("needs at least one suite, or leave the key out")
        names = [s.name for s in v or []]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"suite name {twice[0]!r} is used twice: names must be unique")
        return v

    @model_validator(mode="after")
    def _workloads(self) -> Params:
        if self.alerts.workloads is None:
            return self
        kubeconfig = self.environment.kubeconfig if self.environment else None
        if not kubeconfig:
            raise ValueError(
                "alerts.workloads needs environment.kubeconfig: the cluster the workloads "
                "live in ('embedded' for the embedded target's own)"
            )
        if self.generator.workers > 1 or self.generator.scheduler:
            raise ValueError(
                "alerts.workloads needs generator.workers: 1 and no scheduler: the pool's "
                "free/busy state is kept in one process"
            )
        return self

    @model_validator(mode="after")
    def _embedded_cluster(self) -> Params:
        kubeconfig = self.environment.kubeconfig if self.environment else None
        if kubeconfig == "embedded" and not (
            self.target.is_embedded and self.target.api == "kubernaut"
        ):
            raise ValueError(
                "environment.kubeconfig: 'embedded' needs target.url: embedded with "
                "target.api: kubernaut (only that target holds a cluster)"
            )
        return self

    @model_validator(mode="after")
    def _secrets_present(self) -> Params:
        env = self.target.auth_token_env
        if env and env not in os.environ:
            raise ValueError(
                f"target.auth_token_env names ${env}, which is not set: export it before the run"
            )
        return self

    def selected_tests(self) -> list[str]:
        """Test keys (``A1``...) whose section is present, in run order."""
        return [key for key, section in TESTS.items() if getattr(self, section) is not None]


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        return (f"{loc}: unknown key; remove it or check its spelling (every key: "
                "docs/params.md)")  # fmt: skip
    # Our own validators (value_error) word their message, and never echo a secret back.
    if "input" in err and kind not in ("missing", "value_error"):
        return f"{loc}: {msg} (got {err['input']!r})"
    return f"{loc}: {msg}" if loc else msg


def parse_params(data: Any, source: str = "params", base_dir: Path | None = None) -> Params:
    """Validate already-parsed YAML; raise ``ParamsError`` with one line on the first error.

    Relative paths in it (``target.tls.ca_file``) start at ``base_dir``, the params
    file's folder (default: the current one)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"{source}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    try:
        return Params.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise ParamsError(f"{source}: {_format_error(first)}{suffix}") from None


def load_params(path: str | Path) -> Params:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"params file {str(path)!r} not found: pass an existing YAML file "
            "(e.g. params/local.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_params(data, source=str(path), base_dir=path.resolve().parent)
