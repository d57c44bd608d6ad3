"""A stand-in for the Kubernetes API paths the remediation follower and the checks read.

No real API server can run here, so this serves just enough of one on 127.0.0.1:
RemediationRequests (``kubernaut.ai/v1alpha1``) get / list / watch per namespace, with
resourceVersions, watch timeouts and ``410 Gone`` for a compacted resourceVersion, plus
``/version`` and ``/api/v1/namespaces/<ns>`` for the readiness check (404 ``NotFound``
Status for the names in ``missing_namespaces``). Each object follows a script of
``(seconds after creation, phase)`` steps, applied by a ticker thread, so a watch sees the
phases move as a controller would move them (scripts that the reference target's own
cluster, ``kubetest.target.cluster``, cannot play: a phase held for ever, a 410 on
demand).

``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`` answers as the Kubernetes
API reference describes SelfSubjectAccessReview (authorization.k8s.io/v1): 201 with the
review echoed back and ``status.allowed``; here allowed unless ``(verb, group, resource,
namespace)`` of ``spec.resourceAttributes`` is in ``denied`` (RBAC never denies outright:
``status.denied`` is left out and the reason empty, as for a request no rule grants).

Built from the Kubernetes API documentation for v1.32 (the API the ``kubernetes`` Python
client 32.x speaks): "API Concepts" (resourceVersion, list then watch, bookmarks off,
``410 Gone`` for an expired resourceVersion, ``Status`` objects) and the
SelfSubjectAccessReview reference; the RemediationRequest CRD as jordigilh/kubernaut
defines it at d5a4a870967312d98dbc302ac2ae3505087bfcb0 (``api/remediation/v1alpha1``).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine_servers import send_json
from loopback import LoopbackServer, routed_handler

GROUP, VERSION, PLURAL = "kubernaut.ai", "v1alpha1", "remediationrequests"
TOKEN = "standin-token-0123456789"

#: The phases a successful remediation walks through, seconds after creation.
COMPLETES = [(0.05, "Processing"), (0.1, "Analyzing"), (0.15, "Executing"),
             (0.2, "Verifying"), (0.3, "Completed")]  # fmt: skip
FAILS = [(0.05, "Processing"), (0.1, "Analyzing"), (0.2, "Failed")]


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeStandIn:
    """``with KubeStandIn() as api: api.create(...); api.kubeconfig(path)``."""

    def __init__(
        self, token: str = TOKEN, tick_s: float = 0.01, *,
        denied: set[tuple[str, str, str, str | None]] | None = None,
        missing_namespaces: set[str] | None = None,
    ) -> None:  # fmt: skip
        self.token = token
        self.tick_s = tick_s
        self.denied = set(denied or ())  # (verb, group, resource, namespace) not allowed
        self.missing_namespaces = set(missing_namespaces or ())
        self.reviews: list[dict[str, Any]] = []  # resourceAttributes asked, in order
        self.lock = threading.Condition()
        self.rv = 0
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.scripts: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.generation = 0  # bumped by compact(): open watches end with 410
        self.requests: Counter[str] = Counter()
        self._stop = threading.Event()
        self._server: LoopbackServer | None = None
        self._threads: list[threading.Thread] = []

    # -- objects

    def create(
        self, namespace: str, name: str, *, fingerprint: str = "",
        signal_labels: dict[str, str] | None = None, script: list[tuple[float, str]] = COMPLETES,
    ) -> None:  # fmt: skip
        now = time.time()
        with self.lock:
            self.rv += 1
            obj = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RemediationRequest",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "resourceVersion": str(self.rv),
                    "creationTimestamp": _rfc3339(now),
                    "labels": {"kubernaut.ai/signal-fingerprint": fingerprint[:63]},
                },
                "spec": {"signalFingerprint": fingerprint, "signalLabels": signal_labels or {}},
                "status": {"overallPhase": "Pending"},
            }
            self.objects[(namespace, name)] = obj
            self.scripts[(namespace, name)] = [(now + dt, phase) for dt, phase in script]
            self.events.append((self.rv, "ADDED", copy.deepcopy(obj)))
            self.lock.notify_all()

    def compact(self) -> None:
        """Forget history: open watches and watches from an older resourceVersion get
        410 Gone (the client must list again)."""
        with self.lock:
            self.compacted = self.rv
            self.generation += 1
            self.events.clear()
            self.lock.notify_all()

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.time()
            with self.lock:
                for key, steps in self.scripts.items():
                    while steps and steps[0][0] <= now:
                        _, phase = steps.pop(0)
                        obj = self.objects[key]
                        self.rv += 1
                        obj["metadata"]["resourceVersion"] = str(self.rv)
                        obj["status"]["overallPhase"] = phase
                        if phase in ("Completed", "Failed", "TimedOut", "Cancelled", "Skipped"):
                            obj["status"]["completedAt"] = _rfc3339(now)
                        self.events.append((self.rv, "MODIFIED", copy.deepcopy(obj)))
                        self.lock.notify_all()

    # -- server

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def kubeconfig(self, path: Path, namespace: str = "test-workloads") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "kubetest", "user": {"token": self.token}}],
            "contexts": [{"name": "standin", "context": {
                "cluster": "standin", "user": "kubetest", "namespace": namespace}}],
        }))  # fmt: skip
        return path

    def start(self) -> KubeStandIn:
        self._server = LoopbackServer(routed_handler(self), daemon_threads=True).start()
        t = threading.Thread(target=self._tick, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.lock.notify_all()
        if self._server is not None:
            self._server.stop()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                "reason": reason, "message": message}  # fmt: skip

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segs = [s for s in parts.path.split("/") if s]
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            self.requests["unauthorized"] += 1
            return send_json(h, 401, self._status(401, "Unauthorized", "Unauthorized"))
        if segs == ["version"]:
            return send_json(h, 200, {"gitVersion": "v1.31.0-kubetest-standin"})
        if len(segs) == 4 and segs[:3] == ["api", "v1", "namespaces"]:
            if segs[3] in self.missing_namespaces:
                return send_json(
                    h, 404, self._status(404, "NotFound", f'namespaces "{segs[3]}" not found')
                )
            return send_json(h, 200, {"kind": "Namespace", "metadata": {"name": segs[3]}})
        prefix = ["apis", GROUP, VERSION, "namespaces"]
        if len(segs) in (6, 7) and segs[:4] == prefix and segs[5] == PLURAL:
            ns = segs[4]
            if len(segs) == 7:
                self.requests["get"] += 1
                with self.lock:
                    obj = copy.deepcopy(self.objects.get((ns, segs[6])))
                if obj is None:
                    return send_json(h, 404, self._status(404, "NotFound", f"{segs[6]} not found"))
                return send_json(h, 200, obj)
            verb = "watch" if query.get("watch") in ("true", "1", "True") else "list"
            if (verb, GROUP, PLURAL, ns) in self.denied:
                self.requests["forbidden"] += 1
                why = f'{PLURAL}.{GROUP} is forbidden: cannot {verb} in the namespace "{ns}"'
                return send_json(h, 403, self._status(403, "Forbidden", why))
            if verb == "watch":
                self.requests["watch"] += 1
                return self._watch(h, ns, query)
            self.requests["list"] += 1
            with self.lock:
                items = [copy.deepcopy(o) for (n, _), o in self.objects.items() if n == ns]
                rv = self.rv
            return send_json(h, 200, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationRequestList",
                "metadata": {"resourceVersion": str(rv)}, "items": items})  # fmt: skip
        send_json(h, 404, self._status(404, "NotFound", f"no route {parts.path}"))

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            self.requests["unauthorized"] += 1
            return send_json(h, 401, self._status(401, "Unauthorized", "Unauthorized"))
        if urlsplit(h.path).path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            return send_json(h, 404, self._status(404, "NotFound", f"no route {h.path}"))
        review = json.loads(body)
        attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
        self.requests["selfsubjectaccessreview"] += 1
        self.reviews.append(attrs)
        key = (attrs.get("verb"), attrs.get("group") or "", attrs.get("resource"),
               attrs.get("namespace") or None)  # fmt: skip
        allowed = key not in self.denied
        reason = 'RBAC: allowed by RoleBinding "kubetest/standin"' if allowed else ""
        review["status"] = {"allowed": allowed, "reason": reason}
        review.setdefault("metadata", {})["creationTimestamp"] = None
        send_json(h, 201, review)

    def _watch(self, h: BaseHTTPRequestHandler, ns: str, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 30), 30.0)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

        def chunk(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            self._stream(chunk, ns, since, deadline)
            chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            return

    def _stream(self, chunk: Any, ns: str, since: int, deadline: float) -> None:
        generation = self.generation
        while not self._stop.is_set() and time.monotonic() < deadline:
            if since < self.compacted or generation != self.generation:
                gone = self._status(410, "Expired", f"too old resource version: {since}")
                self.requests["gone"] += 1
                chunk(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                return
            with self.lock:
                batch = [(rv, kind, obj) for rv, kind, obj in self.events
                         if rv > since and obj["metadata"]["namespace"] == ns]  # fmt: skip
                if not batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.lock.wait(min(left, 0.2))
                    continue
            for rv, kind, obj in batch:
                chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                since = rv
