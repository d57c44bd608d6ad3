"""Where a service's health and metrics endpoints are, by profile: the one place that says.

The current Kubernaut gateway does not serve them on the webhook's origin (a 404 there):
its health server listens on ``:8081`` with ``/healthz`` and ``/readyz``
(``pkg/shared/health/server.go``), its metrics on ``:9090/metrics``
(``pkg/gateway/server_constructors.go``, ``attachHealthAndMetricsServers``; the ports are
the defaults of ``pkg/gateway/config/config.go``), both plain HTTP even when the webhook is
TLS (jordigilh/kubernaut at d5a4a870967312d98dbc302ac2ae3505087bfcb0). ``/readyz`` is the
probe worth asking: it is 503 while the gateway's dependencies are down. The other
profiles, and the embedded reference target whatever its profile, answer ``/health`` and
``/metrics`` on the webhook's origin.

Precedence, for both: the URL a running target reports (``override``), then
``target.health_url`` / ``target.metrics_url``, then the profile's default.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

GATEWAY_HEALTH_PORT = 8081
GATEWAY_HEALTH_PATH = "/readyz"
GATEWAY_METRICS_PORT = 9090
GATEWAY_METRICS_PATH = "/metrics"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _on_port(url: str, port: int, path: str) -> str:
    """Plain HTTP on the same host as ``url`` (IPv6 literals keep their brackets)."""
    host = urlsplit(url).hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def _own_ports(target: Any) -> bool:
    """A real Kubernaut gateway (not the embedded target, which serves all on one port)."""
    return target.api == "kubernaut" and not target.is_embedded


def _webhook(target: Any, webhook_url: str | None) -> str:
    url = webhook_url or ("" if target.is_embedded else target.url)
    if not url:
        raise ValueError("the embedded target is not started: pass the URL it runs at")
    return url


def _endpoint(
    target: Any, webhook_url: str | None, override: str | None, given: str | None,
    gateway: tuple[int, str], path: str,
) -> str:  # fmt: skip
    """The precedence of the module docstring, for one endpoint."""
    if override or given:
        return str(override or given)
    url = _webhook(target, webhook_url)
    if _own_ports(target):
        return _on_port(url, *gateway)
    return origin(url) + path


def health_url(target: Any, webhook_url: str | None = None, override: str | None = None) -> str:
    """The health URL of ``target`` (a ``params.Target``) whose webhook is ``webhook_url``
    (default ``target.url``): ``http://<host>:8081/readyz`` for a Kubernaut gateway,
    ``<origin>/health`` otherwise."""
    return _endpoint(target, webhook_url, override, target.health_url,
                     (GATEWAY_HEALTH_PORT, GATEWAY_HEALTH_PATH), "/health")  # fmt: skip


def metrics_url(target: Any, webhook_url: str | None = None, override: str | None = None) -> str:
    """The Prometheus metrics URL of ``target``: ``http://<host>:9090/metrics`` for a
    Kubernaut gateway, ``<origin>/metrics`` otherwise."""
    return _endpoint(target, webhook_url, override, target.metrics_url,
                     (GATEWAY_METRICS_PORT, GATEWAY_METRICS_PATH), "/metrics")  # fmt: skip
