"""The ``target`` section: the service under test (URL, API profile, token, TLS, proxy)
or the embedded reference target and its knobs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kubetest.params.fields import (
    Fraction,
    NonNegative,
    PositiveFloat,
    PositiveInt,
    _check_http_url,
    _Model,
)
from kubetest.tls import check_ca_file

API = Literal["webhook", "kubernaut", "kubernaut-legacy"]

#: The webhook path each profile posts to when ``target.url`` gives none.
API_PATHS: dict[str, str] = {
    "webhook": "/webhook/prometheus",
    "kubernaut": "/api/v1/signals/prometheus",
    "kubernaut-legacy": "/alerts",
}


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
        verbs = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
        for item in v or []:
            verb, sep, resource = item.partition(":")
            if not sep or verb not in verbs or not resource:
                raise ValueError(
                    f"{item!r} must be VERB:RESOURCE (e.g. delete:deployments), "
                    f"VERB one of {', '.join(verbs)}"
                )
        return v

    @field_validator("controller_namespace", "kube_namespaces", "managed_namespaces")
    @classmethod
    def _namespaces(cls, v: str | list[str] | None) -> str | list[str] | None:
        for ns in [v] if isinstance(v, str) else v or []:
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
                raise ValueError(
                    f"{ns!r} is not a namespace name (lowercase letters, digits "
                    "and '-', at most 63)"
                )
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
