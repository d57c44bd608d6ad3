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

#: The 25 Kubernetes actions the guide's test A3 sends (BR-PA-011: 25+ actions).
GUIDE_ACTIONS: tuple[str, ...] = (
    "restart_pod", "scale_deployment", "update_resource_limits", "drain_node", "cordon_node",
    "uncordon_node", "delete_failed_pods", "rollback_deployment", "patch_service",
    "update_configmap", "create_network_policy", "update_ingress",
    "scale_horizontal_pod_autoscaler", "update_persistent_volume_claim", "patch_node_labels",
    "update_service_account", "create_role_binding", "update_deployment_strategy",
    "patch_stateful_set", "update_daemon_set", "create_pod_disruption_budget",
    "update_resource_quota", "patch_namespace", "update_endpoint", "create_secret",
)  # fmt: skip

#: The remediation actions a current Kubernaut executes (its own names).
KUBERNAUT_ACTIONS: tuple[str, ...] = (
    "scale_deployment", "restart_pod", "increase_resources", "notify_only",
    "rollback_deployment", "expand_pvc", "drain_node", "quarantine_pod",
    "collect_diagnostics", "cleanup_storage", "backup_data", "compact_storage",
    "cordon_node", "update_hpa", "restart_daemonset", "rotate_secrets", "audit_logs",
    "update_network_policy", "restart_network", "reset_service_mesh", "failover_database",
    "repair_database", "scale_statefulset", "enable_debug_mode", "create_heap_dump",
    "optimize_resources", "migrate_workload",
)  # fmt: skip

#: Every action kubetest knows (and the reference target executes): both lists, once each.
ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(GUIDE_ACTIONS + KUBERNAUT_ACTIONS))

#: Named action sets for ``a4_actions.actions``.
ACTION_SETS: dict[str, tuple[str, ...]] = {
    "all": ACTIONS,
    "guide": GUIDE_ACTIONS,
    "kubernaut": KUBERNAUT_ACTIONS,
}

DESTRUCTIVE_ACTIONS: frozenset[str] = frozenset(
    {"restart_pod", "drain_node", "cordon_node", "uncordon_node", "quarantine_pod",
     "rollback_deployment", "delete_failed_pods", "cleanup_storage", "failover_database",
     "migrate_workload", "restart_daemonset", "update_daemon_set", "patch_node_labels",
     "create_role_binding"}
)  # fmt: skip

FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
FNV_MASK = (1 << 64) - 1


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint: FNV-1a 64 over sorted name/value, 0xff-separated."""
    data = b"".join(b"%s\xff%s\xff" % (n.encode(), labels[n].encode()) for n in sorted(labels))
    h = FNV_OFFSET
    for byte in data:  # one flat loop: this runs once per request at thousands per second
        h = ((h ^ byte) * FNV_PRIME) & FNV_MASK
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


def alert_fields(
    alert_type: str,
    seq: str,
    seq8: str,
    *,
    unique: bool,
    namespace: str,
    action: str | None,
    run: str,
    alertname_suffix: bool,
    workload: str | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """An alert's labels and annotations, ``seq`` given as its text (``%d``, ``%08d``):
    ``make_alert`` passes the numbers, ``PayloadFactory``'s templates placeholders.

    ``workload`` names an existing Deployment (a pool member): the alert then names it and
    no pod, so the gateway's owner resolution finds a resource that exists."""
    alertname, severity, summary, default_action = ALERT_TYPES[alert_type]
    app = f"kubetest-{alert_type.replace('_', '-')}"
    if workload is not None:
        deployment = workload
    elif unique:
        suffix = f"{run}-{seq8}" if run else seq8
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
        "kubetest_seq": seq,
    }
    if workload is not None:
        del labels["pod"]  # a pool Deployment has no pods (replicas 0)
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
    return labels, annotations


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
    workload: str | None = None,
) -> Alert:
    """Build one alert of a guide type (``random`` picks one).

    ``unique`` varies the owning Deployment and its pod (with ``run`` and ``seq``) so a
    deduplicating service processes every alert instead of collapsing them;
    ``alertname_suffix`` varies the alertname as well (services keyed on it);
    ``action`` pins ``action_required`` (A4); ``workload`` names an existing Deployment
    instead (see ``alert_fields``). ``startsAt`` is now, in UTC.
    """
    if alert_type == "random":
        alert_type = (rng or random).choice(sorted(ALERT_TYPES))
    if alert_type not in ALERT_TYPES:
        raise ValueError(
            f"unknown alert type {alert_type!r}; use one of {', '.join([*ALERT_TYPES, 'random'])}"
        )
    now = now or datetime.now(UTC)
    labels, annotations = alert_fields(
        alert_type, str(seq), f"{seq:08d}", unique=unique, namespace=namespace, action=action,
        run=run, alertname_suffix=alertname_suffix, workload=workload,
    )  # fmt: skip
    # "now", a millisecond back so its RFC 3339 text (to the ms) is never ahead of the
    # send: the real gateway refuses alerts whose startsAt lies in the future.
    return Alert(labels=labels, annotations=annotations, starts_at=now - timedelta(milliseconds=1))


def action_alert(
    action: str, seq: int = 0, *, namespace: str = "test-workloads", workload: str | None = None
) -> Alert:
    """An alert that asks for exactly one Kubernetes action (A4, BR-PA-011)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    alert = make_alert("high_memory", seq, namespace=namespace, action=action, workload=workload)
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
