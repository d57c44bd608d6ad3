"""A loopback stand-in for the parts of the Kubernaut gateway the checks and counters read.

It answers as jordigilh/kubernaut at d5a4a870967312d98dbc302ac2ae3505087bfcb0 does:

* the auth middleware (``pkg/shared/auth/middleware.go``): 401 ``Missing Authorization
  header`` / ``Invalid or expired token`` (its TokenReview) and 403 ``Insufficient
  permissions`` (its SubjectAccessReview), RFC 7807 bodies with ``type: about:blank``
  written by Go's ``json.Encoder`` (keys sorted, a trailing newline);
* ``POST /api/v1/signals/prometheus``: 400 RFC 7807 without ``alertname``, else 201 with the
  ``ProcessingResponse`` fields (``pkg/gateway/response_types.go``), or 202 when the alert's
  ``pod`` label repeats one already created;
* ``GET /readyz``: ``{"status":"ready"}``, or 503 RFC 7807 naming what is down
  (``writeReadinessUnavailable``, ``pkg/gateway/server.go``);
* ``GET /metrics``: Prometheus text with ``gateway_signals_received_total``,
  ``gateway_crds_created_total`` and ``gateway_signals_deduplicated_total``
  (``pkg/gateway/metrics/metrics.go``), each child appearing at its first increment, and
  the plain counter ``gateway_discovery_refresh_errors_total``, there from the start.
  ``miscount`` leaves that many creations out of the counter (a gateway that lost count).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback import LoopbackServer, routed_handler

SIGNALS_PATH = "/api/v1/signals/prometheus"


def problem(h: BaseHTTPRequestHandler, status: int, doc: dict[str, Any]) -> None:
    body = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/problem+json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


class FakeGateway:
    """``with FakeGateway(valid={"t"}, granted={"t"}) as gw: gw.url, gw.metrics_url``."""

    def __init__(
        self, *, valid: set[str] | None = None, granted: set[str] | None = None,
        ready_detail: str | None = None, miscount: int = 0,
    ) -> None:  # fmt: skip
        self.valid, self.granted = valid, granted  # None: no auth middleware
        self.ready_detail = ready_detail
        self.miscount = miscount
        self.counts: Counter[str] = Counter()  # what it answered
        self.metrics: dict[tuple[str, str], float] = {
            ("gateway_discovery_refresh_errors_total", ""): 0.0
        }
        self.seen_pods: set[str] = set()
        self.lock = threading.Lock()
        self.http = LoopbackServer(routed_handler(self), daemon_threads=True)
        self.url = self.http.url + SIGNALS_PATH
        self.health_url = self.http.url + "/readyz"
        self.metrics_url = self.http.url + "/metrics"

    def __enter__(self) -> FakeGateway:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()

    def _inc(self, metric: str, labels: str) -> None:
        self.metrics[(metric, labels)] = self.metrics.get((metric, labels), 0.0) + 1

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        if h.path == "/readyz":
            if self.ready_detail:
                return problem(h, 503, {
                    "type": "https://kubernaut.ai/problems/service-unavailable",
                    "title": "Service Unavailable", "detail": self.ready_detail,
                    "status": 503, "instance": "/readyz"})  # fmt: skip
            return self._send(h, 200, b'{"status":"ready"}\n', "application/json")
        if h.path == "/metrics":
            with self.lock:
                items = sorted(self.metrics.items())
            lines = []
            for name in sorted({m for (m, _), _ in items}):
                lines.append(f"# TYPE {name} counter")
                lines += [f"{m}{{{lab}}} {v:g}" if lab else f"{m} {v:g}"
                          for (m, lab), v in items if m == name]  # fmt: skip
            return self._send(
                h, 200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4"
            )
        self._send(h, 404, b"404 page not found\n", "text/plain")

    def _auth(self, h: BaseHTTPRequestHandler) -> bool:
        if self.valid is None:
            return True
        header = h.headers.get("Authorization", "")
        deny = {"type": "about:blank", "title": "Unauthorized", "status": 401}
        if not header:
            problem(h, 401, deny | {"detail": "Missing Authorization header"})
            return False
        token = header.removeprefix("Bearer ")
        if token not in self.valid:
            problem(h, 401, deny | {"detail": "Invalid or expired token"})
            return False
        if token not in (self.granted or set()):
            problem(h, 403, {"type": "about:blank", "title": "Forbidden", "status": 403,
                             "detail": "Insufficient permissions"})  # fmt: skip
            return False
        return True

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if h.path != SIGNALS_PATH:
            return self._send(h, 404, b"404 page not found\n", "text/plain")
        if not self._auth(h):
            return
        alert = (json.loads(body).get("alerts") or [{}])[0]
        labels = alert.get("labels") or {}
        if not labels.get("alertname"):
            return problem(h, 400, {
                "type": "https://kubernaut.ai/problems/validation-error", "title": "Bad Request",
                "detail": "alertname is required", "status": 400,
                "instance": SIGNALS_PATH})  # fmt: skip
        pod = str(labels.get("pod") or labels.get("deployment") or "")
        with self.lock:
            self._inc(
                "gateway_signals_received_total",
                'severity="warning",source_type="prometheus-alert"',
            )
            if pod in self.seen_pods:
                self.counts["duplicate"] += 1
                self._inc(
                    "gateway_signals_deduplicated_total", f'signal_name="{labels["alertname"]}"'
                )
                status, word = 202, "duplicate"
            else:
                self.seen_pods.add(pod)
                self.counts["created"] += 1
                if self.counts["created"] > self.miscount:
                    self._inc(
                        "gateway_crds_created_total",
                        'source_type="prometheus-alert",status="created"',
                    )
                status, word = 201, "created"
        doc = {"status": word, "message": f"signal {word}", "fingerprint": "f" * 64,
               "duplicate": word == "duplicate", "remediationRequestName": "rr-ffffffffffff-0",
               "remediationRequestNamespace": "kubernaut-system"}  # fmt: skip
        self._send(h, status, json.dumps(doc).encode(), "application/json")
