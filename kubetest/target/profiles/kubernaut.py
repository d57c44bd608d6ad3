"""The reference target's ``kubernaut`` profile: the Kubernaut gateway's HTTP side.

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
* Errors as ``pg/http_errors.go`` writes them (RFC 7807, ``https://kubernaut.ai/problems/…``
  with ``request_id``); the middlewares' own bodies as theirs (no ``request_id``); 401/403
  ``about:blank``. Security headers and ``X-Request-ID`` on everything past the throttle.
* Health on its own port (``/healthz``, ``/readyz``: ``pkg/shared/health/server.go``,
  ``pg/server.go``), metrics on its own (``/metrics``: ``pg/metrics/metrics.go`` counters
  beside the target's ``kubetest_target_*``).
* What happens to a parsed signal (owner resolution, scope, dedup, the
  RemediationRequest) is ``kubernaut_signals``, from the same commit.

The per-alert Kubernetes work is the target's M/G/c queue (``serve_alerts``): one drawn
service time per processed alert, so capacity keeps its known truth. When a
RemediationRequest reaches Executing its action is recorded in the action history
(``execute_action``, read by ``/api/v1/actions``). The integrity faults (``lose_rate``,
``duplicate_rate``) act where the gateway writes: an answered 201 whose
RemediationRequest was never written, or was written twice, so the RemediationRequests
and the action history both show them.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from kubetest.errors import StandInAnswer
from kubetest.target.cluster import Cluster
from kubetest.target.kube_rules import SIGNAL_GRANT, rfc3339
from kubetest.target.pipeline import read_body, serve_alerts
from kubetest.target.profiles.alertmanager_body import go_json, newest_starts_at
from kubetest.target.profiles.gateway_metrics import GatewayMetrics
from kubetest.target.profiles.kubernaut_signals import Signal, Signals
from kubetest.target.state import TargetState

#: ``pg/middleware/limits.go`` ``MaxRequestBodySize``: 413 above.
MAX_REQUEST_BODY = 256 * 1024
#: ``signal_ingestion.go``: ``adapter.ReplayValidator(5 * time.Minute)``.
REPLAY_WINDOW_S = 300.0

PROBLEMS = "https://kubernaut.ai/problems/"
PROBLEM_JSON = "application/problem+json"

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

_MEDIA_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


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
            self.signal_token = expected[len("Bearer ") :]
        self.signals = Signals(state, cluster, self.metrics)

    # -- answers

    def _headers(self, rid: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**SECURITY_HEADERS, "X-Request-ID": rid, **(extra or {})}

    def _problem(self, code: int, detail: str, rid: str, *, instance: str | None = None,
                 request_id: bool = True, kind: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> Response:  # fmt: skip
        """``gwerrors.RFC7807Error`` (type, title, detail, status, instance, request_id)."""
        type_, title = kind or _TYPES.get(code, ("unknown", "Error"))
        body: dict[str, Any] = {
            "type": PROBLEMS + type_,
            "title": title,
            "detail": detail,
            "status": code,
            "instance": self.path if instance is None else instance,
        }
        if request_id:
            body["request_id"] = rid
        return Response(
            go_json(body), code, headers=self._headers(rid, headers), media_type=PROBLEM_JSON
        )

    def _auth_error(self, code: int, title: str, detail: str, rid: str) -> Response:
        """``auth.Middleware.writeError``: a Go map, so its keys come sorted."""
        body = {"detail": detail, "status": code, "title": title, "type": "about:blank"}
        return Response(go_json(body), code, headers=self._headers(rid), media_type=PROBLEM_JSON)

    # -- the pipeline

    def _authenticate(self, request: Request, rid: str) -> None:
        """``pkg/shared/auth/middleware.go``: TokenReview, then the SubjectAccessReview."""
        if self.signal_token is None:
            return
        header = request.headers.get("authorization", "")
        if not header:
            raise _Answer(
                self._auth_error(401, "Unauthorized", "Missing Authorization header", rid)
            )
        if not header.startswith("Bearer "):
            raise _Answer(
                self._auth_error(401, "Unauthorized", "Invalid Authorization header format", rid)
            )
        token = header[len("Bearer ") :]
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
            raise _Answer(
                self._problem(413, "Request body too large", rid, instance="", request_id=False)
            )
        newest = newest_starts_at(body)
        if newest is False:
            return body  # the handler reports what does not parse
        if newest is None:
            raise _Answer(self._problem(400, "alert payload missing startsAt timestamp", rid,
                                        instance="", request_id=False))  # fmt: skip
        assert isinstance(newest, datetime)
        if newest.timestamp() > time.time() + skew:
            raise _Answer(
                self._problem(
                    400,
                    "alert startsAt in future: possible clock skew attack",
                    rid,
                    instance="",
                    request_id=False,
                )
            )
        return body

    def _content_type(self, request: Request, rid: str) -> None:
        """``ValidateContentType``: missing is fine, malformed 400, not JSON 415."""
        header = request.headers.get("content-type")
        if not header:
            return
        ok = _media_type_ok(header)
        if ok is None:
            raise _Answer(
                self._problem(400, "Invalid Content-Type header format", rid, request_id=False)
            )
        if not ok:
            raise _Answer(self._problem(
                415, "Content-Type must be application/json", rid, request_id=False,
                kind=("unsupported-media-type", "Unsupported Media Type"),
                headers={"Accept": "application/json"}))  # fmt: skip

    # -- HTTP

    async def handle(self, request: Request) -> Response:
        """``POST /api/v1/signals/prometheus``: the throttle, then the counted pipeline."""
        state = self.state
        limit = self.config.concurrency_limit
        bucket = state._bucket
        if (limit is not None and state.in_flight >= limit) or (
            bucket is not None and not bucket.take()
        ):
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
        self.metrics.duration.labels(self.path, "POST", str(code)).observe(time.perf_counter() - t0)
        state.metrics.count("webhook", code)
        if code >= 400:
            state.count_outcome("failed")  # answered 2xx: counted per alert by the pipeline
        return response

    async def _pipeline(self, request: Request, rid: str) -> Response:
        state = self.state
        remaining = state.outage()
        if remaining:
            return self._problem(
                503,
                "Service unavailable: injected outage window",
                rid,
                headers={"Retry-After": str(math.ceil(remaining))},
            )
        self._authenticate(request, rid)
        body = await self._fresh_body(request, rid)
        self._content_type(request, rid)
        if body is None:
            body = await self._body(request)
            if body is None:
                return self._problem(413, "Request body too large", rid)
        signals = self.signals.parse_batch(body, self.cluster.clock())  # receivedTime
        if signals is None:
            return self._problem(400, "Failed to parse batch payload", rid)
        if len(signals) == 1:
            invalid = self.signals.validate(signals[0])
            if invalid:
                return self._problem(400, f"Signal validation failed: {invalid}", rid)
        if state.inject_error():
            return self._problem(500, "Internal server error", rid)
        valid = [s for s in signals if self.signals.validate(s) is None]
        processed = iter(await serve_alerts(state, valid, self.signals.process))
        results: list[tuple[str, dict[str, Any], Signal]] = []
        for signal in signals:
            invalid = self.signals.validate(signal)
            if invalid:
                results.append(
                    ("invalid", {"error": f"Signal validation failed: {invalid}"}, signal)
                )
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
            return Response(
                go_json(doc), code, headers=self._headers(rid), media_type="application/json"
            )
        items = []
        summary = {"total": len(results), "created": 0, "deduplicated": 0, "rejected": 0,
                   "failed": 0}  # fmt: skip
        for word, doc, signal in results:
            if word == "invalid":
                items.append(
                    {"status": "rejected", "fingerprint": signal.fingerprint, "error": doc["error"]}
                )
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
        return Response(
            go_json({"results": items, "summary": summary}),
            207,
            headers=self._headers(rid),
            media_type="application/json",
        )

    # -- the other ports

    def health_routes(self) -> list[Route]:
        """``/healthz`` (liveness, always 200) and ``/readyz`` (503 RFC 7807 during an
        injected outage, as when the Kubernetes API is unreachable)."""
        state = self.state

        async def healthz(request: Request) -> Response:
            state.metrics.count("health", 200)
            body = {"status": "healthy", "timestamp": rfc3339(time.time())}
            return Response(go_json(body), 200, media_type="text/plain; charset=utf-8")

        async def readyz(request: Request) -> Response:
            remaining = state.outage()
            if remaining:
                state.metrics.count("health", 503)
                body = {"type": PROBLEMS + "service-unavailable", "title": "Service Unavailable",
                        "detail": "Kubernetes API is not reachable", "status": 503,
                        "instance": "/readyz"}  # fmt: skip
                return Response(
                    go_json(body),
                    503,
                    media_type=PROBLEM_JSON,
                    headers={"Retry-After": str(math.ceil(remaining))},
                )
            state.metrics.count("health", 200)
            return Response(
                go_json({"status": "ready"}), 200, media_type="text/plain; charset=utf-8"
            )

        return [Route("/healthz", healthz), Route("/readyz", readyz)]


async def go_not_found(request: Request, exc: Exception) -> Response:
    """Go's ``http.NotFound`` and chi's 405 (empty, with ``Allow``), as the real ports
    answer; with the API port's security headers."""
    headers = {**SECURITY_HEADERS, "X-Request-ID": str(uuid.uuid4())}
    if getattr(exc, "status_code", 404) == 405:
        allow = (getattr(exc, "headers", None) or {}).get("Allow", "POST")
        return Response(b"", 405, headers={**headers, "Allow": allow})
    return Response(
        b"404 page not found\n", 404, media_type="text/plain; charset=utf-8", headers=headers
    )
