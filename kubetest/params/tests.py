"""One section per test, in run order (``TESTS``): ``environment`` (ENV),
``external_suites`` (EXT), ``a1_response_time`` … ``a4_actions`` (Phase A) and
``b1_capacity``, ``b2_concurrency`` (Phase B). A section left out is a test not run."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from kubetest.params.fields import Fraction, PositiveFloat, PositiveInt, _check_http_url, _Model
from kubetest.secrets import secret_named

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
    of that many alerts/min runs while probing (availability under load). ``during_load``:
    ``kubetest run`` starts A3 beside the rest of Phase A, whose load A3 is then under; the
    background load only tops the window up when that load ends first."""

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
    during_load: bool = Field(
        False, description="kubetest run: probe while A1, A2, A4 run (their load, topped up)"
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
        None, description="longest wait to verify, s; null: 60 (history) or remediation.timeout_min"
    )


Search = Literal["grid", "auto"]
Precision = Annotated[float, Field(gt=0, lt=1)]


class _AutoSearch(_Model):
    """What B1's rate search and B2's concurrency search share: grid or auto, and how an
    auto search decides (``kubetest.analysis.search``)."""

    search: Search = Field(
        "grid", description="grid (the listed steps) or auto (grow, then bisect)"
    )
    precision: Precision = Field(
        0.05, description="auto: bisect until the bracket is this narrow (relative; B2: ≥ 1)"
    )
    min_phase_s: PositiveFloat = Field(
        5.0, description="auto: no sustainable verdict before this, s (unsustainable: half)"
    )
    margin: Precision = Field(
        0.2, description="auto: stop early as sustainable when p95's bound < (1 - margin) × SLO"
    )


class B1Capacity(_AutoSearch):
    """``search: grid`` runs ``phases`` in order (then bisects with ``refine``); ``search:
    auto`` grows geometrically from ``start_per_min`` until a phase is unsustainable, then
    bisects to ``precision``, each phase stopping as soon as its verdict is clear
    (``kubetest.analysis.search``), between ``min_phase_s`` and ``max_phase_s``.
    ``confirm_s``: a soak at the rate found; when it fails the result moves down a step."""

    start_per_min: PositiveFloat = Field(500.0, description="auto: first rate, alerts/min")
    max_per_min: PositiveFloat | None = Field(
        None, description="auto: highest rate tried (sustained: at least); null: no cap"
    )
    max_phase_s: PositiveFloat = Field(
        30.0, description="auto: a phase not decided by then is judged on what it measured, s"
    )
    confirm_s: Annotated[float, Field(ge=0)] = Field(
        0.0, description="soak at the rate found, s (0: none); a failed soak moves it down"
    )
    phases: list[tuple[PositiveFloat, PositiveFloat]] = Field(
        [(500, 5), (1000, 5), (2000, 5), (5000, 3), (10000, 2)],
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


class B2Concurrency(_AutoSearch):
    """``search: auto``: N doubles from ``start_concurrency`` until a level is
    unsustainable, then is bisected to ``precision`` (at least 1), each level stopping as
    soon as its verdict is clear, between ``min_phase_s`` and ``duration_s``."""

    start_concurrency: PositiveInt = Field(8, description="auto: first in-flight level")
    max_concurrency: PositiveInt | None = Field(
        None, description="auto: highest level tried (sustained: at least); null: no cap"
    )
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
