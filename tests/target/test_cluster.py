"""The reference target's own cluster and its Kubernetes API, through the official client.

The cluster's clock is a fake one where phases matter (no test waits on wall time); the
kube API is served on a loopback socket this test starts (uvicorn in a thread), so the
``kubernetes`` client talks HTTP to it exactly as to an API server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgi_apps import FakeClock, ThreadedServer
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from kubetest.errors import KubeError
from kubetest.target.cluster import MANAGED_LABEL, Cluster
from kubetest.target.kube_api import create_kube_app
from kubetest.target.kube_rules import (
    RR_PLURAL,
    kubetest_identity,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    rfc3339,
    signal_source_identity,
)
from kubetest.target.model import TargetConfig

TOKEN = "kube-test-token-0123456789"
GROUP, VERSION = "kubernaut.ai", "v1alpha1"
CONFIG = TargetConfig(api="kubernaut", seed=7, remediation_phase_s=(1.0, 2.0, 3.0, 4.0))


def api_client(url: str, token: str = TOKEN) -> k8s.ApiClient:
    conf = k8s.Configuration(host=url, api_key={"authorization": "Bearer " + token})
    return k8s.ApiClient(conf)


def deployment(name: str, labels: dict[str, str] | None = None, replicas: int = 0) -> Any:
    pod_labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels={**pod_labels, **(labels or {})}),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=pod_labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=pod_labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="pause")]),
            ),
        ),
    )


def rr_body(name: str, fingerprint: str, ns: str = "kubernaut-system") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"signalFingerprint": fingerprint, "signalName": "HighCPU",
                     "signalLabels": {"kubetest_run": "r1"}}}  # fmt: skip


@pytest.fixture
def served() -> Iterator[tuple[Cluster, str]]:
    cfg = TargetConfig(
        api="kubernaut",
        seed=3,
        kube_denied=("delete:deployments",),
        managed_namespaces=("shop",),
        remediation_phase_s=(0.01, 0.01, 0.01, 0.01),
    )
    cluster = Cluster(cfg)
    cluster.add_token(TOKEN, kubetest_identity(cfg.kube_denied))
    cluster.add_token("signal-token", signal_source_identity(cfg.controller_namespace))
    with ThreadedServer(create_kube_app(cluster)) as server:
        yield cluster, server.url


# ---------------------------------------------------------------- selectors


def test_label_selectors_parse_and_match() -> None:
    labels = {"app": "web", "tier": "front", "kubernaut.ai/managed": "true"}
    cases = {
        "app=web": True, "app==web": True, "app!=web": False, "app": True, "!app": False,
        "missing": False, "!missing": True, "app=web,tier=front": True,
        "app=web,tier=back": False, "tier in (back,front)": True, "tier notin (front)": False,
        "kubernaut.ai/managed=true,app in (x,web)": True, "missing!=x": True, "": True,
    }  # fmt: skip
    for text, expected in cases.items():
        assert labels_match(parse_label_selector(text), labels) is expected, text
    for bad in ("app=we b", "a,,b", "=x", "app=" + "x" * 64):
        with pytest.raises(KubeError) as err:
            parse_label_selector(bad)
        assert err.value.code == 400


def test_field_selectors_name_their_unsupported_field() -> None:
    fields = ("metadata.name", "spec.signalFingerprint")
    assert parse_field_selector("spec.signalFingerprint=abc,metadata.name!=x", fields) == (
        ("spec.signalFingerprint", True, "abc"),
        ("metadata.name", False, "x"),
    )
    with pytest.raises(KubeError) as err:
        parse_field_selector("spec.severity=critical", fields)
    assert (err.value.code, err.value.message) == (400, "field label not supported: spec.severity")


# ---------------------------------------------------------------- the orchestrator


def _phases_seen(cluster: Cluster, name: str) -> list[str]:
    out: list[str] = []
    for _, _, obj in cluster.events:
        phase = (obj.get("status") or {}).get("overallPhase")
        if obj["metadata"]["name"] == name and phase and (not out or out[-1] != phase):
            out.append(phase)
    return out


def test_remediation_walks_its_phases_with_ordered_timestamps() -> None:
    clock = FakeClock()
    acted: list[tuple[Any, str, str | None]] = []
    cluster = Cluster(CONFIG, clock=clock, on_action=lambda *a: acted.append(a))
    created = cluster.create_rr(rr_body("rr-abc-1", "f" * 64), context="alert-1")
    assert "status" not in created  # a status subresource: dropped on create
    assert created["metadata"]["creationTimestamp"] == rfc3339(clock.t)
    clock.t += 0.3  # inside Processing (from 0.05 s, lasting 0.5x..1.5x its 1 s mean)
    assert cluster.get_rr("kubernaut-system", "rr-abc-1")["status"]["overallPhase"] == "Processing"
    assert acted == []
    clock.t += 100
    rr = cluster.get_rr("kubernaut-system", "rr-abc-1")
    status = rr["status"]
    assert status["overallPhase"] == "Completed"
    assert status["completionStatus"] == {"outcome": "Remediated"}
    progress = status["phaseProgress"]
    stamps = [status["startTime"], progress["processingStartTime"],
              progress["analyzingStartTime"], progress["executingStartTime"],
              status["completedAt"]]  # fmt: skip
    assert stamps == sorted(stamps) and all(s.endswith("Z") and len(s) == 20 for s in stamps)
    walked = ["Pending", "Processing", "Analyzing", "Executing", "Verifying", "Completed"]
    assert _phases_seen(cluster, "rr-abc-1") == walked
    assert acted == [("alert-1", "rr-abc-1", None)]  # once, at Executing


def test_failures_and_blocks_follow_the_orchestrator() -> None:
    clock = FakeClock()
    acted: list[tuple[Any, str, str | None]] = []
    failing = TargetConfig(api="kubernaut", seed=1, remediation_fail_rate=1.0)
    cluster = Cluster(failing, clock=clock, on_action=lambda *a: acted.append(a))
    cluster.create_rr(rr_body("rr-fail", "a" * 64))
    cluster.advance(clock.t + 60)
    status = cluster.get_rr("kubernaut-system", "rr-fail")["status"]
    assert status["overallPhase"] == "Failed"
    assert status["completionStatus"]["failurePhase"] == "WorkflowExecution"
    assert "completedAt" in status and acted[0][2] and "remediation_fail_rate" in acted[0][2]
    assert _phases_seen(cluster, "rr-fail")[-2:] == ["Executing", "Failed"]

    # Blocked and failing: a time-based block, Failed (failurePhase Blocked) when it expires
    blocked = TargetConfig(
        api="kubernaut", seed=1, blocked_rate=1.0, blocked_s=30.0, remediation_fail_rate=1.0
    )
    cluster = Cluster(blocked, clock=clock, on_action=lambda *a: acted.append(a))
    cluster.create_rr(rr_body("rr-cool", "b" * 64))
    cluster.advance(clock.t + 10)
    status = cluster.get_rr("kubernaut-system", "rr-cool")["status"]
    assert status["overallPhase"] == "Blocked"  # not terminal: the gateway deduplicates
    assert status["routingStatus"]["blockReason"] == "ConsecutiveFailures"
    assert status["routingStatus"]["blockedUntil"] > status["startTime"]
    cluster.advance(clock.t + 40)
    status = cluster.get_rr("kubernaut-system", "rr-cool")["status"]
    assert (status["overallPhase"], status["completionStatus"]["failurePhase"]) == (
        "Failed",
        "Blocked",
    )
    assert acted[-1][1:] == (
        "rr-cool",
        "blocked: cooldown expired after blocking due to ConsecutiveFailures",
    )

    # Blocked, not failing: an event-based block, then back to Analyzing and on
    resumes = TargetConfig(api="kubernaut", seed=1, blocked_rate=1.0, blocked_s=30.0)
    cluster = Cluster(resumes, clock=clock)
    cluster.create_rr(rr_body("rr-busy", "c" * 64))
    cluster.advance(clock.t + 200)
    assert _phases_seen(cluster, "rr-busy") == [
        "Pending", "Processing", "Analyzing", "Blocked", "Analyzing", "Executing",
        "Verifying", "Completed"]  # fmt: skip
    assert "routingStatus" not in cluster.get_rr("kubernaut-system", "rr-busy")["status"]


def test_phase_durations_are_reproducible_with_a_seed() -> None:
    def timeline(seed: int) -> list[str]:
        clock = FakeClock()
        cluster = Cluster(TargetConfig(api="kubernaut", seed=seed), clock=clock)
        for i in range(3):
            cluster.create_rr(rr_body(f"rr-{i}", f"{i:064x}"))
        cluster.advance(clock.t + 100)
        return [json.dumps(o["status"]["phaseProgress"]) for o in cluster.rrs.values()]

    assert timeline(5) == timeline(5)


def test_event_log_is_bounded_and_compaction_expires_old_versions() -> None:
    clock = FakeClock()
    cluster = Cluster(CONFIG, clock=clock, event_log_max=5)
    for i in range(4):
        cluster.create_rr(rr_body(f"rr-{i}", f"{i:064x}"))
    cluster.advance()  # each one's Pending: 8 events, 5 kept
    with pytest.raises(KubeError) as err:
        cluster.rr_events_since(0, "kubernaut-system")
    assert err.value.code == 410 and err.value.reason == "Expired"
    events, rv = cluster.rr_events_since(cluster.rv - 2, "kubernaut-system")
    assert [e[0] for e in events] == [cluster.rv - 1, cluster.rv] and rv == cluster.rv
    cluster.compact()
    with pytest.raises(KubeError):
        cluster.rr_events_since(cluster.rv - 1, "kubernaut-system")


# ---------------------------------------------------------------- the API, by the client


def _error(exc: pytest.ExceptionInfo[k8s.ApiException]) -> dict[str, Any]:
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body


def test_deployments_through_the_kubernetes_client(served: tuple[Cluster, str]) -> None:
    cluster, url = served
    apps = k8s.AppsV1Api(api_client(url))
    made = apps.create_namespaced_deployment("shop", deployment("web", {MANAGED_LABEL: "true"}))
    assert made.metadata.namespace == "shop" and made.spec.replicas == 0
    assert made.metadata.uid and made.metadata.resource_version
    apps.create_namespaced_deployment("shop", deployment("api", replicas=2))
    apps.create_namespaced_deployment("test-workloads", deployment("other"))
    assert apps.read_namespaced_deployment("api", "shop").status.ready_replicas == 2

    with pytest.raises(k8s.ApiException) as dup:
        apps.create_namespaced_deployment("shop", deployment("web"))
    assert _error(dup)["reason"] == "AlreadyExists" and dup.value.status == 409
    with pytest.raises(k8s.ApiException) as nons:
        apps.create_namespaced_deployment("nowhere", deployment("web"))
    assert _error(nons)["message"] == 'namespaces "nowhere" not found'
    with pytest.raises(k8s.ApiException) as missing:
        apps.read_namespaced_deployment("ghost", "shop")
    assert _error(missing)["message"] == 'deployments.apps "ghost" not found'

    managed = apps.list_namespaced_deployment("shop", label_selector=MANAGED_LABEL + "=true")
    assert [d.metadata.name for d in managed.items] == ["web"]
    assert [d.metadata.name for d in apps.list_namespaced_deployment("shop").items] == [
        "api",
        "web",
    ]
    # kube_denied takes delete away, in the API and in an access review alike
    with pytest.raises(k8s.ApiException) as denied:
        apps.delete_namespaced_deployment("web", "shop")
    body = _error(denied)
    assert body["reason"] == "Forbidden" and body["message"] == (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:kubetest:kubetest" '
        'cannot delete resource "deployments" in API group "apps" in the namespace "shop"'
    )
    gone = apps.delete_collection_namespaced_deployment("shop", label_selector="app=web")
    assert gone.kind == "DeploymentList"
    assert [d.metadata.name for d in apps.list_namespaced_deployment("shop").items] == ["api"]
    assert cluster.deployment_labels("test-workloads", "other") == {"app": "other"}


def test_access_reviews_honour_the_grants(served: tuple[Cluster, str]) -> None:
    _, url = served

    def allowed(verb: str, resource: str, group: str, token: str = TOKEN, **kw: str) -> bool:
        review = k8s.V1SelfSubjectAccessReview(spec=k8s.V1SelfSubjectAccessReviewSpec(
            resource_attributes=k8s.V1ResourceAttributes(
                verb=verb, resource=resource, group=group, **kw)))  # fmt: skip
        api = k8s.AuthorizationV1Api(api_client(url, token))
        return api.create_self_subject_access_review(review).status.allowed

    assert allowed("create", "deployments", "apps", namespace="shop")
    assert allowed("deletecollection", "deployments", "apps", namespace="shop")
    assert not allowed("delete", "deployments", "apps", namespace="shop")  # kube_denied
    assert allowed("watch", RR_PLURAL, GROUP, namespace="kubernaut-system")
    assert not allowed("create", RR_PLURAL, GROUP, namespace="kubernaut-system")
    # the signal source may create services/gateway-service in the controller namespace only
    assert allowed("create", "services", "", "signal-token", namespace="kubernaut-system",
                   name="gateway-service")  # fmt: skip
    assert not allowed(
        "create", "services", "", "signal-token", namespace="shop", name="gateway-service"
    )
    assert not allowed("list", "deployments", "apps", "signal-token", namespace="shop")


def test_unknown_token_is_401_and_unknown_path_404(served: tuple[Cluster, str]) -> None:
    _, url = served
    with pytest.raises(k8s.ApiException) as err:
        k8s.CoreV1Api(api_client(url, "stranger")).read_namespace("shop")
    assert err.value.status == 401 and _error(err)["reason"] == "Unauthorized"
    core = k8s.CoreV1Api(api_client(url))
    assert core.read_namespace("shop").metadata.labels[MANAGED_LABEL] == "true"
    with pytest.raises(k8s.ApiException) as nons:
        core.read_namespace("nowhere")
    assert nons.value.status == 404
    assert k8s.VersionApi(api_client(url)).get_code().git_version.startswith("v1.")
    with pytest.raises(k8s.ApiException) as err:
        core.list_namespaced_pod("shop")
    assert err.value.status == 404 and _error(err)["reason"] == "NotFound"


def test_remediation_requests_list_get_and_watch(served: tuple[Cluster, str]) -> None:
    cluster, url = served
    custom = k8s.CustomObjectsApi(api_client(url))
    ns = "kubernaut-system"
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, RR_PLURAL)
    start_rv = listed["metadata"]["resourceVersion"]
    assert listed["items"] == []
    cluster.create_rr(rr_body("rr-aaaaaaaaaaaa-00000001", "a" * 64))
    cluster.create_rr(rr_body("rr-bbbbbbbbbbbb-00000002", "b" * 64))

    by_fp = custom.list_namespaced_custom_object(
        GROUP, VERSION, ns, RR_PLURAL, field_selector="spec.signalFingerprint=" + "b" * 64
    )
    assert [o["metadata"]["name"] for o in by_fp["items"]] == ["rr-bbbbbbbbbbbb-00000002"]
    with pytest.raises(k8s.ApiException) as err:
        custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, RR_PLURAL, field_selector="status.overallPhase=Completed"
        )
    assert err.value.status == 400 and "field label not supported" in _error(err)["message"]
    one = custom.get_namespaced_custom_object(
        GROUP, VERSION, ns, RR_PLURAL, "rr-aaaaaaaaaaaa-00000001"
    )
    assert one["spec"]["signalLabels"] == {"kubetest_run": "r1"}

    # a watch from the list's version sees both walk to Completed (the phases are 10 ms)
    phases: dict[str, str] = {}
    w = k8s_watch.Watch()
    for event in w.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        RR_PLURAL,
        resource_version=start_rv,
        timeout_seconds=10,
    ):
        obj = event["object"]
        phases[obj["metadata"]["name"]] = (obj.get("status") or {}).get("overallPhase", "")
        if len(phases) == 2 and set(phases.values()) == {"Completed"}:
            w.stop()
    assert set(phases.values()) == {"Completed"}

    # compacted: a watch from the old version gets an ERROR event with a 410 Status
    cluster.compact()
    resp = custom.list_namespaced_custom_object(
        GROUP, VERSION, ns, RR_PLURAL, watch=True, resource_version=start_rv,
        timeout_seconds=5, allow_watch_bookmarks=True, _preload_content=False)  # fmt: skip
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert lines[0]["type"] == "ERROR"
    assert (lines[0]["object"]["code"], lines[0]["object"]["reason"]) == (410, "Expired")


def test_watch_without_version_starts_with_what_exists_and_ends_with_a_bookmark(
    served: tuple[Cluster, str],
) -> None:
    cluster, url = served
    cluster.create_rr(rr_body("rr-cccccccccccc-00000003", "c" * 64))
    cluster.advance(time.time() + 60)
    custom = k8s.CustomObjectsApi(api_client(url))
    resp = custom.list_namespaced_custom_object(
        GROUP, VERSION, "kubernaut-system", RR_PLURAL, watch=True, timeout_seconds=0,
        allow_watch_bookmarks=True, _preload_content=False)  # fmt: skip
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[0]["object"]["status"]["overallPhase"] == "Completed"
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(cluster.rv)
