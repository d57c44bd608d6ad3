"""The reference target's cluster served as a Kubernetes REST API (``kubernaut`` profile).

Just the paths kubetest's own code reaches through the official ``kubernetes`` client,
answered as an API server answers them (``Status`` bodies, reasons, messages):

* ``GET /version``; ``GET /api/v1/namespaces/{ns}`` (404 when missing);
* ``/apis/apps/v1/namespaces/{ns}/deployments``: POST (201; 404 without the namespace,
  409 when it exists, 422 when invalid), GET list (``labelSelector``,
  ``fieldSelector``), DELETE collection (``labelSelector``; answers the deleted list);
  ``.../deployments/{name}``: GET, DELETE (a success ``Status``);
* ``/apis/kubernaut.ai/v1alpha1/namespaces/{ns}/remediationrequests``: GET list
  (``labelSelector``, ``fieldSelector`` on ``spec.signalFingerprint``...) and watch
  (``watch=true&resourceVersion=&timeoutSeconds=&allowWatchBookmarks=``: newline-delimited
  JSON events; an expired resourceVersion is an ``ERROR`` event carrying a 410 ``Status``,
  as API servers send it); ``.../remediationrequests/{name}``: GET;
* ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``: ``status.allowed`` from
  the calling token's grants, the same grants every call above is checked against (403
  ``Forbidden`` naming user, verb, resource, group and namespace, as RBAC words it).

Every call needs ``Authorization: Bearer <token>`` of an identity the cluster knows
(``Cluster.add_token``); anything else is 401 ``Unauthorized``. The state is
``kubetest.target.cluster.Cluster``; this module only speaks HTTP. Follows Kubernaut at
commit d5a4a87 (2026-08-22) for the RemediationRequest resource
(``api/remediation/v1alpha1/remediationrequest_types.go``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kubetest.errors import KubeError
from kubetest.target.cluster import Cluster
from kubetest.target.kube_rules import (
    GROUP,
    RR_API_VERSION,
    RR_FIELDS,
    RR_KIND,
    RR_PLURAL,
    VERSION,
    Identity,
    bad_request,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    unauthorized,
)

#: How often an open watch looks for new events (and advances the orchestrator).
WATCH_POLL_S = 0.02
#: A watch without ``timeoutSeconds`` ends after this long (API servers: 30-60 min).
WATCH_DEFAULT_S = 1800.0

VERSION_INFO = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-kubetest", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "2026-08-22T00:00:00Z", "goVersion": "go1.24",
    "compiler": "gc", "platform": "linux/amd64",
}  # fmt: skip


def _status(err: KubeError) -> Response:
    return JSONResponse(err.status(), err.code)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def create_kube_app(cluster: Cluster) -> Starlette:
    """The API server app for ``cluster`` (one per target; share the cluster, not the app)."""

    def identify(request: Request) -> Identity:
        identity = cluster.authenticate(_token(request))
        if identity is None:
            raise unauthorized()
        return identity

    def handler(fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request, identify(request))
            except KubeError as err:
                return _status(err)

        return endpoint

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise bad_request(f"the body of the request was in an unknown format: {exc}") from None

    async def version(request: Request, who: Identity) -> Response:
        return JSONResponse(VERSION_INFO)

    async def namespace(request: Request, who: Identity) -> Response:
        name = request.path_params["name"]
        cluster.authorize(who, "get", "", "namespaces", "", name)
        return JSONResponse(cluster.get_namespace(name))

    async def deployments(request: Request, who: Identity) -> Response:
        ns = request.path_params["ns"]
        q = request.query_params
        if request.method == "POST":
            body = await body_of(request)
            meta = (body.get("metadata") if isinstance(body, dict) else None) or {}
            cluster.authorize(who, "create", "apps", "deployments", ns, meta.get("name") or "")
            return JSONResponse(cluster.create_deployment(ns, body), 201)
        if request.method == "DELETE":
            cluster.authorize(who, "deletecollection", "apps", "deployments", ns)
            return JSONResponse(
                cluster.delete_deployments(ns, q.get("labelSelector"), q.get("fieldSelector"))
            )
        if _flag(q.get("watch")):
            raise KubeError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource "
                "(watch deployments: not served by the kubetest stand-in)",
            )
        cluster.authorize(who, "list", "apps", "deployments", ns)
        return JSONResponse(
            cluster.list_deployments(ns, q.get("labelSelector"), q.get("fieldSelector"))
        )

    async def deployment(request: Request, who: Identity) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if request.method == "DELETE":
            cluster.authorize(who, "delete", "apps", "deployments", ns, name)
            return JSONResponse(cluster.delete_deployment(ns, name))
        cluster.authorize(who, "get", "apps", "deployments", ns, name)
        return JSONResponse(cluster.get_deployment(ns, name))

    async def remediations(request: Request, who: Identity) -> Response:
        ns = request.path_params["ns"]
        q = request.query_params
        if _flag(q.get("watch")):
            cluster.authorize(who, "watch", GROUP, RR_PLURAL, ns)
            return _watch(cluster, ns, q)
        cluster.authorize(who, "list", GROUP, RR_PLURAL, ns)
        return JSONResponse(cluster.list_rrs(ns, q.get("labelSelector"), q.get("fieldSelector")))

    async def remediation(request: Request, who: Identity) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        cluster.authorize(who, "get", GROUP, RR_PLURAL, ns, name)
        return JSONResponse(cluster.get_rr(ns, name))

    async def access_review(request: Request, who: Identity) -> Response:
        body = await body_of(request)
        spec = (body.get("spec") if isinstance(body, dict) else None) or {}
        attrs = spec.get("resourceAttributes")
        if not isinstance(attrs, dict):
            allowed = False  # non-resource URLs: nothing granted
        else:
            allowed = who.allows(
                str(attrs.get("verb") or ""),
                str(attrs.get("group") or ""),
                str(attrs.get("resource") or ""),
                str(attrs.get("namespace") or ""),
                str(attrs.get("name") or ""),
            )
        status: dict[str, Any] = {"allowed": allowed}
        if allowed:
            status["reason"] = f'RBAC: allowed by {who.binding} to User "{who.user}"'
        return JSONResponse({
            "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status,
        }, 201)  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        if code == 405:
            err = KubeError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        else:
            err = KubeError(404, "NotFound", "the server could not find the requested resource", {})
        return _status(err)

    apps = "/apis/apps/v1/namespaces/{ns}/deployments"
    rrs = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{RR_PLURAL}"
    routes = [
        Route("/version", handler(version), methods=["GET"]),
        Route("/api/v1/namespaces/{name}", handler(namespace), methods=["GET"]),
        Route(apps, handler(deployments), methods=["GET", "POST", "DELETE"]),
        Route(apps + "/{name}", handler(deployment), methods=["GET", "DELETE"]),
        Route(rrs, handler(remediations), methods=["GET"]),
        Route(rrs + "/{name}", handler(remediation), methods=["GET"]),
        Route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            handler(access_review),
            methods=["POST"],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.cluster = cluster
    return app


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _watch(cluster: Cluster, ns: str, q: Any) -> Response:
    """A watch: ``ADDED`` for what exists when no resourceVersion (or ``0``) is given, then
    every event after it, until ``timeoutSeconds``; a BOOKMARK at the end when asked."""
    reqs = parse_label_selector(q.get("labelSelector"))
    terms = parse_field_selector(q.get("fieldSelector"), RR_FIELDS)
    raw_rv = q.get("resourceVersion") or ""
    try:
        since = int(raw_rv) if raw_rv not in ("", "0") else None
    except ValueError:
        raise bad_request(f"invalid resource version: {raw_rv!r}") from None
    try:
        timeout = float(q.get("timeoutSeconds") or WATCH_DEFAULT_S)
    except ValueError:
        raise bad_request("timeoutSeconds must be a number") from None
    bookmarks = _flag(q.get("allowWatchBookmarks"))

    def wanted(obj: dict[str, Any]) -> bool:
        return labels_match(reqs, obj["metadata"].get("labels")) and fields_match(terms, obj)

    async def stream() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + max(0.0, timeout)
        with cluster.lock:
            generation = cluster.generation
            if since is None:
                doc = cluster.list_rrs(ns)
                position = int(doc["metadata"]["resourceVersion"])
                initial = [obj for obj in doc["items"] if wanted(obj)]
            else:
                position, initial = since, []
        for obj in initial:
            yield _line("ADDED", obj)
        seen = position
        while True:
            try:
                events, seen = cluster.rr_events_since(position, ns, generation)
            except KubeError as err:
                yield _line("ERROR", err.status())
                return
            for rv, kind, obj in events:
                position = rv
                if wanted(obj):
                    yield _line(kind, obj)
            if time.monotonic() >= deadline or cluster.closing.is_set():
                break
            await asyncio.sleep(WATCH_POLL_S)
        if bookmarks:  # every event of the namespace up to ``seen`` was delivered
            yield _line(
                "BOOKMARK",
                {
                    "apiVersion": RR_API_VERSION,
                    "kind": RR_KIND,
                    "metadata": {"resourceVersion": str(seen)},
                },
            )

    return StreamingResponse(stream(), media_type="application/json")
