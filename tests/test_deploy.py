"""The manifests of ``deploy/`` grant exactly what ``kubetest check`` asks for.

``kubetest check`` asks the API server one SelfSubjectAccessReview per entry of
``kubetest.rbac.required_permissions``; these tests read every manifest with PyYAML and
check each of those permissions is granted to the ServiceAccount the manifests create, in
the namespace asked, and that no manifest grants more — so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetest import rbac
from kubetest.params import MANAGED_LABEL, parse_params

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / rbac.DEPLOY_DIR
SA = {"kind": "ServiceAccount", "name": rbac.SERVICE_ACCOUNT, "namespace": rbac.TEST_NAMESPACE}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("#"), f"{path.name}: say what it is for in a comment first"
        docs += [
            d | {"_file": f"{rbac.DEPLOY_DIR}/{path.name}"} for d in yaml.safe_load_all(text) if d
        ]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def grants() -> set[tuple[str, str, str, str | None, str]]:
    """(verb, group, resource, namespace or None, file) the manifests give kubetest's SA."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in documents() if d["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    out = set()
    for b in of_kind("RoleBinding") + of_kind("ClusterRoleBinding"):
        if SA not in b["subjects"]:
            continue
        ns = b["metadata"].get("namespace")  # a ClusterRoleBinding: cluster-wide
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            continue  # a role of the chart's (the gateway's grant): checked on its own
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    out |= {(v, group, res, ns, b["_file"]) for v in rule["verbs"]}
    return out


def params(workloads: dict[str, Any]) -> Any:
    return parse_params(
        {
            "target": {"url": "http://gw:8080", "api": "kubernaut"},
            "environment": {"kubeconfig": "/dev/null"},
            "alerts": {"namespace": rbac.TEST_NAMESPACE, "workloads": workloads},
            "remediation": {"namespace": rbac.DEFAULT_CONTROLLER_NAMESPACE},
        }
    )


@pytest.mark.parametrize("workloads", [{"create": 5}, {"selector": "app=checkout"}])
def test_every_permission_kubetest_checks_is_granted_by_its_manifest(
    workloads: dict[str, Any],
) -> None:
    given = grants()
    for p in rbac.required_permissions(params(workloads)).permissions:
        assert (p.verb, p.group, p.resource, p.namespace, p.manifest) in given, (
            f"{p.manifest} does not grant {p.verb} {p.qualified} {p.where}"
        )


def test_the_manifests_grant_nothing_kubetest_does_not_check() -> None:
    asked = {
        (p.verb, p.group, p.resource, p.namespace, p.manifest)
        for p in rbac.required_permissions(params({"create": 1})).permissions
    }
    assert grants() == asked


def test_the_gateway_grant_is_the_charts_clusterrole_in_the_controller_namespace() -> None:
    [binding] = [
        b for b in of_kind("RoleBinding") if b["roleRef"]["name"] == rbac.SIGNAL_SOURCE_CLUSTER_ROLE
    ]
    assert binding["_file"] == rbac.MANIFEST_SIGNAL_SOURCE
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["metadata"]["namespace"] == rbac.DEFAULT_CONTROLLER_NAMESPACE
    assert binding["subjects"] == [SA]  # the ServiceAccount itself: no group
    text = (ROOT / rbac.MANIFEST_SIGNAL_SOURCE).read_text()
    assert rbac.SIGNAL_SOURCES_VALUE.rsplit(".", 1)[1] + ":" in text  # the Helm alternative
    for word in (rbac.GATEWAY_VERB, rbac.GATEWAY_RESOURCE, rbac.GATEWAY_RESOURCE_NAME):
        assert f'"{word}"' in text


def test_the_namespace_and_service_account_are_the_ones_the_bindings_name() -> None:
    [ns] = of_kind("Namespace")
    assert ns["_file"] == rbac.MANIFEST_NAMESPACE
    assert ns["metadata"] == {"name": rbac.TEST_NAMESPACE, "labels": {MANAGED_LABEL: "true"}}
    [sa] = of_kind("ServiceAccount")
    assert sa["_file"] == rbac.MANIFEST_SERVICE_ACCOUNT
    assert {"kind": "ServiceAccount", **sa["metadata"]} == SA
    files = {p.manifest for p in rbac.required_permissions(params({"create": 1})).permissions}
    assert files | {rbac.MANIFEST_NAMESPACE, rbac.MANIFEST_SERVICE_ACCOUNT,
                    rbac.MANIFEST_SIGNAL_SOURCE} == {d["_file"] for d in documents()}  # fmt: skip
