"""Who may do what, against loopback stand-ins only.

kubetest's own rights are asked with SelfSubjectAccessReviews through the official
``kubernetes`` client, against the stand-in API server (``tests/kube_standin.py``); the
gateway's 401/403 and ``/readyz`` come from a stand-in gateway (``tests/fake_gateway.py``)
answering with the real gateway's bodies. Tokens never show in a detail or a fix.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_gateway import FakeGateway
from kube_standin import TOKEN, KubeStandIn

from kubetest import checks, control, endpoints
from kubetest.checks import FAILED, NOT_CONFIGURED, OK, AuthError, check_auth, check_rbac
from kubetest.params import parse_params
from kubetest.rbac import required_permissions, token_info

pytestmark = pytest.mark.timeout(60)

CONTROLLER = "kubernaut-system"


def jwt(sub: str, exp: float | None = None) -> str:
    """An unsigned token shaped like a Kubernetes ServiceAccount JWT (claims only)."""

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    claims: dict[str, Any] = {"sub": sub} | ({"exp": int(exp)} if exp else {})
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def kube_params(kubeconfig: Path | str, *, workloads: dict[str, Any] | None = None,
                namespace: str | None = CONTROLLER, **extra: Any) -> Any:  # fmt: skip
    data: dict[str, Any] = {
        "target": {"url": "http://127.0.0.1:9/", "api": "kubernaut", **extra.pop("target", {})},
        "environment": {"kubeconfig": str(kubeconfig)},
        "remediation": {"namespace": namespace},
        **extra,
    }
    if workloads is not None:
        data["alerts"] = {"namespace": "test-workloads", "workloads": workloads}
    return parse_params(data)


def asked(api: KubeStandIn) -> list[tuple[str, str, str, str | None]]:
    return [
        (a["verb"], a.get("group") or "", a["resource"], a.get("namespace")) for a in api.reviews
    ]


# --------------------------------------------------------------------------- SSAR


def test_every_permission_allowed_is_one_ok_row(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api()
    params = kube_params(api.kubeconfig(tmp_path / "kc"), workloads={"create": 3})
    rows = check_rbac(params)
    assert [r.status for r in rows] == [OK], rows
    assert "8 permissions allowed" in rows[0].detail
    assert "deployments.apps get/list/create/delete in namespace test-workloads" in rows[0].detail
    assert f"remediationrequests.kubernaut.ai get/list/watch in namespace {CONTROLLER}" in (
        rows[0].detail
    )
    # exactly what the params need, asked of the API server through the real client
    want = [
        (p.verb, p.group, p.resource, p.namespace) for p in required_permissions(params).permissions
    ]
    assert asked(api) == want and len(want) == 8
    assert TOKEN not in repr(rows)


def test_each_denied_permission_is_its_own_row_with_the_fix(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    denied = {
        ("delete", "apps", "deployments", "test-workloads"),
        ("watch", "kubernaut.ai", "remediationrequests", CONTROLLER),
    }
    api = kube_api(denied=denied)
    params = kube_params(api.kubeconfig(tmp_path / "kc"), workloads={"create": 3})
    rows = check_rbac(params)
    assert [r.status for r in rows] == [FAILED, FAILED] and all(r.blocking for r in rows)
    delete, watch = rows
    assert delete.detail.startswith("denied: delete deployments.apps in namespace test-workloads")
    assert "deletes them after the run" in delete.detail
    assert delete.fix.startswith("kubectl apply -f deploy/03-workloads-role.yaml")
    assert watch.detail.startswith(
        f"denied: watch remediationrequests.kubernaut.ai in namespace {CONTROLLER}"
    )
    assert watch.fix.startswith("kubectl apply -f deploy/04-remediationrequests-role.yaml")


def test_other_namespaces_say_to_edit_the_manifest(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api(denied={("list", "kubernaut.ai", "remediationrequests", "kn")})
    rows = check_rbac(kube_params(api.kubeconfig(tmp_path / "kc"), namespace="kn"))
    assert len(rows) == 1 and "changed to kn" in rows[0].fix, rows


def test_an_unknown_controller_namespace_is_not_configured(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api()
    params = kube_params(
        api.kubeconfig(tmp_path / "kc"), workloads={"selector": "app=x"}, namespace=None
    )
    rows = check_rbac(params)
    assert [r.status for r in rows] == [OK, NOT_CONFIGURED], rows
    assert "learned from the first 201" in rows[1].detail and not rows[1].blocking
    # a selector only reads; nothing was asked about RemediationRequests
    assert asked(api) == [
        ("get", "", "namespaces", None),
        ("get", "apps", "deployments", "test-workloads"),
        ("list", "apps", "deployments", "test-workloads"),
    ]


def test_a_missing_namespace_is_one_clear_line(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api(missing_namespaces={"test-workloads"})
    params = kube_params(api.kubeconfig(tmp_path / "kc"), workloads={"create": 2})
    rows = check_rbac(params)
    assert [r.status for r in rows] == [FAILED], rows
    assert rows[0].detail == "namespace test-workloads (alerts.namespace) does not exist"
    assert rows[0].fix == "kubectl apply -f deploy/00-namespace.yaml"
    assert not any(ns == "test-workloads" for *_, ns in asked(api))  # no rows about it


def test_rbac_rows_only_for_the_kubernaut_profile_with_a_kubeconfig(tmp_path: Path) -> None:
    assert check_rbac(parse_params({"environment": {"kubeconfig": "/nope"}})) == []
    assert check_rbac(parse_params({"target": {"api": "kubernaut"}})) == []
    gone = check_rbac(kube_params(tmp_path / "nope"))
    assert gone[0].status == FAILED and "does not exist" in gone[0].detail


def test_a_rejected_kubeconfig_token_is_one_failed_row(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api()
    path = api.kubeconfig(tmp_path / "kc")
    path.write_text(path.read_text().replace(TOKEN, "kt-stale-token-0123456789"))
    rows = check_rbac(kube_params(path))
    assert len(rows) == 1 and rows[0].status == FAILED
    assert "401" in rows[0].detail and "kt-stale-token" not in repr(rows)


def test_collect_puts_the_rbac_rows_in_the_table(
    kube_api: Callable[..., KubeStandIn], tmp_path: Path
) -> None:
    api = kube_api(denied={("get", "", "namespaces", None)})
    params = kube_params(
        api.kubeconfig(tmp_path / "kc"), target={"health_url": "http://127.0.0.1:9/readyz"}
    )
    table = checks.checks_table(checks.collect(params, timeout_s=2))
    rbac = table[table["check"] == "rbac"]
    assert list(rbac["status"]) == ["failed"]
    assert "get namespaces cluster-wide" in rbac["detail"].iloc[0]
    assert "05-namespace-reader.yaml" in rbac["fix"].iloc[0]


# --------------------------------------------------------------------------- the webhook


def gateway_params(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch, token: str, **extra: Any
) -> Any:
    monkeypatch.setenv("KT_GW_TOKEN", token)
    return parse_params(
        {"target": {"url": gw.url, "api": "kubernaut", "auth_token_env": "KT_GW_TOKEN"}, **extra}
    )


def test_a_401_is_the_tokenreview_with_how_to_mint_one(
    fake_gateway: Callable[..., FakeGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = fake_gateway(valid={"good-token-0123"}, granted={"good-token-0123"})
    check = check_auth(gateway_params(gw, monkeypatch, "kt-wrong-token-4567"))
    expired = jwt("system:serviceaccount:test-workloads:kubetest", time.time() - 3600)
    old = check_auth(gateway_params(gw, monkeypatch, expired))
    assert check.status == FAILED and checks.is_auth_failure(check)
    assert check.detail.startswith(f"authentication failed: POST {gw.url} answered 401")
    assert "Unauthorized: Invalid or expired token" in check.detail
    assert "not valid for the cluster's TokenReview" in check.detail
    assert "kubectl create token <service-account> -n <namespace>" in check.fix
    assert "ServiceAccount test-workloads/kubetest, expired" in old.detail
    assert "kubectl create token kubetest -n test-workloads" in old.fix
    for c in (check, old):
        assert "kt-wrong-token" not in repr(c) and expired not in repr(c)


def test_a_403_is_the_missing_grant_with_the_fix(
    fake_gateway: Callable[..., FakeGateway], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = jwt("system:serviceaccount:loadgen:kubetest", time.time() + 3600)
    gw = fake_gateway(valid={token}, granted=set())
    params = gateway_params(gw, monkeypatch, token, remediation={"namespace": "kn-ctl"})
    check = check_auth(params)
    with pytest.raises(AuthError) as err:
        checks.preflight_auth(params, gw.url)
    assert check.status == FAILED and check.detail.startswith("authorization failed")
    assert "answered 403 (Forbidden: Insufficient permissions)" in check.detail
    assert (
        "ServiceAccount loadgen/kubetest is authenticated but lacks the gateway's grant "
        "(verb create on services, resourceName gateway-service, in namespace kn-ctl)"
    ) in check.detail
    assert "kubectl apply -f deploy/02-gateway-signal-source.yaml" in check.fix
    assert "--clusterrole=gateway-signal-source --serviceaccount=loadgen:kubetest" in check.fix
    assert "kubectl -n kn-ctl create rolebinding" in check.fix
    assert "gateway.auth.signalSources" in check.fix
    message = str(err.value)
    assert "\n" not in message and message.startswith("authorization failed")
    assert token not in message and token not in repr(check)


def test_a_granted_token_gets_the_probe_400(
    fake_gateway: Callable[..., FakeGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = fake_gateway(valid={"good-token-0123"}, granted={"good-token-0123"})
    ok = check_auth(gateway_params(gw, monkeypatch, "good-token-0123"))
    assert ok.status == OK and "HTTP 400" in ok.detail


def test_token_info_reads_only_service_account_tokens() -> None:
    info = token_info(jwt("system:serviceaccount:ns:sa"))
    assert info is not None and (info.namespace, info.name, info.expired) == ("ns", "sa", False)
    assert token_info(jwt("oidc:alice")) is None
    assert token_info("not-a-jwt") is None and token_info("a.!!!.c") is None


# --------------------------------------------------------------------------- ports


def test_kubernaut_health_and_metrics_default_to_the_gateway_ports() -> None:
    def target(**t: Any) -> Any:
        return parse_params({"target": t}).target

    gw = target(url="https://gw.example:8443", api="kubernaut")
    assert endpoints.health_url(gw) == "http://gw.example:8081/readyz"  # plain HTTP, always
    assert endpoints.metrics_url(gw) == "http://gw.example:9090/metrics"
    v6 = target(url="http://[::1]:8080", api="kubernaut")
    assert endpoints.health_url(v6) == "http://[::1]:8081/readyz"
    other = target(url="http://svc:8080", api="kubernaut-legacy")
    assert endpoints.health_url(other) == "http://svc:8080/health"
    assert endpoints.metrics_url(other) == "http://svc:8080/metrics"
    embedded = target(api="kubernaut")  # serves everything on its one port
    assert endpoints.health_url(embedded, "http://127.0.0.1:5/x") == "http://127.0.0.1:5/health"
    set_ = target(url="http://gw:8080", api="kubernaut", health_url="http://h:1/healthz")
    assert endpoints.health_url(set_) == "http://h:1/healthz"
    assert endpoints.metrics_url(gw, override="http://m:2/metrics") == "http://m:2/metrics"
    with pytest.raises(ValueError):
        endpoints.health_url(embedded)


def test_the_context_uses_the_same_defaults(tmp_path: Path) -> None:
    from kubetest.workbook.context import TestContext

    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({"target": {"url": "http://gw.example:8080", "api": "kubernaut"}}))
    ctx = TestContext.open("A1", str(params), str(tmp_path / "s"))
    assert (ctx.health_url, ctx.metrics_url) == (
        "http://gw.example:8081/readyz",
        "http://gw.example:9090/metrics",
    )


def test_check_probes_readyz_on_8081(monkeypatch: pytest.MonkeyPatch) -> None:
    """No traffic: the probe is intercepted, and the fix says how to reach the port."""
    seen: list[str] = []

    def refuse(url: str, **_: Any) -> Any:
        seen.append(url)
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(control, "get", refuse)  # every control-plane call's door
    row = checks.check_target(
        parse_params({"target": {"url": "http://gw.example:8080", "api": "kubernaut"}})
    )
    assert seen == ["http://gw.example:8081/readyz"]
    assert row.status == FAILED and "port-forward svc/gateway-service 8080 8081 9090" in row.fix


def test_an_unready_gateway_shows_what_is_down_in_one_line(
    fake_gateway: Callable[..., FakeGateway],
) -> None:
    detail = "DataStorage unreachable: dial tcp 10.0.0.7:8080: connect: connection refused"
    gw = fake_gateway(ready_detail=detail)
    params = parse_params(
        {"target": {"url": gw.url, "api": "kubernaut", "health_url": gw.health_url}}
    )
    row = checks.check_target(params)
    assert row.status == FAILED and "\n" not in row.detail
    assert row.detail == (
        f"{gw.health_url}: HTTP 503: Service Unavailable: {detail} (the gateway is not ready)"
    )
    assert "DataStorage" in row.fix


def test_cli_check_prints_each_denied_permission(tmp_path: Path) -> None:
    """``kubetest check`` end to end: rows in the table, exit 1, the check named once."""
    import os
    import subprocess
    import sys

    import yaml

    denied = {
        ("create", "apps", "deployments", "test-workloads"),
        ("delete", "apps", "deployments", "test-workloads"),
    }
    with KubeStandIn(denied=denied) as api, FakeGateway() as gw:
        params = tmp_path / "p.yaml"
        params.write_text(yaml.safe_dump({
            "target": {"url": gw.url, "api": "kubernaut", "health_url": gw.health_url},
            "environment": {"kubeconfig": str(api.kubeconfig(tmp_path / "kc"))},
            "alerts": {"namespace": "test-workloads", "workloads": {"create": 2}},
        }))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "kubetest", "check", "--params", str(params)],
                             capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode == 1, out
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("rbac")]
    assert [ln.split()[1] for ln in lines] == ["failed", "failed", "not"]  # + not configured
    assert "denied: create deployments.apps in namespace test-workloads" in out.stdout
    assert "denied: delete deployments.apps" in out.stdout
    assert out.stderr.strip() == "kubetest check: required check failed: rbac"
    assert TOKEN not in out.stdout + out.stderr
