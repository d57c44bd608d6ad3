"""Who may do what: the Kubernaut gateway's grant for signal senders, and kubetest's own.

The gateway (jordigilh/kubernaut at d5a4a870967312d98dbc302ac2ae3505087bfcb0) checks every
request twice (``pkg/shared/auth/middleware.go``): a TokenReview of the bearer token (401
``Invalid or expired token`` when the API server does not authenticate it), then a
SubjectAccessReview for the token's user — verb ``create`` on ``services``, name
``gateway-service``, in the controller namespace (``newAuthMiddleware`` in
``pkg/gateway/server_constructors.go``; 403 ``Insufficient permissions``). That review names
the user only, not its groups (``pkg/shared/auth/k8s_auth.go``), so a binding to a group
does not count. The Helm chart grants it through the ClusterRole ``gateway-signal-source``
(``charts/kubernaut/templates/rbac/gateway-signal-source-rbac.yaml``), bound to each
subject listed in the value ``gateway.auth.signalSources`` (``charts/kubernaut/values.yaml``).

kubetest's own needs, asked of the API server with SelfSubjectAccessReviews by ``kubetest
check`` and granted by the manifests in ``deploy/``, are ``required_permissions``: one
list, so the check and the manifests cannot drift (a test holds them together).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The gateway's SubjectAccessReview (``newAuthMiddleware``, server_constructors.go).
GATEWAY_VERB, GATEWAY_RESOURCE, GATEWAY_RESOURCE_NAME = "create", "services", "gateway-service"
#: The chart's ClusterRole holding that grant, and the value that binds subjects to it.
SIGNAL_SOURCE_CLUSTER_ROLE = "gateway-signal-source"
SIGNAL_SOURCES_VALUE = "gateway.auth.signalSources"
#: The chart installs into the release namespace; its README uses this one.
DEFAULT_CONTROLLER_NAMESPACE = "kubernaut-system"

#: The manifests of ``deploy/`` (``kubectl apply -f deploy/``) and the names in them.
DEPLOY_DIR = "deploy"
MANIFEST_NAMESPACE = "deploy/00-namespace.yaml"
MANIFEST_SERVICE_ACCOUNT = "deploy/01-serviceaccount.yaml"
MANIFEST_SIGNAL_SOURCE = "deploy/02-gateway-signal-source.yaml"
MANIFEST_WORKLOADS = "deploy/03-workloads-role.yaml"
MANIFEST_REMEDIATIONS = "deploy/04-remediationrequests-role.yaml"
MANIFEST_NAMESPACE_READER = "deploy/05-namespace-reader.yaml"
SERVICE_ACCOUNT = "kubetest"
TEST_NAMESPACE = "test-workloads"


@dataclass(frozen=True)
class Permission:
    """One thing kubetest must be allowed to do (``namespace`` None: cluster-wide)."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    why: str
    manifest: str
    #: the manifest's namespace (the params may name another one: edit it then)
    manifest_namespace: str | None = None

    @property
    def qualified(self) -> str:
        """``deployments.apps``, ``remediationrequests.kubernaut.ai``, ``namespaces``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def where(self) -> str:
        return f"in namespace {self.namespace}" if self.namespace else "cluster-wide"

    def fix(self) -> str:
        how = f"kubectl apply -f {self.manifest}"
        if self.manifest_namespace and self.namespace != self.manifest_namespace:
            how += f" (with its namespace {self.manifest_namespace} changed to {self.namespace})"
        return how + "; it binds the ServiceAccount kubetest: add your kubeconfig's user to "
        "its subjects if kubetest runs as someone else"


@dataclass
class Needs:
    """What kubetest needs with these params, and what cannot be checked yet (and why)."""

    permissions: list[Permission] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    #: namespaces to exist: name -> (the param naming it, how to make it)
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)


def required_permissions(params: Any) -> Needs:
    """kubetest's needs in the cluster of ``environment.kubeconfig`` (``kubernaut`` profile)."""
    needs = Needs()
    needs.permissions.append(Permission(
        "get", "", "namespaces", None,
        "kubetest check reads whether the namespaces it uses exist",
        MANIFEST_NAMESPACE_READER,
    ))  # fmt: skip
    workloads = params.alerts.workloads
    ns = params.alerts.namespace
    if workloads is not None:
        verbs = ["get", "list"] + (["create", "delete"] if workloads.create else [])
        why = (
            "alerts.workloads.create: kubetest creates the Deployments its alerts name "
            "and deletes them after the run"
            if workloads.create
            else "alerts.workloads.selector: kubetest reads the Deployments its alerts name"
        )
        needs.permissions += [
            Permission(v, "apps", "deployments", ns, why, MANIFEST_WORKLOADS, TEST_NAMESPACE)
            for v in verbs
        ]
        needs.namespaces[ns] = ("alerts.namespace", f"kubectl apply -f {MANIFEST_NAMESPACE}"
                                + ("" if ns == TEST_NAMESPACE else f" (named {ns})"))  # fmt: skip
    rem = params.remediation
    if rem.namespace is None:
        needs.unknown.append(
            f"{rem.plural}.{rem.group} get/list/watch in the controller namespace: "
            "remediation.namespace is not set; it will be learned from the first 201 "
            "(remediationRequestNamespace)"
        )
    else:
        why = (
            "kubetest follows each RemediationRequest to its terminal phase and reconciles "
            "them with what was accepted"
        )
        needs.permissions += [
            Permission(
                v,
                rem.group,
                rem.plural,
                rem.namespace,
                why,
                MANIFEST_REMEDIATIONS,
                DEFAULT_CONTROLLER_NAMESPACE,
            )
            for v in ("get", "list", "watch")
        ]
        needs.namespaces.setdefault(rem.namespace, (
            "remediation.namespace",
            "set remediation.namespace to the namespace Kubernaut runs in (the 201 answers "
            "name it: remediationRequestNamespace)",
        ))  # fmt: skip
    return needs


# -- asking the API server -------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """A SelfSubjectAccessReview's answer (``reason`` as the authorizer gave it)."""

    allowed: bool
    reason: str = ""


def review(api_client: Any, perm: Permission, timeout_s: float) -> Review:
    """``AuthorizationV1Api.create_self_subject_access_review`` for one permission."""
    from kubernetes import client

    attrs = client.V1ResourceAttributes(
        verb=perm.verb, group=perm.group, resource=perm.resource, namespace=perm.namespace
    )
    body = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs)
    )
    out = client.AuthorizationV1Api(api_client).create_self_subject_access_review(
        body, _request_timeout=timeout_s
    )
    status = out.status
    return Review(bool(status and status.allowed), str((status and status.reason) or ""))


def namespace_exists(api_client: Any, name: str, timeout_s: float) -> bool | None:
    """True / False, or None when the answer is neither (no right to read namespaces)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api_client).read_namespace(name, _request_timeout=timeout_s)
    except ApiException as exc:
        return False if exc.status == 404 else None
    return True


# -- the webhook's bearer token ----------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """What a service-account token says about itself (its claims, not verified)."""

    namespace: str
    name: str
    expires: datetime | None = None

    @property
    def subject(self) -> str:
        return f"ServiceAccount {self.namespace}/{self.name}"

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= datetime.now(UTC)


def token_info(token: str) -> TokenInfo | None:
    """The ServiceAccount a Kubernetes-issued JWT names (``sub`` is
    ``system:serviceaccount:<ns>:<name>``), or None for any other token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        kind, _, rest = str(claims.get("sub", "")).partition("system:serviceaccount:")
        ns, _, name = rest.partition(":")
        if kind or not ns or not name:
            return None
        exp = claims.get("exp")
        expires = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
    except (ValueError, TypeError, OverflowError, OSError):
        return None
    return TokenInfo(ns, name, expires)


def token_fix(var: str, info: TokenInfo | None) -> str:
    """How to mint a token the gateway's TokenReview accepts."""
    who = f"{info.name} -n {info.namespace}" if info else "<service-account> -n <namespace>"
    return (
        f"export {var}=$(kubectl create token {who} --duration=4h): from the gateway's "
        "own cluster and without --audience (its TokenReview asks for the API server's "
        "default audience)"
    )


def signal_source_fix(controller_ns: str | None, info: TokenInfo | None) -> str:
    """How to give a token's ServiceAccount the gateway's grant."""
    ns = controller_ns or DEFAULT_CONTROLLER_NAMESPACE
    sa = f"{info.namespace}:{info.name}" if info else f"{TEST_NAMESPACE}:{SERVICE_ACCOUNT}"
    return (
        f"kubectl apply -f {MANIFEST_SIGNAL_SOURCE} (a RoleBinding of ClusterRole "
        f"{SIGNAL_SOURCE_CLUSTER_ROLE} in {ns}), or kubectl -n {ns} create rolebinding "
        f"kubetest-signal-source --clusterrole={SIGNAL_SOURCE_CLUSTER_ROLE} "
        f"--serviceaccount={sa}, or list the ServiceAccount in the Helm value "
        f"{SIGNAL_SOURCES_VALUE} (name, serviceAccount, namespace); bind the "
        "ServiceAccount itself: the gateway's review names the user, not its groups"
    )


def gateway_grant(controller_ns: str | None) -> str:
    """The grant the gateway's SubjectAccessReview asks for, in words."""
    where = (f"namespace {controller_ns}" if controller_ns else
             "the controller namespace (where Kubernaut runs)")  # fmt: skip
    return (
        f"verb {GATEWAY_VERB} on {GATEWAY_RESOURCE}, resourceName {GATEWAY_RESOURCE_NAME}, "
        f"in {where}"
    )
