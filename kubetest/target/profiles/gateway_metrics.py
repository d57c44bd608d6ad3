"""The Kubernaut gateway's Prometheus counters (``pkg/gateway/metrics/metrics.go`` at
commit d5a4a87), registered in the reference target's registry so kubetest's
cross-check (``analysis/gateway_counters.py``) reads what the real gateway exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: (attribute, name, help, labels) of each counter, as ``metrics.go`` registers them.
COUNTERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("received", "gateway_signals_received", "Total signals received by source type and "
     "severity (Prometheus alerts, K8s events, etc.)", ("source_type", "severity")),
    ("deduplicated", "gateway_signals_deduplicated",
     "Total signals deduplicated (duplicate fingerprint detected)", ("signal_name",)),
    ("crds_created", "gateway_crds_created",
     "Total RemediationRequest CRDs created by source type and creation status",
     ("source_type", "status")),
    ("crd_errors", "gateway_crd_creation_errors", "Total CRD creation errors by error type",
     ("error_type",)),
    ("rejected", "gateway_signals_rejected",
     "Total signals rejected by scope filtering by rejection reason", ("reason",)),
    ("owner_resolution", "gateway_owner_resolution",
     "Total owner resolution attempts by resource kind and outcome", ("kind", "outcome")),
    ("parse_dropped", "gateway_signals_parse_dropped",
     "Total alerts dropped during batch parsing by reason", ("reason",)),
)  # fmt: skip


class GatewayMetrics:
    """The gateway's counters (``pg/metrics/metrics.go``), in the target's registry."""

    received: Counter
    deduplicated: Counter
    crds_created: Counter
    crd_errors: Counter
    rejected: Counter
    owner_resolution: Counter
    parse_dropped: Counter

    def __init__(self, registry: CollectorRegistry) -> None:
        for attr, name, text, labels in COUNTERS:
            setattr(self, attr, Counter(name, text, labels, registry=registry))
        self.duration = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request duration in seconds (includes full pipeline)",
            ["endpoint", "method", "status"],
            registry=registry,
            buckets=tuple(0.001 * 2**i for i in range(10)),
        )
        # set on a state change of the "k8s-api" breaker only (client_with_circuit_breaker.go)
        Gauge(
            "gateway_circuit_breaker_state",
            "Circuit breaker state (0=closed, 1=half-open, 2=open)",
            ["name"],
            registry=registry,
        )
