"""The reference target's model: its knobs, its service-time law and what it accepts.

Kept free of any web framework so the queueing truth (mean service time, workers, outage
windows) can be checked, and reused by the analysis, without starting a server.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetest.alerts import ACTIONS, WEBHOOK_VERSION, fingerprint
from kubetest.errors import PayloadError, TargetConfigError

SERVICE_DISTS: tuple[str, ...] = ("exp", "const", "lognormal")
_ACTIONS = frozenset(ACTIONS)

#: API profiles the target speaks.
TARGET_APIS: tuple[str, ...] = ("webhook", "kubernaut", "kubernaut-legacy")

#: The webhook path of each profile.
WEBHOOK_PATHS: dict[str, str] = {
    "webhook": "/webhook/prometheus",
    "kubernaut": "/api/v1/signals/prometheus",
    "kubernaut-legacy": "/alerts",
}

#: The real gateway's defaults: 256 KB bodies, 100 requests in flight.
KUBERNAUT_MAX_BODY = 262_144
KUBERNAUT_MAX_CONCURRENT = 100
DEFAULT_MAX_BODY = 1_048_576


@dataclass(frozen=True)
class TargetConfig:
    """Everything that decides how the reference target behaves.

    ``outages`` are ``(start_s, duration_s)`` windows measured from app start, during
    which the webhook and the health check answer 503.

    ``api`` picks the profile. ``kubernaut``: the current gateway (``profiles``) backed by
    the target's own cluster (``cluster``), served as a Kubernetes API (``kube_api``):
    alerts must name a Deployment that exists there; one RemediationRequest per owner
    while it is not terminal (202 for repeats); ``managed_namespaces`` exist labelled
    ``kubernaut.ai/managed=true`` beside ``kube_namespaces``; RemediationRequests live in
    ``controller_namespace`` and walk their phases in ``remediation_phase_s`` (processing,
    analyzing, executing, verifying: mean seconds), a ``remediation_fail_rate`` of them
    failing at Executing and a ``blocked_rate`` staying Blocked for ``blocked_s``;
    ``kube_denied`` (``"verb:resource"``) takes grants away from kubetest's kube token;
    ``max_concurrent_requests`` in flight (default 100) then 429; ``startsAt`` beyond
    ``future_tolerance_s`` refused. ``kubernaut-legacy``: 200 ``{"status":"success"}``,
    500 while an alertname/namespace pair is within ``cooldown_s`` of its last alert, 429
    above ``rate_limit_per_s``. With ``auth_token_env`` (the *name* of an env var; the
    value is read when the app starts) every webhook needs ``Authorization: Bearer
    <value>`` (kubernaut: that token is the one granted signal source; kubetest's kube
    token gets 403, any other 401).
    """

    workers: int = 8
    service_ms: float = 150.0
    service_dist: str = "lognormal"
    error_rate: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()
    lognormal_sigma: float = 0.5
    seed: int | None = None
    max_body_bytes: int | None = None  # None: the profile's (1 MiB; kubernaut 256 KiB)
    max_alerts: int = 1000
    api: str = "webhook"
    auth_token_env: str | None = None
    max_concurrent_requests: int | None = None  # None: kubernaut 100, others unlimited
    managed_namespaces: tuple[str, ...] = ()  # kubernaut: labelled kubernaut.ai/managed=true
    future_tolerance_s: float = 120.0
    rate_limit_per_s: float | None = None
    cooldown_s: float = 60.0
    #: Integrity faults: fractions of accepted alerts silently left out of, or recorded
    #: twice in, the action history (and the kubernaut profile's RemediationRequests).
    lose_rate: float = 0.0
    duplicate_rate: float = 0.0
    # kubernaut: the target's own cluster and its stand-in orchestrator
    controller_namespace: str = "kubernaut-system"
    kube_namespaces: tuple[str, ...] = ("default", "test-workloads")
    remediation_phase_s: tuple[float, float, float, float] = (0.2, 0.5, 0.3, 0.5)
    remediation_fail_rate: float = 0.0
    blocked_rate: float = 0.0
    blocked_s: float = 1.0
    kube_denied: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise lists (from YAML/argparse) to tuples so the config stays hashable.
        outages = tuple((float(s), float(d)) for s, d in self.outages)
        object.__setattr__(self, "outages", outages)
        for name in ("managed_namespaces", "kube_namespaces", "kube_denied"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        phases = tuple(float(x) for x in self.remediation_phase_s)
        object.__setattr__(self, "remediation_phase_s", phases)
        if self.api not in TARGET_APIS:
            raise TargetConfigError(
                f"api must be one of {', '.join(TARGET_APIS)}, got {self.api!r}"
            )
        if not isinstance(self.workers, int) or self.workers < 1:
            raise TargetConfigError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not self.service_ms > 0 or math.isinf(self.service_ms):
            raise TargetConfigError(
                f"service_ms must be a finite number > 0, got {self.service_ms!r}"
            )
        if self.service_dist not in SERVICE_DISTS:
            raise TargetConfigError(
                f"service_dist must be one of {', '.join(SERVICE_DISTS)}, got {self.service_dist!r}"
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise TargetConfigError(f"error_rate must be within [0, 1], got {self.error_rate!r}")
        if not self.lognormal_sigma > 0 or math.isinf(self.lognormal_sigma):
            raise TargetConfigError(f"lognormal_sigma must be > 0, got {self.lognormal_sigma!r}")
        for start, duration in outages:
            if not (start >= 0 and duration > 0) or math.isinf(start + duration):
                raise TargetConfigError(
                    f"outages: ({start}, {duration}) needs start_s >= 0 and duration_s > 0"
                )
        if (self.max_body_bytes is not None and self.max_body_bytes < 1) or self.max_alerts < 1:
            raise TargetConfigError("max_body_bytes and max_alerts must be >= 1")
        if self.max_concurrent_requests is not None and self.max_concurrent_requests < 1:
            raise TargetConfigError(
                f"max_concurrent_requests must be >= 1, got {self.max_concurrent_requests!r}"
            )
        for name in ("future_tolerance_s", "cooldown_s", "blocked_s"):
            value = getattr(self, name)
            if not value >= 0 or math.isinf(value):
                raise TargetConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.rate_limit_per_s is not None and not 0 < self.rate_limit_per_s < math.inf:
            raise TargetConfigError(f"rate_limit_per_s must be > 0, got {self.rate_limit_per_s!r}")
        for name in ("lose_rate", "duplicate_rate", "remediation_fail_rate", "blocked_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TargetConfigError(
                    f"{name} must be within [0, 1], got {getattr(self, name)!r}"
                )
        if self.lose_rate + self.duplicate_rate > 1.0:
            raise TargetConfigError("lose_rate + duplicate_rate must be <= 1")
        self._check_cluster(phases)

    def _check_cluster(self, phases: tuple[float, ...]) -> None:
        from kubetest.target.kube_rules import VERBS, is_dns_label

        if len(phases) != 4 or not all(0 <= p < math.inf for p in phases):
            raise TargetConfigError(
                "remediation_phase_s must be 4 finite numbers >= 0 (processing, analyzing, "
                f"executing, verifying seconds), got {self.remediation_phase_s!r}"
            )
        for ns in (self.controller_namespace, *self.kube_namespaces, *self.managed_namespaces):
            if not is_dns_label(ns):
                raise TargetConfigError(
                    f"namespace {ns!r} is not a valid namespace name (RFC 1123 "
                    "label: lowercase letters, digits, '-')"
                )
        for item in self.kube_denied:
            verb, sep, resource = item.partition(":")
            if not sep or verb not in VERBS or not resource:
                raise TargetConfigError(
                    f"kube_denied: {item!r} must be VERB:RESOURCE (e.g. delete:deployments) "
                    f"with VERB one of {', '.join(sorted(VERBS))}"
                )

    @classmethod
    def from_params(cls, embedded: Any) -> TargetConfig:
        """Build from ``kubetest.params.EmbeddedTarget`` (the ``target.embedded`` section).

        Its ``api`` and ``auth_token_env`` follow ``target.api`` / ``target.auth_token_env``
        unless set (``kubetest.params`` fills them in), so the embedded target speaks the
        profile the load is read with.
        """
        optional = {
            key: getattr(embedded, key)
            for key in ("max_concurrent_requests", "future_tolerance_s", "rate_limit_per_s",
                        "cooldown_s", "seed", "controller_namespace", "remediation_fail_rate",
                        "blocked_rate", "blocked_s")
            if getattr(embedded, key, None) is not None
        }  # fmt: skip
        return cls(
            workers=embedded.workers,
            service_ms=float(embedded.service_ms),
            service_dist=embedded.service_dist,
            error_rate=float(embedded.error_rate),
            outages=tuple((float(s), float(d)) for s, d in embedded.outages),
            api=getattr(embedded, "api", None) or "webhook",
            auth_token_env=getattr(embedded, "auth_token_env", None),
            managed_namespaces=tuple(getattr(embedded, "managed_namespaces", None) or ()),
            kube_denied=tuple(getattr(embedded, "kube_denied", None) or ()),
            lose_rate=float(getattr(embedded, "lose_rate", 0.0) or 0.0),
            duplicate_rate=float(getattr(embedded, "duplicate_rate", 0.0) or 0.0),
            **optional,
            **_sequences(embedded),
        )

    @property
    def webhook_path(self) -> str:
        return WEBHOOK_PATHS[self.api]

    @property
    def body_limit(self) -> int:
        """Largest webhook body accepted (413 above)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return KUBERNAUT_MAX_BODY if self.api == "kubernaut" else DEFAULT_MAX_BODY

    @property
    def concurrency_limit(self) -> int | None:
        """Webhook requests in flight before 429 (``None``: no limit)."""
        if self.max_concurrent_requests is not None:
            return self.max_concurrent_requests
        return KUBERNAUT_MAX_CONCURRENT if self.api == "kubernaut" else None

    @property
    def service_s(self) -> float:
        """Mean service time per alert, in seconds."""
        return self.service_ms / 1000.0

    @property
    def capacity_per_s(self) -> float:
        """Saturation throughput in alerts/s: ``workers / mean service time``."""
        return self.workers / self.service_s

    def outage_remaining(self, elapsed_s: float) -> float:
        """Seconds left in the outage window covering ``elapsed_s`` (0.0 when none does)."""
        for start, duration in self.outages:
            if start <= elapsed_s < start + duration:
                return start + duration - elapsed_s
        return 0.0


def _sequences(embedded: Any) -> dict[str, Any]:
    """``kube_namespaces`` and ``remediation_phase_s`` from params when given there."""
    out: dict[str, Any] = {}
    namespaces = getattr(embedded, "kube_namespaces", None)
    if namespaces is not None:
        out["kube_namespaces"] = tuple(namespaces)
    phases = getattr(embedded, "remediation_phase_s", None)
    if phases is not None:
        out["remediation_phase_s"] = tuple(float(x) for x in phases)
    return out


def lognormal_mu(mean: float, sigma: float) -> float:
    """The ``mu`` that gives a lognormal of shape ``sigma`` the wanted mean.

    E[X] = exp(mu + sigma²/2), so mu = ln(mean) - sigma²/2 (not ln(mean): that is the median).
    """
    return math.log(mean) - sigma * sigma / 2.0


def make_sampler(config: TargetConfig, rng: random.Random | None = None) -> Callable[[], float]:
    """A function drawing one service time in *seconds* with mean ``config.service_ms``."""
    rng = rng or random.Random(config.seed)
    mean = config.service_s
    if config.service_dist == "const":
        return lambda: mean
    if config.service_dist == "exp":
        rate = 1.0 / mean
        expovariate = rng.expovariate
        return lambda: expovariate(rate)
    sigma = config.lognormal_sigma
    mu = lognormal_mu(mean, sigma)
    lognormvariate = rng.lognormvariate
    return lambda: lognormvariate(mu, sigma)


@dataclass(frozen=True, slots=True)
class AlertIn:
    """What processing needs from one alert of a webhook."""

    alertname: str
    action: str
    namespace: str
    fingerprint: str
    seq: int | None
    labels: dict[str, str]
    starts_at: str | None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _check_str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: must be an object of strings, got {_type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{where}.{key}: must be a string, got {_type_name(item)}")
    return value


_ENVELOPE_OPTIONAL: tuple[tuple[str, type], ...] = (
    ("receiver", str),
    ("groupKey", str),
    ("externalURL", str),
)
_ENVELOPE_MAPS = ("groupLabels", "commonLabels", "commonAnnotations")
_ALERT_OPTIONAL_STR = ("startsAt", "endsAt", "generatorURL", "fingerprint")
_STATUSES = ("firing", "resolved")


def _parse_alert(raw: Any, where: str) -> AlertIn:
    if not isinstance(raw, dict):
        raise PayloadError(f"{where}: must be an object, got {_type_name(raw)}")
    if "status" not in raw:
        raise PayloadError(f"{where}.status: required field missing")
    if raw["status"] not in _STATUSES:
        raise PayloadError(f"{where}.status: must be 'firing' or 'resolved', got {raw['status']!r}")
    if "labels" not in raw:
        raise PayloadError(f"{where}.labels: required field missing")
    labels = _check_str_map(raw["labels"], f"{where}.labels")
    alertname = labels.get("alertname")
    if not alertname:
        raise PayloadError(f"{where}.labels.alertname: required label missing")
    annotations = _check_str_map(raw.get("annotations", {}), f"{where}.annotations")
    for key in _ALERT_OPTIONAL_STR:
        if key in raw and not isinstance(raw[key], str):
            raise PayloadError(f"{where}.{key}: must be a string, got {_type_name(raw[key])}")
    seq_label = labels.get("kubetest_seq")
    try:
        seq = int(seq_label) if seq_label is not None else None
    except ValueError:
        seq = None
    intern = sys.intern  # few distinct values, 500k history entries: share the strings
    return AlertIn(
        alertname=intern(alertname),
        action=intern(labels.get("action_required") or annotations.get("recommended_action", "")),
        namespace=intern(labels.get("namespace", "")),
        fingerprint=raw.get("fingerprint") or fingerprint(labels),
        seq=seq,
        labels=labels,
        starts_at=raw.get("startsAt"),
    )


def parse_webhook(body: bytes, max_alerts: int = 1000) -> list[AlertIn]:
    """Validate an Alertmanager webhook v4 body; raise ``PayloadError`` naming the field."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body: must be a JSON object, got {_type_name(data)}")
    for key in ("version", "status", "alerts"):
        if key not in data:
            raise PayloadError(f"{key}: required field missing")
    if data["version"] != WEBHOOK_VERSION:
        raise PayloadError(
            f"version: unsupported webhook version {data['version']!r}, "
            f"expected {WEBHOOK_VERSION!r}"
        )
    if data["status"] not in _STATUSES:
        raise PayloadError(f"status: must be 'firing' or 'resolved', got {data['status']!r}")
    for key, kind in _ENVELOPE_OPTIONAL:
        if key in data and not isinstance(data[key], kind):
            raise PayloadError(f"{key}: must be a string, got {_type_name(data[key])}")
    trunc = data.get("truncatedAlerts", 0)
    if not isinstance(trunc, int) or isinstance(trunc, bool) or trunc < 0:
        raise PayloadError(f"truncatedAlerts: must be an integer >= 0, got {trunc!r}")
    for key in _ENVELOPE_MAPS:
        if key in data:
            _check_str_map(data[key], key)
    alerts = data["alerts"]
    if not isinstance(alerts, list):
        raise PayloadError(f"alerts: must be an array, got {_type_name(alerts)}")
    if not alerts:
        raise PayloadError("alerts: must hold at least one alert")
    if len(alerts) > max_alerts:
        raise PayloadError(
            f"alerts: {len(alerts)} alerts exceed the limit of {max_alerts} per webhook", 413
        )
    return [_parse_alert(raw, f"alerts[{i}]") for i, raw in enumerate(alerts)]


def check_action(action: str) -> str | None:
    """``None`` when the action is one the target executes, else the failure reason."""
    if action in _ACTIONS:
        return None
    if not action:
        return "unknown action '': set label action_required or annotation recommended_action"
    return f"unknown action {action!r}"
