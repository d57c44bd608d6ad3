"""Alertmanager webhook v4 payloads: the guide's alert types and one alert per action.

The body is what a real Alertmanager posts (``notify/webhook`` in prometheus/alertmanager):
the envelope fields, one or more alerts, each with its fingerprint computed the way
Alertmanager computes it (FNV-1a 64 over the sorted label set), so a service that
deduplicates on fingerprints or labels sees realistic input.

Uniqueness: Kubernaut's gateway deduplicates on the alert's namespace and owning resource
(the alertname too in some releases), its earlier release cools down per alertname and
namespace. A unique alert therefore varies its Deployment and pod names (and so its
fingerprint) with a per-run token and its sequence number, and, for ``kubernaut-legacy``,
its alertname; it keeps its namespace, which must be one the service manages. The run
token keeps a second run (or a second test of one session) from colliding with signals a
first one left being remediated.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

WEBHOOK_VERSION = "4"

#: The guide's alert types: (alertname, severity, summary, recommended action).
ALERT_TYPES: dict[str, tuple[str, str, str, str]] = {
    "high_memory": (
        "HighMemoryUsage",
        "warning",
        "Pod memory usage above 90%",
        "increase_resources",
    ),
    "high_cpu": ("HighCPUUsage", "warning", "Pod CPU usage above 85% for 5m", "scale_deployment"),
    "pod_crash": ("PodCrashLooping", "critical", "Pod is crash looping", "restart_pod"),
    "disk_full": ("DiskSpaceLow", "critical", "Persistent volume above 95%", "expand_pvc"),
    "network_latency": (
        "NetworkLatencyHigh",
        "warning",
        "p99 latency above 500ms",
        "collect_diagnostics",
    ),
}

#: Kubernetes remediation actions a Kubernaut-like service executes (BR-PA-011 needs 25+).
ACTIONS: tuple[str, ...] = (
    "scale_deployment", "restart_pod", "increase_resources", "notify_only",
    "rollback_deployment", "expand_pvc", "drain_node", "quarantine_pod",
    "collect_diagnostics", "cleanup_storage", "backup_data", "compact_storage",
    "cordon_node", "update_hpa", "restart_daemonset", "rotate_secrets", "audit_logs",
    "update_network_policy", "restart_network", "reset_service_mesh", "failover_database",
    "repair_database", "scale_statefulset", "enable_debug_mode", "create_heap_dump",
    "optimize_resources", "migrate_workload",
)  # fmt: skip

#: Actions that delete, evict or disrupt workloads: need ``allow_destructive`` on a real cluster.
DESTRUCTIVE_ACTIONS: frozenset[str] = frozenset(
    {"restart_pod", "drain_node", "cordon_node", "quarantine_pod", "rollback_deployment",
     "cleanup_storage", "failover_database", "migrate_workload", "restart_daemonset"}
)  # fmt: skip

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint: FNV-1a 64 over sorted name/value, 0xff-separated."""
    data = b"".join(b"%s\xff%s\xff" % (n.encode(), labels[n].encode()) for n in sorted(labels))
    h = _FNV_OFFSET
    for byte in data:  # one flat loop: this runs once per request at thousands per second
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def _rfc3339(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One alert inside a webhook: labels/annotations plus what the records need."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    status: str = "firing"
    ends_at: datetime | None = None

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def action(self) -> str:
        return self.labels.get("action_required") or self.annotations.get("recommended_action", "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _rfc3339(self.starts_at),
            # Alertmanager sends the zero time for a firing alert without an end.
            "endsAt": _rfc3339(self.ends_at) if self.ends_at else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.kubetest.invalid/graph?g0.expr="
            + self.labels["alertname"],
            "fingerprint": self.fingerprint,
        }


def new_run_token() -> str:
    """Six hex digits naming one load run in its alerts' resource names and labels."""
    return os.urandom(3).hex()


def make_alert(
    alert_type: str,
    seq: int = 0,
    *,
    unique: bool = True,
    namespace: str = "test-workloads",
    action: str | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
    run: str = "",
    alertname_suffix: bool = False,
) -> Alert:
    """Build one alert of a guide type (``random`` picks one).

    ``unique`` varies the owning Deployment and its pod (with ``run`` and ``seq``) so a
    deduplicating service processes every alert instead of collapsing them;
    ``alertname_suffix`` varies the alertname as well (services keyed on it);
    ``action`` pins ``action_required`` (A4). ``startsAt`` is now, in UTC.
    """
    if alert_type == "random":
        alert_type = (rng or random).choice(sorted(ALERT_TYPES))
    try:
        alertname, severity, summary, default_action = ALERT_TYPES[alert_type]
    except KeyError:
        raise ValueError(
            f"unknown alert type {alert_type!r}; use one of {', '.join([*ALERT_TYPES, 'random'])}"
        ) from None
    now = now or datetime.now(UTC)
    app = f"kubetest-{alert_type.replace('_', '-')}"
    if unique:
        suffix = f"{run}-{seq:08d}" if run else f"{seq:08d}"
        deployment = f"{app}-{suffix}"
        if alertname_suffix:
            alertname = f"{alertname}-{suffix}"
    else:
        deployment = app
    labels = {
        "alertname": alertname,
        "severity": severity,
        "namespace": namespace,
        "pod": f"{deployment}-0",
        "deployment": deployment,
        "job": "kubernetes-pods",
        "alert_type": alert_type,
        "kubetest_seq": str(seq),
    }
    if run:
        labels["kubetest_run"] = run
    if action is not None:
        labels["action_required"] = action
    annotations = {
        "summary": summary,
        "description": f"{summary} (kubetest synthetic alert #{seq})",
        "recommended_action": action or default_action,
        "runbook_url": "https://runbooks.kubetest.invalid/" + alertname,
    }
    # "now", a millisecond back so its RFC 3339 text (to the ms) is never ahead of the
    # send: the real gateway refuses alerts whose startsAt lies in the future.
    return Alert(
        labels=labels, annotations=annotations, starts_at=now - timedelta(milliseconds=1)
    )


def action_alert(action: str, seq: int = 0, *, namespace: str = "test-workloads") -> Alert:
    """An alert that asks for exactly one Kubernetes action (A4, BR-PA-011)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    alert = make_alert("high_memory", seq, namespace=namespace, action=action)
    labels = {**alert.labels, "alertname": "KubetestAction_" + action}
    return Alert(labels=labels, annotations=alert.annotations, starts_at=alert.starts_at)


def webhook(
    alerts: list[Alert], *, receiver: str = "kubernaut", status: str | None = None
) -> dict[str, Any]:
    """The Alertmanager webhook v4 envelope around ``alerts``."""
    if not alerts:
        raise ValueError("a webhook carries at least one alert")
    common_labels = dict(set.intersection(*(set(a.labels.items()) for a in alerts)))
    common_annotations = dict(set.intersection(*(set(a.annotations.items()) for a in alerts)))
    group_labels = {"alertname": alerts[0].labels["alertname"]}
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": '{}:{alertname="' + group_labels["alertname"] + '"}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if any(a.status == "firing" for a in alerts) else "resolved"),
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": "http://alertmanager.kubetest.invalid:9093",
        "alerts": [a.to_dict() for a in alerts],
    }


class PayloadFactory:
    """Makes request bodies for a load run: ``body(seq)`` → (bytes, alert type, fingerprint).

    ``api`` is the profile (``kubernaut-legacy`` also varies the alertname when unique);
    ``run`` (default: a fresh token) names the run in resource names and in the label
    ``kubetest_run``, which with ``kubetest_seq`` lets a RemediationRequest be traced back
    to its request. Picklable (plain data only) so shards build the same payloads remotely.
    """

    def __init__(
        self,
        types: list[str],
        *,
        unique: bool = True,
        seed: int = 0,
        api: str = "webhook",
        namespace: str = "test-workloads",
        run: str | None = None,
    ) -> None:
        if not types:
            raise ValueError("at least one alert type is needed")
        for t in types:
            if t != "random" and t not in ALERT_TYPES:
                raise ValueError(f"unknown alert type {t!r}")
        self.types = list(types)
        self.unique = unique
        self.seed = seed
        self.api = api
        self.namespace = namespace
        self.run = run if run is not None else new_run_token()

    def body(self, seq: int) -> tuple[bytes, str, str]:
        alert_type = self.types[seq % len(self.types)]
        rng = random.Random(self.seed * 1_000_003 + seq) if alert_type == "random" else None
        alert = make_alert(
            alert_type, seq, unique=self.unique, rng=rng, namespace=self.namespace,
            run=self.run, alertname_suffix=self.api == "kubernaut-legacy",
        )  # fmt: skip
        payload = webhook([alert])
        return (
            json.dumps(payload, separators=(",", ":")).encode(),
            alert.labels["alert_type"],
            alert.fingerprint,
        )
