"""The reference target's ``kubernaut`` and ``kubernaut-legacy`` profiles.

``kubernaut`` is the current Kubernaut gateway as its source reads at commit d5a4a87
(2026-08-22) of github.com/jordigilh/kubernaut (``pg/`` below is ``pkg/gateway/``), backed
by the target's own cluster (``kubetest.target.cluster``) instead of a real one:

* ``POST /api/v1/signals/prometheus`` (``pg/adapters/prometheus_adapter.go``), refusals in
  the source's order: 429 above ``max_concurrent_requests`` in flight, plain text
  ``Server capacity exceeded.`` and no Retry-After (chi's ``Throttle``, ``pg/server.go``);
  401/403 (``pkg/shared/auth/middleware.go``: TokenReview, then a SubjectAccessReview for
  ``create services/gateway-service`` in the controller namespace,
  ``pg/server_constructors.go``); 400 freshness (``pg/middleware/alertmanager_freshness.go``,
  ``timestamp.go``: ``X-Timestamp`` Unix seconds within 5 min when sent, else the newest
  ``startsAt`` must exist and be at most 2 min ahead; a body over 256 KiB is 413 there);
  415 non-JSON ``Content-Type`` (``content_type.go``); 413 over 256 KiB
  (``pg/middleware/limits.go``); 400 ``Failed to parse batch payload`` for a body over
  100 KB, bad JSON, no alerts, or every alert dropped by owner resolution
  (``pg/signal_ingestion.go``); 400 validation (``alertname``; a missing ``severity`` is
  ``unknown``, so it never fails); 200 rejected out of scope (``pg/scope.go``); 202
  duplicate / 201 created; 207 with ``results`` and ``summary`` for several alerts.
* Owner resolution (``prometheus_adapter.go`` ``extractTargetResource``,
  ``pg/types/fingerprint.go``, ``pg/adapters/owner_resolver.go``): label keys are matched to
  resource kinds (tier 1 workloads beat Pods and Nodes), the first that exists wins, else
  the best ranked, whose lookup then fails and drops the alert. ``exported_namespace``
  wins over ``namespace``. Fingerprint: SHA-256 of ``namespace:Kind:name`` (prefixed by
  ``commonLabels.cluster``), alertname not in it. Only Deployments exist in the cluster.
* Scope (``pkg/shared/scope/manager.go``): the resource's ``kubernaut.ai/managed`` label,
  else its namespace's; unmanaged is a 200 ``rejected``, reason ``unmanaged_resource``.
* Dedup (``pg/processing/phase_checker.go``): a repeat is a 202 duplicate while a
  RemediationRequest with that fingerprint is not terminal (Blocked and Verifying
  included), or Failed/TimedOut with ``nextAllowedExecution`` ahead, or with outcome
  ManualReviewRequired; it bumps ``status.deduplication`` (``status_updater.go``).
  Otherwise a new ``rr-<fingerprint12>-<8 hex>`` in the controller namespace
  (``pg/processing/crd_creator.go``). Bodies as ``pg/response_types.go`` builds them.
* Errors as ``pg/http_errors.go`` writes them (RFC 7807, ``https://kubernaut.ai/problems/…``
  with ``request_id``); the middlewares' own bodies as theirs (no ``request_id``); 401/403
  ``about:blank``. Security headers and ``X-Request-ID`` on everything past the throttle.
* Health on its own port (``/healthz``, ``/readyz``: ``pkg/shared/health/server.go``,
  ``pg/server.go``), metrics on its own (``/metrics``: ``pg/metrics/metrics.go`` counters
  beside the target's ``kubetest_target_*``).

The per-alert Kubernetes work is the target's M/G/c queue (``serve_alerts``): one drawn
service time per processed alert, so capacity keeps its known truth. When a
RemediationRequest reaches Executing its action is recorded in the action history
(``execute_action``, read by ``/api/v1/actions``). The integrity faults (``lose_rate``,
``duplicate_rate``) act where the gateway writes: an answered 201 whose
RemediationRequest was never written, or was written twice, so the RemediationRequests
and the action history both show them.

``kubernaut-legacy`` is the earlier release: synchronous 200, per-pair cooldown (500),
rate limit (429).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubetest.alerts import fingerprint as alertmanager_fingerprint
from kubetest.errors import KubeError, StandInAnswer
from kubetest.target.cluster import (
    MANAGED_LABEL,
    RR_API_VERSION,
    RR_KIND,
    SIGNAL_GRANT,
    TERMINAL_PHASES,
    Cluster,
    rfc3339,
)
from kubetest.target.model import AlertIn, check_action
from kubetest.target.pipeline import (
    admitted,
    execute_action,
    read_alerts,
    read_body,
    serve_alerts,
)
from kubetest.target.state import TargetState

#: ``pg/middleware/limits.go`` ``MaxRequestBodySize``: 413 above.
MAX_REQUEST_BODY = 256 * 1024
#: ``prometheus_adapter.go`` ``maxPayloadSize``: the adapter refuses (400) above.
ADAPTER_MAX_PAYLOAD = 100 * 1024
#: ``signal_ingestion.go``: ``adapter.ReplayValidator(5 * time.Minute)``.
REPLAY_WINDOW_S = 300.0

PROBLEMS = "https://kubernaut.ai/problems/"
PROBLEM_JSON = "application/problem+json"
SOURCE = "prometheus"  # NormalizedSignal.Source: metrics' source_type, spec.signalSource
SIGNAL_TYPE = "alert"  # pg/adapters/constants.go SourceTypeAlert: spec.signalType

#: ``pg/http_errors.go`` ``getErrorTypeAndTitle``.
_TYPES: dict[int, tuple[str, str]] = {
    400: ("validation-error", "Bad Request"),
    405: ("method-not-allowed", "Method Not Allowed"),
    500: ("internal-error", "Internal Server Error"),
    413: ("payload-too-large", "Request Entity Too Large"),
    504: ("gateway-timeout", "Gateway Timeout"),
    503: ("service-unavailable", "Service Unavailable"),
}

#: ``pg/middleware/security_headers.go``.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
}

#: Prometheus-standard labels never read as resource kinds
#: (``prometheus_adapter.go`` ``PrometheusReservedLabels``).
RESERVED_LABELS = frozenset({"job", "service", "instance", "endpoint", "container", "namespace"})

#: The discovery a typical cluster answers: label key (singular name) -> (kind, API group,
#: namespaced). ``resource_registry.go`` builds its label-to-kind map from discovery.
_DISCOVERY: tuple[tuple[str, str, bool], ...] = (
    ("Pod", "", True), ("Node", "", False), ("Service", "", True), ("ConfigMap", "", True),
    ("Secret", "", True), ("Namespace", "", False), ("PersistentVolume", "", False),
    ("PersistentVolumeClaim", "", True), ("ServiceAccount", "", True),
    ("Endpoints", "", True), ("Event", "", True), ("ReplicationController", "", True),
    ("Deployment", "apps", True), ("ReplicaSet", "apps", True),
    ("StatefulSet", "apps", True), ("DaemonSet", "apps", True), ("Job", "batch", True),
    ("CronJob", "batch", True), ("HorizontalPodAutoscaler", "autoscaling", True),
    ("PodDisruptionBudget", "policy", True), ("Ingress", "networking.k8s.io", True),
    ("NetworkPolicy", "networking.k8s.io", True),
)  # fmt: skip
KINDS: dict[str, tuple[str, bool]] = {kind: (group, ns) for kind, group, ns in _DISCOVERY}
LABEL_KINDS: dict[str, str] = {kind.lower(): kind for kind, _, _ in _DISCOVERY}
#: ``resource_registry.go`` tiers (lower wins); everything else is tier 2.
_TIER1 = frozenset({"Deployment", "StatefulSet", "DaemonSet", "CronJob", "DeploymentConfig"})
_TIER3 = frozenset({"Pod", "Node"})
#: Owner traversal follows only these groups (``IsCoreBatchAppsKind``); other kinds stop
#: it at once, their existence unchecked.
_CORE_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy"})
_CLUSTER_SCOPED = frozenset({"Node", "PersistentVolume", "Namespace"})

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,251}[a-z0-9])?$")  # rfc1123LabelRegexp
_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_MEDIA_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class _Invalid(StandInAnswer):
    """A body ``encoding/json`` would not unmarshal into the gateway's structs (internal:
    the gateway answers it with a 400)."""


def _go_time(value: Any) -> datetime | None:
    """``time.Time`` from JSON: RFC 3339 text (``None`` for null or the zero time)."""
    if value is None:
        return None
    if not isinstance(value, str) or not (m := _RFC3339_RE.match(value)):
        raise _Invalid(f"parsing time {value!r} as RFC 3339")
    try:
        frac = (m.group(7) or "")[:7].ljust(7, "0")[1:7] or "0"
        tz = m.group(8).replace("Z", "+00:00")
        dt = datetime.fromisoformat(
            f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}"
            f".{frac.ljust(6, '0')}{tz}"
        )
    except (ValueError, OverflowError) as exc:
        raise _Invalid(str(exc)) from None
    return None if dt == _GO_ZERO_TIME else dt


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Invalid("cannot unmarshal into map[string]string")
    return value


def _go_string(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid("cannot unmarshal into string")
    return value


def _parse_webhook(body: bytes) -> dict[str, Any]:
    """``AlertManagerWebhook`` as ``encoding/json`` fills it: typed fields, unknown ones
    ignored, null as the zero value; ``_Invalid`` where Go's Unmarshal errs."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _Invalid(f"malformed JSON payload: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Invalid("cannot unmarshal into AlertManagerWebhook")
    for key in ("version", "groupKey", "status", "receiver", "externalURL"):
        _go_string(data.get(key))
    trunc = data.get("truncatedAlerts")
    if trunc is not None and (not isinstance(trunc, int) or isinstance(trunc, bool)):
        raise _Invalid("truncatedAlerts: cannot unmarshal into int")
    common = {key: _str_map(data.get(key))
              for key in ("groupLabels", "commonLabels", "commonAnnotations")}  # fmt: skip
    raw_alerts = data.get("alerts")
    if raw_alerts is None:
        raw_alerts = []
    if not isinstance(raw_alerts, list):
        raise _Invalid("alerts: cannot unmarshal into []AlertManagerAlert")
    alerts = []
    for raw in raw_alerts:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise _Invalid("cannot unmarshal into AlertManagerAlert")
        for key in ("status", "generatorURL", "fingerprint"):
            _go_string(raw.get(key))
        _go_time(raw.get("endsAt"))
        alerts.append({
            "labels": _str_map(raw.get("labels")),
            "annotations": _str_map(raw.get("annotations")),
            "startsAt": _go_time(raw.get("startsAt")),
            "fingerprint": raw.get("fingerprint") or "",
        })  # fmt: skip
    return {**common, "alerts": alerts}


def _newest_starts_at(body: bytes) -> datetime | None | bool:
    """The freshness check's reading (``alertManagerTimestamps``): the newest non-zero
    ``alerts[].startsAt``; ``None`` when none has one; ``False`` when the body does not
    unmarshal (the check then lets it through to the handler)."""
    try:
        data = json.loads(body)
        if data is None:
            return None
        if not isinstance(data, dict):
            return False
        raw_alerts = data.get("alerts") or []
        if not isinstance(raw_alerts, list):
            return False
        newest = None
        for raw in raw_alerts:
            if raw is None:
                continue
            if not isinstance(raw, dict):
                return False
            ts = _go_time(raw.get("startsAt"))
            if ts is not None and (newest is None or ts > newest):
                newest = ts
        return newest
    except (ValueError, _Invalid):
        return False


def _media_type_ok(header: str) -> bool | None:
    """``mime.ParseMediaType`` then ``== application/json``: ``None`` when malformed."""
    parts = header.split(";")
    media = parts[0].strip()
    kind, slash, sub = media.partition("/")
    if not slash or not _MEDIA_TOKEN.match(kind) or not _MEDIA_TOKEN.match(sub):
        return None
    for param in parts[1:]:
        if not param.strip():
            continue
        key, eq, value = param.strip().partition("=")
        if not eq or not _MEDIA_TOKEN.match(key.strip()) or not value.strip():
            return None
    return media.lower() == "application/json"


def _go_json(doc: Any) -> bytes:
    """``json.NewEncoder(w).Encode``: compact, one trailing newline."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _truncate(values: dict[str, str], limit: int) -> dict[str, str]:
    """``pkg/shared/k8s`` ``TruncateMapValues``: values cut to ``limit`` bytes."""
    out = {}
    for key, value in values.items():
        raw = value.encode()
        out[key] = raw[:limit].decode("utf-8", "replace") if len(raw) > limit else value
    return out


def signal_fingerprint(namespace: str, kind: str, name: str, cluster_id: str = "") -> str:
    """``CalculateClusterAwareFingerprint`` (``pg/types/fingerprint.go``)."""
    key = f"{namespace}:{kind}:{name}"
    if cluster_id:
        key = f"{cluster_id}:{key}"
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Signal:
    """``types.NormalizedSignal``, plus what the target's action history needs."""

    fingerprint: str
    cluster_id: str
    signal_name: str
    severity: str
    namespace: str
    kind: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    firing: datetime | None
    received: float
    raw: bytes
    alert: AlertIn = field(repr=False)


class GatewayMetrics:
    """The gateway's counters (``pg/metrics/metrics.go``), in the target's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        reg = registry
        self.received = Counter(
            "gateway_signals_received", "Total signals received by source type and severity "
            "(Prometheus alerts, K8s events, etc.)", ["source_type", "severity"], registry=reg)
        self.deduplicated = Counter(
            "gateway_signals_deduplicated",
            "Total signals deduplicated (duplicate fingerprint detected)", ["signal_name"],
            registry=reg)
        self.crds_created = Counter(
            "gateway_crds_created", "Total RemediationRequest CRDs created by source type and "
            "creation status", ["source_type", "status"], registry=reg)
        self.crd_errors = Counter(
            "gateway_crd_creation_errors", "Total CRD creation errors by error type",
            ["error_type"], registry=reg)
        self.duration = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request duration in seconds (includes full pipeline)",
            ["endpoint", "method", "status"], registry=reg,
            buckets=tuple(0.001 * 2**i for i in range(10)))
        # set on a state change of the "k8s-api" breaker only (client_with_circuit_breaker.go)
        Gauge("gateway_circuit_breaker_state",
              "Circuit breaker state (0=closed, 1=half-open, 2=open)", ["name"], registry=reg)
        self.rejected = Counter(
            "gateway_signals_rejected", "Total signals rejected by scope filtering by "
            "rejection reason", ["reason"], registry=reg)
        self.owner_resolution = Counter(
            "gateway_owner_resolution", "Total owner resolution attempts by resource kind and "
            "outcome", ["kind", "outcome"], registry=reg)
        self.parse_dropped = Counter(
            "gateway_signals_parse_dropped", "Total alerts dropped during batch parsing by "
            "reason", ["reason"], registry=reg)  # fmt: skip


class _Answer(StandInAnswer):
    """A finished response, raised from deep in the pipeline (internal: ``handle`` sends it)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class KubernautGateway:
    """The gateway's HTTP pipeline over ``cluster`` (see the module docstring)."""

    def __init__(self, state: TargetState, cluster: Cluster) -> None:
        self.state = state
        self.config = config = state.config
        self.cluster = cluster
        self.path = config.webhook_path
        self.metrics = GatewayMetrics(state.metrics.registry)
        self.signal_token: str | None = None
        if config.auth_token_env:
            expected = state._expected_auth  # "Bearer <value>", read at start
            assert expected is not None
            self.signal_token = expected[len("Bearer "):]
        cluster.on_action = self._on_action

    # -- answers

    def _headers(self, rid: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**SECURITY_HEADERS, "X-Request-ID": rid, **(extra or {})}

    def _problem(self, code: int, detail: str, rid: str, *, instance: str | None = None,
                 request_id: bool = True, kind: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> Response:  # fmt: skip
        """``gwerrors.RFC7807Error`` (type, title, detail, status, instance, request_id)."""
        type_, title = kind or _TYPES.get(code, ("unknown", "Error"))
        body: dict[str, Any] = {"type": PROBLEMS + type_, "title": title, "detail": detail,
                                "status": code,
                                "instance": self.path if instance is None else instance}
        if request_id:
            body["request_id"] = rid
        return Response(_go_json(body), code, headers=self._headers(rid, headers),
                        media_type=PROBLEM_JSON)  # fmt: skip

    def _auth_error(self, code: int, title: str, detail: str, rid: str) -> Response:
        """``auth.Middleware.writeError``: a Go map, so its keys come sorted."""
        body = {"detail": detail, "status": code, "title": title, "type": "about:blank"}
        return Response(_go_json(body), code, headers=self._headers(rid),
                        media_type=PROBLEM_JSON)

    # -- the pipeline

    def _authenticate(self, request: Request, rid: str) -> None:
        """``pkg/shared/auth/middleware.go``: TokenReview, then the SubjectAccessReview."""
        if self.signal_token is None:
            return
        header = request.headers.get("authorization", "")
        if not header:
            raise _Answer(self._auth_error(401, "Unauthorized", "Missing Authorization header",
                                           rid))
        if not header.startswith("Bearer "):
            raise _Answer(self._auth_error(401, "Unauthorized",
                                           "Invalid Authorization header format", rid))
        token = header[len("Bearer "):]
        if not token:
            raise _Answer(self._auth_error(401, "Unauthorized", "Empty Bearer token", rid))
        identity = self.cluster.authenticate(token)
        if identity is None:
            raise _Answer(self._auth_error(401, "Unauthorized", "Invalid or expired token", rid))
        verb, group, resource, name = SIGNAL_GRANT
        ns = self.cluster.controller_namespace
        if not identity.allows(verb, group, resource, ns, name):
            # The real gateway says only "Insufficient permissions"; the grant is named here
            # so a refused sender knows which binding it lacks.
            raise _Answer(self._auth_error(
                403, "Forbidden", f"Insufficient permissions: {identity.user} cannot {verb} "
                f"{resource}/{name} in namespace {ns} (bind it to the gateway-signal-source "
                "ClusterRole)", rid))  # fmt: skip

    async def _body(self, request: Request) -> bytes | None:
        try:
            return await read_body(request, self.config.body_limit)
        except ClientDisconnect:
            return b""

    async def _fresh_body(self, request: Request, rid: str) -> bytes | None:
        """The replay check (``AlertManagerFreshnessValidator``): the body when it read it
        (no ``X-Timestamp``), ``None`` when the header path left it unread."""
        header = request.headers.get("x-timestamp", "")
        skew = self.config.future_tolerance_s
        if header:
            if not re.fullmatch(r"[+-]?\d+", header):
                message = "invalid timestamp format"
            elif int(header) < 0:
                message = "invalid timestamp: negative value"
            elif time.time() - int(header) > REPLAY_WINDOW_S:
                message = "timestamp too old: possible replay attack"
            elif int(header) > time.time() + skew:
                message = "timestamp in future: possible clock skew attack"
            else:
                return None
            raise _Answer(self._problem(400, message, rid, instance="", request_id=False))
        body = await self._body(request)
        if body is None:
            raise _Answer(self._problem(413, "Request body too large", rid, instance="",
                                        request_id=False))  # fmt: skip
        newest = _newest_starts_at(body)
        if newest is False:
            return body  # the handler reports what does not parse
        if newest is None:
            raise _Answer(self._problem(400, "alert payload missing startsAt timestamp", rid,
                                        instance="", request_id=False))  # fmt: skip
        assert isinstance(newest, datetime)
        if newest.timestamp() > time.time() + skew:
            raise _Answer(self._problem(400, "alert startsAt in future: possible clock skew "
                                        "attack", rid, instance="", request_id=False))
        return body

    def _content_type(self, request: Request, rid: str) -> None:
        """``ValidateContentType``: missing is fine, malformed 400, not JSON 415."""
        header = request.headers.get("content-type")
        if not header:
            return
        ok = _media_type_ok(header)
        if ok is None:
            raise _Answer(self._problem(400, "Invalid Content-Type header format", rid,
                                        request_id=False))  # fmt: skip
        if not ok:
            raise _Answer(self._problem(
                415, "Content-Type must be application/json", rid, request_id=False,
                kind=("unsupported-media-type", "Unsupported Media Type"),
                headers={"Accept": "application/json"}))  # fmt: skip

    def _resolve(self, labels: dict[str, str]) -> tuple[str, str, str] | None:
        """(namespace, kind, name) of the alert's top-level owner (``extractAlertResource``
        then ``ResolveFingerprintWithCluster``), ``None`` when owner resolution fails and
        the alert is dropped; counts ``gateway_owner_resolution``."""
        ns, found = "", False  # extractNamespace: exported_namespace, then namespace
        for key in ("exported_namespace", "namespace"):
            value = labels.get(key, "")
            if value and _NAME_RE.match(value):
                ns, found = value, True
                break
        candidates = []  # extractTargetResource: (tier, kind, name), best first
        for key, value in labels.items():
            kind = LABEL_KINDS.get(key)
            if kind is None or not value or key in RESERVED_LABELS or not _NAME_RE.match(value):
                continue
            candidates.append((1 if kind in _TIER1 else 3 if kind in _TIER3 else 2, kind, value))
        candidates.sort(key=lambda c: (c[0], c[1]))
        existing = (c for c in candidates if self._exists(ns, c[1], c[2]))
        _, kind, name = next(existing, candidates[0] if candidates else (0, "Unknown", "unknown"))
        if not found:
            ns = "default" if KINDS.get(kind, ("", True))[1] else ""
        group = KINDS[kind][0] if kind in KINDS else None
        if group in _CORE_GROUPS and not self._exists(ns, kind, name):
            # K8sOwnerResolver: the lookup fails, the signal is dropped
            self.metrics.owner_resolution.labels(kind, "failed").inc()
            self.metrics.parse_dropped.labels("owner_resolution_failed").inc()
            return None
        # found without a controller owner (nothing here has ownerReferences), or a kind
        # the resolver does not traverse (Unknown, other API groups): the resource itself
        self.metrics.owner_resolution.labels(kind, "success").inc()
        return ns, kind, name

    def _exists(self, namespace: str, kind: str, name: str) -> bool:
        """Only Deployments exist in the target's cluster (no Pods, Nodes...)."""
        return kind == "Deployment" and self.cluster.deployment_labels(namespace, name) is not None

    def _parse_batch(self, body: bytes, received: float) -> list[Signal] | None:
        """``ParseBatch``: the signals that resolved, ``None`` for a 400."""
        if len(body) > ADAPTER_MAX_PAYLOAD:
            return None
        try:
            webhook = _parse_webhook(body)
        except _Invalid:
            return None
        if not webhook["alerts"]:
            return None
        common_labels = webhook["commonLabels"]
        cluster_id = common_labels.get("cluster", "")
        raw = body
        signals = []
        for alert in webhook["alerts"]:
            resolved = self._resolve(alert["labels"])
            if resolved is None:
                continue
            ns, kind, name = resolved
            labels = {**alert["labels"], **common_labels}
            annotations = {**alert["annotations"], **webhook["commonAnnotations"]}
            seq_label = alert["labels"].get("kubetest_seq")
            history = AlertIn(
                alertname=alert["labels"].get("alertname", ""),
                action=(alert["labels"].get("action_required")
                        or alert["annotations"].get("recommended_action", "")),
                namespace=ns,
                fingerprint=alert["fingerprint"] or alertmanager_fingerprint(alert["labels"]),
                seq=int(seq_label) if seq_label and seq_label.isdigit() else None,
                labels=labels,
                starts_at=None,
            )  # fmt: skip
            signals.append(Signal(
                fingerprint=signal_fingerprint(ns, kind, name, cluster_id),
                cluster_id=cluster_id, signal_name=alert["labels"].get("alertname", ""),
                severity=alert["labels"].get("severity") or "unknown", namespace=ns,
                kind=kind, name=name, labels=labels, annotations=annotations,
                firing=alert["startsAt"], received=received, raw=raw, alert=history))
        return signals or None

    @staticmethod
    def _validate(signal: Signal) -> str | None:
        """``PrometheusAdapter.Validate``."""
        if not signal.fingerprint:
            return "fingerprint is required"
        if not signal.signal_name:
            return "alertName is required"
        if not signal.severity:
            return "severity is required (cannot be empty)"
        return None

    # -- ProcessSignal

    def _managed(self, signal: Signal) -> bool:
        """``scope.Manager.IsManagedResource``: the resource's label, else its namespace's."""
        if signal.cluster_id:
            raise RuntimeError(f"scope: local Manager cannot resolve remote cluster "
                               f"{signal.cluster_id!r}; use a fleet adapter")  # fmt: skip
        # the resource's own label (kinds the manager knows; only Deployments exist here,
        # a missing resource falls through to its namespace)
        labels = None
        if signal.kind == "Deployment":
            labels = self.cluster.deployment_labels(signal.namespace, signal.name)
        value = (labels or {}).get(MANAGED_LABEL)
        if value in ("true", "false"):
            return value == "true"
        if signal.kind in _CLUSTER_SCOPED or not signal.namespace:
            return False
        ns_labels = self.cluster.namespace_labels(signal.namespace) or {}
        return ns_labels.get(MANAGED_LABEL) == "true"

    def _existing(self, fingerprint: str) -> dict[str, Any] | None:
        """``ShouldDeduplicate``: the RemediationRequest a repeat belongs to, if any."""
        now = self.cluster.clock()
        backoff = None
        for rr in self.cluster.rrs_by_fingerprint(self.cluster.controller_namespace,
                                                  fingerprint):  # fmt: skip
            status = rr.get("status") or {}
            if status.get("overallPhase", "") not in TERMINAL_PHASES:
                return rr
            if (status.get("completionStatus") or {}).get("outcome") == "ManualReviewRequired":
                return rr
            nxt = (status.get("routingStatus") or {}).get("nextAllowedExecution")
            if nxt and datetime.fromisoformat(nxt.replace("Z", "+00:00")).timestamp() > now and (
                    backoff is None or nxt > backoff["status"]["routingStatus"][
                        "nextAllowedExecution"]):
                backoff = rr
        return backoff

    def _seen(self, rr: dict[str, Any]) -> dict[str, Any]:
        """``UpdateDeduplicationStatus``: count this occurrence on ``rr``."""
        stamp = rfc3339(self.cluster.clock())

        def bump(status: dict[str, Any]) -> None:
            dedup = status.get("deduplication")
            if dedup is None:
                status["deduplication"] = {"firstSeenAt": stamp, "lastSeenAt": stamp,
                                           "occurrenceCount": 1}  # fmt: skip
            else:
                dedup["occurrenceCount"] = dedup.get("occurrenceCount", 0) + 1
                dedup["lastSeenAt"] = stamp

        meta = rr["metadata"]
        return self.cluster.update_rr_status(meta["namespace"], meta["name"], bump)

    def _new_rr(self, signal: Signal) -> dict[str, Any]:
        """``CRDCreator.buildRemediationRequestCRD``."""
        prefix = signal.fingerprint[:12]
        name = f"rr-{prefix}-{self.cluster._names.getrandbits(32):08x}"
        target = {"kind": signal.kind, "name": signal.name}
        if signal.namespace:
            target["namespace"] = signal.namespace
        firing = signal.firing.timestamp() if signal.firing is not None else signal.received
        spec: dict[str, Any] = {
            "signalFingerprint": signal.fingerprint, "signalName": signal.signal_name,
            "severity": signal.severity, "signalType": SIGNAL_TYPE, "signalSource": SOURCE,
            "targetType": "kubernetes", "targetResource": target,
        }  # fmt: skip
        if signal.cluster_id:
            spec["clusterID"] = signal.cluster_id
        spec["firingTime"] = rfc3339(firing)
        spec["receivedTime"] = rfc3339(signal.received)
        if signal.labels:
            spec["signalLabels"] = _truncate(signal.labels, 63)
        if signal.annotations:
            spec["signalAnnotations"] = _truncate(signal.annotations, 262_000)
        spec["providerData"] = json.dumps(
            {"labels": signal.labels, "namespace": signal.namespace}, sort_keys=True,
            separators=(",", ":"), ensure_ascii=False)  # fmt: skip
        spec["originalPayload"] = signal.raw.decode("utf-8", "replace")
        return {
            "apiVersion": RR_API_VERSION, "kind": RR_KIND,
            "metadata": {
                "name": name, "namespace": self.cluster.controller_namespace,
                "labels": {"app.kubernetes.io/managed-by": "gateway-service",
                           "app.kubernetes.io/component": "remediation"},
                "annotations": {"kubernaut.ai/created-at": rfc3339(self.cluster.clock())},
            },
            "spec": spec,
        }  # fmt: skip

    def process(self, signal: Signal) -> tuple[str, dict[str, Any]]:
        """``ProcessSignal``: ``(word, body)`` with word created / duplicate / rejected, or
        ``("failed", {})`` where the gateway returns an error (a 500)."""
        m = self.metrics
        m.received.labels(SOURCE, signal.severity).inc()
        try:
            with self.cluster.lock:
                if not self._managed(signal):
                    m.rejected.labels("unmanaged_resource").inc()
                    return "rejected", self._rejected(signal)
                existing = self._existing(signal.fingerprint)
                if existing is not None:
                    rr = self._seen(existing)
                    m.deduplicated.labels(signal.signal_name).inc()
                    return "duplicate", self._duplicate(signal.fingerprint, rr)
                if signal.kind.lower() == "unknown" or signal.name.lower() == "unknown":
                    raise RuntimeError("resource validation failed: missing or unresolved "
                                       "fields [Kind, Name]")  # fmt: skip
                obj = self._new_rr(signal)
                failure = check_action(signal.alert.action)
                # An injected integrity fault: the RemediationRequest silently not written,
                # or written twice (the copy ``<name>-dup1``); either way its action history
                # follows, as the RemediationRequests reach Executing.
                for i in range(self.state.fault_copies()):
                    clone = obj if i == 0 else json.loads(json.dumps(obj))
                    if i:
                        clone["metadata"]["name"] += f"-dup{i}"
                    self._seen(self.cluster.create_rr(clone, context=signal.alert,
                                                      failure=failure))  # fmt: skip
                m.crds_created.labels(SOURCE, "created").inc()
                meta = obj["metadata"]
                return "created", {
                    "status": "created", "message": "RemediationRequest CRD created successfully",
                    "fingerprint": signal.fingerprint, "duplicate": False,
                    "remediationRequestName": meta["name"],
                    "remediationRequestNamespace": meta["namespace"],
                }  # fmt: skip
        except (RuntimeError, KubeError):
            return "failed", {}

    @staticmethod
    def _rejected(signal: Signal) -> dict[str, Any]:
        """``NewRejectedResponse`` (``pg/scope.go``)."""
        ns, kind, name = signal.namespace, signal.kind, signal.name
        ref = f"{ns}:{kind}:{name}" if ns else f"{kind}:{name}"
        where = f"-n {ns} " if ns else ""
        return {
            "status": "rejected",
            "message": f"Signal rejected: resource {ref} is not managed by Kubernaut",
            "fingerprint": "", "duplicate": False,
            "rejection": {
                "status": "rejected", "reason": "unmanaged_resource",
                "message": f"Resource {ref} is not in Kubernaut's management scope",
                "resource": ref,
                "action": f"To manage this resource, add the label: kubectl label {where}"
                          f"{kind.lower() or 'resource'} {name} {MANAGED_LABEL}=true",
            },
        }  # fmt: skip

    @staticmethod
    def _duplicate(fingerprint: str, rr: dict[str, Any]) -> dict[str, Any]:
        """``NewDuplicateResponseFromRR``."""
        meta = rr["metadata"]
        dedup = (rr.get("status") or {}).get("deduplication") or {}
        metadata: dict[str, Any] = {"count": dedup.get("occurrenceCount", 0),
                                    "remediationRequestRef": f"{meta['namespace']}/{meta['name']}"}
        if dedup.get("firstSeenAt"):
            metadata["firstOccurrence"] = dedup["firstSeenAt"]
        if dedup.get("lastSeenAt"):
            metadata["lastOccurrence"] = dedup["lastSeenAt"]
        return {"status": "duplicate",
                "message": "Duplicate signal (K8s status-based deduplication)",
                "fingerprint": fingerprint, "duplicate": True,
                "remediationRequestName": meta["name"],
                "remediationRequestNamespace": meta["namespace"], "metadata": metadata}

    def _on_action(self, context: Any, rr_name: str, failure: str | None) -> None:
        """A RemediationRequest reached Executing (or failed without it): the action goes
        into the history, through the integrity faults (``execute_action``)."""
        if isinstance(context, AlertIn):  # faults acted at creation: one entry per object
            execute_action(self.state, context, rr_name, copies=1, failure=failure)

    # -- HTTP

    async def handle(self, request: Request) -> Response:
        """``POST /api/v1/signals/prometheus``: the throttle, then the counted pipeline."""
        state = self.state
        limit = self.config.concurrency_limit
        bucket = state._bucket
        if (limit is not None and state.in_flight >= limit) or (
                bucket is not None and not bucket.take()):
            # chi's Throttle: http.Error, before every other middleware (no request id)
            state.metrics.count("webhook", 429)
            state.count_outcome("throttled")
            return Response(b"Server capacity exceeded.\n", 429,
                            headers={"X-Content-Type-Options": "nosniff"},
                            media_type="text/plain; charset=utf-8")  # fmt: skip
        state.in_flight += 1
        t0 = time.perf_counter()
        rid = str(uuid.uuid4())
        try:
            try:
                response = await self._pipeline(request, rid)
            except _Answer as answer:
                response = answer.response
        finally:
            state.in_flight -= 1
        code = response.status_code
        self.metrics.duration.labels(self.path, "POST", str(code)).observe(
            time.perf_counter() - t0)
        state.metrics.count("webhook", code)
        if code >= 400:
            state.count_outcome("failed")  # answered 2xx: counted per alert by the pipeline
        return response

    async def _pipeline(self, request: Request, rid: str) -> Response:
        state = self.state
        remaining = state.outage()
        if remaining:
            return self._problem(503, "Service unavailable: injected outage window", rid,
                                 headers={"Retry-After": str(math.ceil(remaining))})
        self._authenticate(request, rid)
        body = await self._fresh_body(request, rid)
        self._content_type(request, rid)
        if body is None:
            body = await self._body(request)
            if body is None:
                return self._problem(413, "Request body too large", rid)
        signals = self._parse_batch(body, self.cluster.clock())  # receivedTime
        if signals is None:
            return self._problem(400, "Failed to parse batch payload", rid)
        if len(signals) == 1:
            invalid = self._validate(signals[0])
            if invalid:
                return self._problem(400, f"Signal validation failed: {invalid}", rid)
        if state.inject_error():
            return self._problem(500, "Internal server error", rid)
        valid = [s for s in signals if self._validate(s) is None]
        processed = iter(await serve_alerts(state, valid, self.process))
        results: list[tuple[str, dict[str, Any], Signal]] = []
        for signal in signals:
            invalid = self._validate(signal)
            if invalid:
                results.append(("invalid", {"error": f"Signal validation failed: {invalid}"},
                                signal))
            else:
                word, body_doc = next(processed)
                results.append((word, body_doc, signal))
        if len(signals) == 1 and results[0][0] == "failed":
            return self._problem(500, "Internal server error", rid)  # handleProcessingError
        outcome = {"created": "accepted", "duplicate": "duplicate", "rejected": "rejected",
                   "invalid": "rejected", "failed": "failed"}  # fmt: skip
        for word, _, _ in results:
            state.count_outcome(outcome[word])
        if len(signals) == 1:
            word, doc, _ = results[0]
            code = {"created": 201, "duplicate": 202, "rejected": 200}[word]
            return Response(_go_json(doc), code, headers=self._headers(rid),
                            media_type="application/json")
        items = []
        summary = {"total": len(results), "created": 0, "deduplicated": 0, "rejected": 0,
                   "failed": 0}  # fmt: skip
        for word, doc, signal in results:
            if word == "invalid":
                items.append({"status": "rejected", "fingerprint": signal.fingerprint,
                              "error": doc["error"]})  # fmt: skip
                summary["rejected"] += 1
            elif word == "failed":
                items.append({"status": "failed", "fingerprint": signal.fingerprint,
                              "error": "Processing failed"})  # fmt: skip
                summary["failed"] += 1
            else:
                item = {"status": doc["status"]}
                if doc.get("fingerprint"):
                    item["fingerprint"] = doc["fingerprint"]
                item["message"] = doc["message"]
                items.append(item)
                summary[{"created": "created", "duplicate": "deduplicated",
                         "rejected": "rejected"}[word]] += 1  # fmt: skip
        return Response(_go_json({"results": items, "summary": summary}), 207,
                        headers=self._headers(rid), media_type="application/json")

    # -- the other ports

    def health_routes(self) -> list[Route]:
        """``/healthz`` (liveness, always 200) and ``/readyz`` (503 RFC 7807 during an
        injected outage, as when the Kubernetes API is unreachable)."""
        state = self.state

        async def healthz(request: Request) -> Response:
            state.metrics.count("health", 200)
            body = {"status": "healthy", "timestamp": rfc3339(time.time())}
            return Response(_go_json(body), 200, media_type="text/plain; charset=utf-8")

        async def readyz(request: Request) -> Response:
            remaining = state.outage()
            if remaining:
                state.metrics.count("health", 503)
                body = {"type": PROBLEMS + "service-unavailable", "title": "Service Unavailable",
                        "detail": "Kubernetes API is not reachable", "status": 503,
                        "instance": "/readyz"}  # fmt: skip
                return Response(_go_json(body), 503, media_type=PROBLEM_JSON,
                                headers={"Retry-After": str(math.ceil(remaining))})
            state.metrics.count("health", 200)
            return Response(_go_json({"status": "ready"}), 200,
                            media_type="text/plain; charset=utf-8")

        return [Route("/healthz", healthz), Route("/readyz", readyz)]


async def go_not_found(request: Request, exc: Exception) -> Response:
    """Go's ``http.NotFound`` and chi's 405 (empty, with ``Allow``), as the real ports
    answer; with the API port's security headers."""
    headers = {**SECURITY_HEADERS, "X-Request-ID": str(uuid.uuid4())}
    if getattr(exc, "status_code", 404) == 405:
        allow = (getattr(exc, "headers", None) or {}).get("Allow", "POST")
        return Response(b"", 405, headers={**headers, "Allow": allow})
    return Response(b"404 page not found\n", 404, media_type="text/plain; charset=utf-8",
                    headers=headers)


def legacy_routes(state: TargetState) -> tuple[Any, list[Route]]:
    """``POST /alerts`` as earlier releases answer it: synchronous, cooldown, rate limit."""
    config = state.config
    cooldown: dict[tuple[str, str], float] = {}

    def refuse(code: int, reason: str, **headers: str) -> Response:
        state.metrics.count("webhook", code)
        state.count_outcome("throttled" if code == 429 else "failed")
        return JSONResponse({"status": "error", "error": reason}, code, headers=headers or None)

    def in_cooldown(alerts: list[AlertIn]) -> str | None:
        """Check, then start, each alertname/namespace pair's cooldown (on arrival, so two
        concurrent alerts of one pair are decided deterministically)."""
        if config.cooldown_s <= 0:
            return None
        now = time.monotonic()
        if len(cooldown) > 10_000:
            for key in [k for k, until in cooldown.items() if until <= now]:
                del cooldown[key]
        for alert in alerts:
            key = (alert.alertname, alert.namespace)
            until = cooldown.get(key, 0.0)
            if until > now:
                return (
                    f"alert {alert.alertname} in namespace {alert.namespace or '-'} is in "
                    f"cooldown for another {until - now:.1f} s"
                )
        for alert in alerts:
            cooldown[(alert.alertname, alert.namespace)] = now + config.cooldown_s
        return None

    def handle(alert: AlertIn) -> dict[str, Any]:
        status, reason = execute_action(state, alert)
        return {"fingerprint": alert.fingerprint, "action": alert.action,
                "status": status, "reason": reason}  # fmt: skip

    async def _handle(request: Request) -> Response:
        alerts = await read_alerts(state, request, "webhook", refuse)
        if isinstance(alerts, Response):
            return alerts
        if state.inject_error():
            return refuse(500, f"injected failure (error_rate={config.error_rate})")
        cooling = in_cooldown(alerts)
        if cooling:
            return refuse(500, cooling)
        results = await serve_alerts(state, alerts, handle)
        state.metrics.count("webhook", 200)
        state.count_outcome("accepted", len(results))
        return JSONResponse({"status": "success", "processed": len(results), "results": results})

    return admitted(state, _handle, refuse), []
