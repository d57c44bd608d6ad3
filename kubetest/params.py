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

    workers: PositiveInt = 8
    service_ms: PositiveFloat = 150.0
    service_dist: Literal["exp", "const", "lognormal"] = "lognormal"
    error_rate: Fraction = 0.0
    outages: list[tuple[Annotated[float, Field(ge=0)], PositiveFloat]] = []
    api: API | None = None
    auth_token_env: str | None = None
    max_concurrent_requests: PositiveInt | None = None  # kubernaut default: 100
    managed_namespaces: list[str] | None = None  # kubernaut default: none
    future_tolerance_s: NonNegative | None = None  # kubernaut default: 120
    rate_limit_per_s: PositiveFloat | None = None  # default: no limit
    cooldown_s: NonNegative | None = None  # kubernaut-legacy default: 60
    # integrity faults: shares of accepted alerts lost from / duplicated in the history
    lose_rate: Fraction = 0.0
    duplicate_rate: Fraction = 0.0
    seed: int | None = None  # service times, errors and faults drawn reproducibly
    # kubernaut: the target's cluster (defaults: TargetConfig's)
    controller_namespace: str | None = None  # kubernaut-system
    kube_namespaces: list[str] | None = None  # [default, test-workloads]
    remediation_phase_s: tuple[NonNegative, NonNegative, NonNegative, NonNegative] | None = None
    remediation_fail_rate: Fraction | None = None  # 0
    blocked_rate: Fraction | None = None  # 0
    blocked_s: NonNegative | None = None  # 1
    kube_denied: list[str] | None = None  # e.g. [delete:deployments]

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

    ca_file: str | None = None
    insecure: bool = False

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
    url: str = "embedded"
    api: API = "webhook"
    health_url: str | None = None
    actions_url: str | None = None
    metrics_url: str | None = None
    # a Prometheus server that scrapes the service: its query_range API is read after each
    # test instead of scraping metrics_url; the selector narrows it to the service's series
    prometheus_url: str | None = None
    prometheus_selector: str = ""
    metrics_interval_s: Annotated[float, Field(ge=0.5, le=300)] = 2.0
    # longest wait for the history to show every accepted alert (integrity)
    integrity_wait_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    auth_token_env: str | None = None
    timeout_s: PositiveFloat = 30.0
    tls: Tls = Tls()
    # none: control-plane calls ignore HTTP(S)_PROXY like the engine; env: honour it
    proxy: Literal["none", "env"] = "none"
    embedded: EmbeddedTarget = EmbeddedTarget()

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
            raise ValueError(f"must be label matchers like job=\"gateway\", got {v!r}")
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

    create: PositiveInt | None = None
    selector: str | None = None
    image: str = "registry.k8s.io/pause:3.10"
    ready_timeout_s: PositiveFloat = 60.0

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

    unique: bool = True
    namespace: str = "test-workloads"
    workloads: Workloads | None = None


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

    follow: bool = True
    namespace: str | None = None
    timeout_min: PositiveFloat = 10.0
    mode: Literal["watch", "poll"] = "watch"
    poll_interval_s: PositiveFloat = 2.0
    max_requests_per_s: PositiveFloat = 5.0
    group: str = "kubernaut.ai"  # earlier releases: remediation.kubernaut.ai
    version: str = "v1alpha1"
    plural: str = "remediationrequests"
    terminal_phases: list[str] = TERMINAL_PHASES
    waiting_phases: list[str] = WAITING_PHASES

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
    workers: PositiveInt = 1
    scheduler: str | None = None
    # where remote Dask workers write records (fsspec URL); None: shipped back to the client
    records_url: str | None = None
    max_in_flight: PositiveInt = 10_000
    # bytes of each answer the engine reads; a longer body is the error class ``oversized``
    max_body_bytes: PositiveInt = 64 << 10
    arrivals: Literal["constant", "poisson"] = "constant"

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

    window_s: PositiveFloat = 10.0
    consecutive: PositiveInt = 3
    p95_s: PositiveFloat | None = None
    success_below: Fraction = 0.5


class Slo(_Model):
    p95_s: PositiveFloat = 5.0
    success_rate: Fraction = 0.95
    abort: SloAbort | None = SloAbort()  # null: every load test runs its full length

    @model_validator(mode="after")
    def _abort_p95(self) -> Slo:
        if self.abort is not None and self.abort.p95_s is None:
            self.abort = self.abort.model_copy(update={"p95_s": 2 * self.p95_s})
        return self


class Environment(_Model):
    llm_url: str | None = None
    llm_model: str | None = None
    redis_url: str | None = None
    redis_password_env: str | None = "REDIS_PASSWORD"
    postgres_dsn_env: str | None = None
    # a kubeconfig file, or "embedded": the embedded kubernaut target's own cluster
    kubeconfig: str | None = None

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
    rate_per_min: PositiveFloat = 60.0
    duration_min: PositiveFloat = 10.0
    types: list[Literal[ALERT_TYPES]] = ["high_memory", "high_cpu", "pod_crash"]  # type: ignore[valid-type]

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one alert type")
        return v


class A2Concurrent(_Model):
    concurrency: PositiveInt = 100
    duration_min: PositiveFloat = 5.0


class A3Availability(_Model):
    """``probe``: the endpoint BR-PA-001 is judged on. ``webhook`` POSTs a probe alert
    (available means "accepts alerts": a health URL can stay green while Redis, the LLM or
    the Kubernetes API behind the webhook is down); ``health`` GETs the health URL. The
    other is probed too, as a second series. ``probe_timeout_s``: a probe not answered
    within it is down (default: the interval for health, ``slo.p95_s`` for the webhook,
    which answers only after doing work). ``background_rate_per_min``: an open-loop load
    of that many alerts/min runs while probing (availability under load)."""

    duration_min: PositiveFloat = 30.0
    probe_interval_s: PositiveFloat = 1.0
    target: Annotated[float, Field(gt=0, lt=1)] = 0.999
    probe: Literal["webhook", "health"] = "webhook"
    probe_timeout_s: PositiveFloat | None = None
    background_rate_per_min: PositiveFloat | None = None


class A4Actions(_Model):
    actions: Literal["all", "guide", "kubernaut"] | list[str] = "all"
    verify: Literal["history", "kubernetes", "none"] = "history"
    allow_destructive: bool = False
    namespaces: list[str] = ["test-workloads"]
    min_actions: PositiveInt = 25
    # None: 60 s for the history; remediation.timeout_min for verify: kubernetes
    verify_timeout_s: PositiveFloat | None = None


class B1Capacity(_Model):
    phases: list[tuple[PositiveFloat, PositiveFloat]] = [
        (500, 5),
        (1000, 5),
        (2000, 5),
        (5000, 3),
        (10000, 2),
    ]
    recovery_s: Annotated[float, Field(ge=0)] = 30.0
    stop_below_success: Fraction = 0.5
    refine: bool = True


class B2Concurrency(_Model):
    levels: list[PositiveInt] = [50, 100, 200, 500, 1000, 2000]
    duration_s: PositiveFloat = 60.0
    recovery_s: Annotated[float, Field(ge=0)] = 30.0
    stop_below_success: Fraction = 0.75


SUITE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ExternalSuite(_Model):
    """One of the service's own suites (the guide's Step 1a), run as a command.

    ``command``: a string runs under ``/bin/sh -c`` (as typed in a terminal); a list runs
    without a shell. ``cwd`` is relative to the params file. Results are read from
    ``go test -json`` on stdout or from JUnit XML (``junit_path``, relative to ``cwd``, or
    stdout). ``requirements`` maps a regular expression, searched in each test's
    ``package.TestName`` (or ``classname.name``), to the BR id that test evidences.
    """

    name: Annotated[str, Field(pattern=SUITE_NAME)]
    command: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)]
    cwd: str | None = None
    timeout_s: PositiveFloat = 900.0
    format: Literal["auto", "go-json", "junit"] = "auto"
    junit_path: str | None = None
    env: dict[str, str] = {}
    requirements: dict[str, Annotated[str, Field(min_length=1)]] = {}

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

    target: Target = Target()
    alerts: Alerts = Alerts()
    generator: Generator = Generator()
    slo: Slo = Slo()
    remediation: Remediation = Remediation()
    environment: Environment | None = None
    external_suites: list[ExternalSuite] | None = None
    a1_response_time: A1ResponseTime | None = None
    a2_concurrent: A2Concurrent | None = None
    a3_availability: A3Availability | None = None
    a4_actions: A4Actions | None = None
    b1_capacity: B1Capacity | None = None
    b2_concurrency: B2Concurrency | None = None
    continue_on_phase_a_failure: bool = True

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
        return (f"{loc}: unknown key; remove it or check its spelling (commented examples: "
                "params/*.yaml)")  # fmt: skip
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
