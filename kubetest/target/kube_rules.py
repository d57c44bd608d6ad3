"""The Kubernetes API's rules, as the reference target's cluster (``cluster``) keeps them
and its HTTP routes (``kube_api``) apply them, modelled on Kubernaut at commit d5a4a87
(2026-08-22) and on the Kubernetes API server's own conventions:

* Object names (RFC 1123) and ``metav1.Time`` (``rfc3339``).
* Refusals as ``Status`` bodies (``KubeError``: ``not_found``, ``bad_request``,
  ``expired``, ``unauthorized``, ``forbidden``).
* Label selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``,
  ``a notin (x)``, comma-joined) and field selectors (``=``, ``==``, ``!=``) on the fields
  the CRD declares selectable (``+kubebuilder:selectablefield`` in
  ``api/remediation/v1alpha1/remediationrequest_types.go``: ``spec.signalFingerprint``,
  ``spec.signalType``, ``spec.severity``, ``spec.clusterID``) plus ``metadata.name`` and
  ``metadata.namespace``; any other field is ``400 field label not supported``.
* Bearer tokens mapped to identities with RBAC-like grants, evaluated alike by the API
  calls and by SelfSubjectAccessReviews.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubetest.errors import KubeError

#: The RemediationRequest CRD: API group, version, plural, kind.
GROUP = "kubernaut.ai"
VERSION = "v1alpha1"
RR_PLURAL = "remediationrequests"
RR_KIND = "RemediationRequest"
RR_API_VERSION = f"{GROUP}/{VERSION}"

#: The kube API's user for kubetest's token, and for the signal source's token.
KUBETEST_USER = "system:serviceaccount:kubetest:kubetest"
SIGNAL_SOURCE_USER = "system:serviceaccount:monitoring:alertmanager"

#: What the gateway's SubjectAccessReview asks of a signal source
#: (``pkg/gateway/server_constructors.go`` ``newAuthMiddleware``).
SIGNAL_GRANT = ("create", "", "services", "gateway-service")

#: Verbs an RBAC rule may name (``kube_denied`` is checked against these).
VERBS: frozenset[str] = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def rfc3339(epoch: float) -> str:
    """``metav1.Time`` as Kubernetes serialises it: RFC 3339, UTC, whole seconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_dns_label(name: str) -> bool:
    """RFC 1123 label (a namespace name): lowercase alphanumerics and '-', <= 63."""
    return len(name) <= 63 and bool(_DNS_LABEL_RE.match(name))


def is_dns_subdomain(name: str) -> bool:
    """RFC 1123 subdomain (most object names): <= 253 characters."""
    return len(name) <= 253 and bool(_NAME_RE.match(name))


# ---------------------------------------------------------------- errors (KubeError: errors.py)


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                     {"name": name, "group": group, "kind": resource} if group
                     else {"name": name, "kind": resource})  # fmt: skip


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def expired(since: int, now: int) -> KubeError:
    return KubeError(410, "Expired", f"too old resource version: {since} ({now})")


def unauthorized() -> KubeError:
    return KubeError(401, "Unauthorized", "Unauthorized")


# ---------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label-selector requirement: ``op`` is ``=``, ``!=``, ``in``, ``notin``,
    ``exists`` or ``!exists``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` is two requirements)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _check_key(key: str, text: str) -> str:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _LABEL_NAME_RE.match(name)
        or (prefix and not is_dns_subdomain(prefix))
    ):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _LABEL_NAME_RE.match(value):
        raise bad_request(f"unable to parse requirement: invalid label value {value!r} in {text!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """A ``labelSelector`` query parameter; ``400 BadRequest`` when it does not parse."""
    if not text or not text.strip():
        return ()
    out = []
    for raw in _split_top(text):
        part = raw.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {text!r}")
        if m := _SET_RE.match(part):
            values = tuple(_check_value(v.strip(), text) for v in m.group(3).split(","))
            out.append(Requirement(_check_key(m.group(1), text), m.group(2), values))
            continue
        for op, name in (("!=", "!="), ("==", "="), ("=", "=")):
            if op in part:
                key, _, value = part.partition(op)
                out.append(Requirement(_check_key(key.strip(), text), name,
                                       (_check_value(value.strip(), text),)))  # fmt: skip
                break
        else:
            if part.startswith("!"):
                out.append(Requirement(_check_key(part[1:].strip(), text), "!exists"))
            else:
                out.append(Requirement(_check_key(part, text), "exists"))
    return tuple(out)


def labels_match(reqs: Iterable[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def parse_field_selector(
    text: str | None, supported: Iterable[str]
) -> tuple[tuple[str, bool, str], ...]:
    """A ``fieldSelector``: ``(path, equal, value)`` terms; ``400`` for a field the
    resource does not declare selectable (the API server's ``field label not supported``,
    which ``phase_checker.go`` falls back on)."""
    if not text or not text.strip():
        return ()
    allowed = set(supported)
    out = []
    for raw in text.split(","):
        part = raw.strip()
        for op in ("!=", "==", "="):
            if op in part:
                path, _, value = part.partition(op)
                path = path.strip()
                if path not in allowed:
                    raise bad_request(f"field label not supported: {path}")
                out.append((path, op != "!=", value.strip()))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    return tuple(out)


def _field(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for step in path.split("."):
        node = node.get(step) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def fields_match(terms: Iterable[tuple[str, bool, str]], obj: dict[str, Any]) -> bool:
    return all((_field(obj, path) == value) == equal for path, equal, value in terms)


#: Selectable fields per resource (metadata ones for every resource).
RR_FIELDS = ("metadata.name", "metadata.namespace", "spec.signalFingerprint",
             "spec.signalType", "spec.severity", "spec.clusterID")  # fmt: skip
DEPLOYMENT_FIELDS = ("metadata.name", "metadata.namespace")


# ---------------------------------------------------------------- identities


@dataclass(frozen=True, slots=True)
class Rule:
    """An RBAC-like grant: ``verbs`` on ``group``/``resource``, in ``namespace`` (None: any)
    and for ``names`` (empty: any)."""

    verbs: frozenset[str]
    group: str
    resource: str
    namespace: str | None = None
    names: frozenset[str] = frozenset()

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        return (
            verb in self.verbs
            and group == self.group
            and resource == self.resource
            and (self.namespace is None or namespace == self.namespace)
            and (not self.names or name in self.names)
        )


@dataclass(frozen=True)
class Identity:
    """Who a token is, what it may do, and which ``verb:resource`` pairs are taken away."""

    user: str
    rules: tuple[Rule, ...]
    denied: frozenset[tuple[str, str]] = frozenset()
    binding: str = ""  # named in an allowed SSAR's reason, as RBAC does

    def allows(
        self, verb: str, group: str, resource: str, namespace: str = "", name: str = ""
    ) -> bool:
        if (verb, resource) in self.denied:
            return False
        return any(r.allows(verb, group, resource, namespace, name) for r in self.rules)


def kubetest_identity(denied: Iterable[str] = ()) -> Identity:
    """kubetest's service account: Deployments (any verb), namespaces (get, list) and
    RemediationRequests (get, list, watch) in every namespace, minus ``denied``."""
    pairs = frozenset(tuple(d.split(":", 1)) for d in denied)
    return Identity(
        KUBETEST_USER,
        (
            Rule(VERBS, "apps", "deployments"),
            Rule(frozenset({"get", "list"}), "", "namespaces"),
            Rule(frozenset({"get", "list", "watch"}), GROUP, RR_PLURAL),
        ),
        pairs,  # type: ignore[arg-type]
        binding='ClusterRoleBinding "kubetest" of ClusterRole "kubetest"',
    )


def signal_source_identity(controller_namespace: str) -> Identity:
    """A sender bound to the Helm chart's ``gateway-signal-source`` ClusterRole: create
    on ``services/gateway-service`` in the controller namespace, nothing else."""
    verb, group, resource, name = SIGNAL_GRANT
    return Identity(
        SIGNAL_SOURCE_USER,
        (Rule(frozenset({verb}), group, resource, controller_namespace, frozenset({name})),),
        binding='RoleBinding "gateway-signal-source" of ClusterRole "gateway-signal-source"',
    )


def forbidden(
    identity: Identity, verb: str, group: str, resource: str, namespace: str, name: str = ""
) -> KubeError:
    """The API server's 403 message: names the user, verb, resource, group, namespace."""
    what = _qualified(resource, group) + (f' "{name}"' if name else "")
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{what} is forbidden: User "{identity.user}" cannot {verb} resource '
        f'"{resource}" in API group "{group}" {where}'
    )
    details: dict[str, Any] = {"group": group, "kind": resource}
    if name:
        details = {"name": name, **details}
    return KubeError(403, "Forbidden", message, details)
