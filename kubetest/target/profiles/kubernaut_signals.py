"""The Kubernaut gateway's signal path, as its source reads at commit d5a4a87
(2026-08-22) of github.com/jordigilh/kubernaut (``pg/`` below is ``pkg/gateway/``): a
body read as Go's ``encoding/json`` reads it, each alert's owner resolved in the
target's cluster, then scope, dedup and the RemediationRequest it creates (``Signals``);
``kubernaut`` puts its HTTP side in front.

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
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetest.alerts import fingerprint as alertmanager_fingerprint
from kubetest.errors import KubeError, UnmarshalError
from kubetest.target.cluster import MANAGED_LABEL, TERMINAL_PHASES, Cluster
from kubetest.target.kube_rules import RR_API_VERSION, RR_KIND, rfc3339
from kubetest.target.model import AlertIn, check_action
from kubetest.target.pipeline import execute_action
from kubetest.target.profiles.alertmanager_body import parse_webhook, truncate
from kubetest.target.profiles.gateway_metrics import GatewayMetrics
from kubetest.target.state import TargetState

#: ``prometheus_adapter.go`` ``maxPayloadSize``: the adapter refuses (400) above.
ADAPTER_MAX_PAYLOAD = 100 * 1024
SOURCE = "prometheus"  # NormalizedSignal.Source: metrics' source_type, spec.signalSource
SIGNAL_TYPE = "alert"  # pg/adapters/constants.go SourceTypeAlert: spec.signalType

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


class Signals:
    """From a parsed body to answers: ``ParseBatch`` (owner resolution, validation) and
    ``ProcessSignal`` (scope, dedup, the RemediationRequest), over ``cluster``."""

    def __init__(self, state: TargetState, cluster: Cluster, metrics: GatewayMetrics) -> None:
        self.state = state
        self.cluster = cluster
        self.metrics = metrics
        cluster.on_action = self._on_action

    # -- ParseBatch

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

    def parse_batch(self, body: bytes, received: float) -> list[Signal] | None:
        """``ParseBatch``: the signals that resolved, ``None`` for a 400."""
        if len(body) > ADAPTER_MAX_PAYLOAD:
            return None
        try:
            webhook = parse_webhook(body)
        except UnmarshalError:
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
                action=(
                    alert["labels"].get("action_required")
                    or alert["annotations"].get("recommended_action", "")
                ),
                namespace=ns,
                fingerprint=alert["fingerprint"] or alertmanager_fingerprint(alert["labels"]),
                seq=int(seq_label) if seq_label and seq_label.isdigit() else None,
                labels=labels,
                starts_at=None,
            )
            signals.append(
                Signal(
                    fingerprint=signal_fingerprint(ns, kind, name, cluster_id),
                    cluster_id=cluster_id,
                    signal_name=alert["labels"].get("alertname", ""),
                    severity=alert["labels"].get("severity") or "unknown",
                    namespace=ns,
                    kind=kind,
                    name=name,
                    labels=labels,
                    annotations=annotations,
                    firing=alert["startsAt"],
                    received=received,
                    raw=raw,
                    alert=history,
                )
            )
        return signals or None

    @staticmethod
    def validate(signal: Signal) -> str | None:
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
            raise RuntimeError(
                f"scope: local Manager cannot resolve remote cluster "
                f"{signal.cluster_id!r}; use a fleet adapter"
            )
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
        for rr in self.cluster.rrs_by_fingerprint(self.cluster.controller_namespace, fingerprint):
            status = rr.get("status") or {}
            if status.get("overallPhase", "") not in TERMINAL_PHASES:
                return rr
            if (status.get("completionStatus") or {}).get("outcome") == "ManualReviewRequired":
                return rr
            nxt = (status.get("routingStatus") or {}).get("nextAllowedExecution")
            if (
                nxt
                and datetime.fromisoformat(nxt.replace("Z", "+00:00")).timestamp() > now
                and (
                    backoff is None
                    or nxt > backoff["status"]["routingStatus"]["nextAllowedExecution"]
                )
            ):
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
            spec["signalLabels"] = truncate(signal.labels, 63)
        if signal.annotations:
            spec["signalAnnotations"] = truncate(signal.annotations, 262_000)
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
                    raise RuntimeError(
                        "resource validation failed: missing or unresolved fields [Kind, Name]"
                    )
                obj = self._new_rr(signal)
                failure = check_action(signal.alert.action)
                # An injected integrity fault: the RemediationRequest silently not written,
                # or written twice (the copy ``<name>-dup1``); either way its action history
                # follows, as the RemediationRequests reach Executing.
                for i in range(self.state.fault_copies()):
                    clone = obj if i == 0 else json.loads(json.dumps(obj))
                    if i:
                        clone["metadata"]["name"] += f"-dup{i}"
                    self._seen(self.cluster.create_rr(clone, context=signal.alert, failure=failure))
                m.crds_created.labels(SOURCE, "created").inc()
                meta = obj["metadata"]
                return "created", {
                    "status": "created",
                    "message": "RemediationRequest CRD created successfully",
                    "fingerprint": signal.fingerprint,
                    "duplicate": False,
                    "remediationRequestName": meta["name"],
                    "remediationRequestNamespace": meta["namespace"],
                }
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
            "fingerprint": "",
            "duplicate": False,
            "rejection": {
                "status": "rejected",
                "reason": "unmanaged_resource",
                "message": f"Resource {ref} is not in Kubernaut's management scope",
                "resource": ref,
                "action": f"To manage this resource, add the label: kubectl label {where}"
                f"{kind.lower() or 'resource'} {name} {MANAGED_LABEL}=true",
            },
        }

    @staticmethod
    def _duplicate(fingerprint: str, rr: dict[str, Any]) -> dict[str, Any]:
        """``NewDuplicateResponseFromRR``."""
        meta = rr["metadata"]
        dedup = (rr.get("status") or {}).get("deduplication") or {}
        metadata: dict[str, Any] = {
            "count": dedup.get("occurrenceCount", 0),
            "remediationRequestRef": f"{meta['namespace']}/{meta['name']}",
        }
        if dedup.get("firstSeenAt"):
            metadata["firstOccurrence"] = dedup["firstSeenAt"]
        if dedup.get("lastSeenAt"):
            metadata["lastOccurrence"] = dedup["lastSeenAt"]
        return {
            "status": "duplicate",
            "message": "Duplicate signal (K8s status-based deduplication)",
            "fingerprint": fingerprint,
            "duplicate": True,
            "remediationRequestName": meta["name"],
            "remediationRequestNamespace": meta["namespace"],
            "metadata": metadata,
        }

    def _on_action(self, context: Any, rr_name: str, failure: str | None) -> None:
        """A RemediationRequest reached Executing (or failed without it): the action goes
        into the history, through the integrity faults (``execute_action``)."""
        if isinstance(context, AlertIn):  # faults acted at creation: one entry per object
            execute_action(self.state, context, rr_name, copies=1, failure=failure)
