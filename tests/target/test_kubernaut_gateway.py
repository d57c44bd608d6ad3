"""The reference target's kubernaut and kubernaut-legacy profiles: what each answers.

The kubernaut profile is the current gateway backed by the target's own cluster. Most
tests run it in-process (httpx's ASGI transport, no sockets) with the cluster on a fake
clock, so RemediationRequest phases move only when a test moves the clock; the engine's
classification of each answer is checked beside it, so target and client agree. The last
tests start the child process and reach its four ports and its kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_apps import AppClient, FakeClock
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kubetest.alerts import make_alert, webhook
from kubetest.engine import classify, classify_all, problem_detail
from kubetest.errors import ParamsError
from kubetest.params import parse_params
from kubetest.target import EmbeddedTarget, TargetConfig, create_app
from kubetest.target.app import TargetApps, create_apps
from kubetest.target.cluster import MANAGED_LABEL
from kubetest.target.command import build_parser, child_arguments, config_from_args
from kubetest.target.profiles import signal_fingerprint

SIGNALS = "/api/v1/signals/prometheus"
CONTROLLER = "kubernaut-system"
KUBE_TOKEN = "kube-token-for-tests-0123456789"
KUBERNAUT = TargetConfig(workers=4, service_ms=1.0, service_dist="const", seed=1,
                         api="kubernaut", managed_namespaces=("test-workloads",))  # fmt: skip
LEGACY = TargetConfig(
    workers=4, service_ms=1.0, service_dist="const", seed=1, api="kubernaut-legacy"
)
RR_NAME = re.compile(r"^rr-[0-9a-f]{12}-[0-9a-f]{8}$")


class Gateway:
    """The kubernaut profile in-process: its webhook app, its cluster and a fake clock."""

    def __init__(self, clock: FakeClock | None = None, **overrides: Any) -> None:
        fields = {f: getattr(KUBERNAUT, f) for f in KUBERNAUT.__dataclass_fields__}
        self.clock = clock or FakeClock(time.time())
        self.apps: TargetApps = create_apps(TargetConfig(**(fields | overrides)),
                                            kube_token=KUBE_TOKEN, clock=self.clock)
        self.cluster = self.apps.cluster
        self.client = AppClient(self.apps.webhook)

    def deploy(self, name: str, namespace: str = "test-workloads", **labels: str) -> None:
        self.cluster.create_deployment(namespace, {
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}}}})  # fmt: skip

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        if isinstance(body, bytes):
            return self.client.post(SIGNALS, content=body, **kwargs)
        return self.client.post(SIGNALS, json=body, **kwargs)

    def rrs(self) -> list[dict[str, Any]]:
        return self.cluster.list_rrs(CONTROLLER)["items"]

    def later(self, seconds: float) -> None:
        self.clock.t += seconds
        self.cluster.advance()

    def outcomes(self) -> dict[str, int]:
        return self.client.get("/api/v1/outcomes").json()["outcomes"]

    def metrics(self) -> str:
        assert self.apps.metrics is not None
        with AppClient(self.apps.metrics) as m:
            return m.get("/metrics").text

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__()


def alert_for(deployment: str, seq: int = 1, *, namespace: str = "test-workloads",
              **labels: str) -> dict[str, Any]:  # fmt: skip
    """One alert about ``deployment`` (labels as kubetest sends them, plus ``labels``)."""
    alert = make_alert("high_cpu", seq, namespace=namespace).to_dict()
    alert["labels"].update(deployment=deployment, pod=f"{deployment}-5f7b9c6d4-abcde", **labels)
    return alert


def body_of(*alerts: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    base = webhook([make_alert("high_cpu", 1)])
    base["alerts"] = list(alerts)
    base["commonLabels"] = {}
    return base | envelope


def _problem(resp: httpx.Response, code: int, detail: str, *, instance: str = SIGNALS,
             request_id: bool = True) -> dict[str, Any]:  # fmt: skip
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    doc = resp.json()
    keys = ["type", "title", "detail", "status", "instance"] + (["request_id"] if request_id
                                                                else [])  # fmt: skip
    assert list(doc) == keys
    assert doc["detail"] == detail and doc["status"] == code and doc["instance"] == instance
    assert doc["type"].startswith("https://kubernaut.ai/problems/")
    if request_id:
        assert doc["request_id"] == resp.headers["x-request-id"]
    return doc


# ---------------------------------------------------------------- owner resolution


def test_unknown_resource_is_400_and_creates_nothing() -> None:
    with Gateway() as gw:
        resp = gw.post(body_of(alert_for("ghost")))
        _problem(resp, 400, "Failed to parse batch payload")
        assert gw.rrs() == [] and gw.client.get("/api/v1/actions").json() == []
        assert classify("kubernaut", 400, resp.content) == ("failed", "http_4xx")
        metrics = gw.metrics()
        assert 'gateway_owner_resolution_total{kind="Deployment",outcome="failed"} 1.0' in metrics
        dropped = 'gateway_signals_parse_dropped_total{reason="owner_resolution_failed"} 1.0'
        assert dropped in metrics
        # a pod alone: Pods are not modelled, so it never exists either
        lone = alert_for("x")
        del lone["labels"]["deployment"]
        assert gw.post(body_of(lone)).status_code == 400
        assert gw.outcomes()["failed"] == 2


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"alerts": "one"}',
        b'{"alerts": [{"labels": {"deployment": 7}, "startsAt": "2026-01-01T00:00:00Z"}]}',
        b'{"alerts": [{"startsAt": "yesterday"}]}',
        b'{"truncatedAlerts": true, "alerts": [{"startsAt": "2026-01-01T00:00:00Z"}]}',
    ],
)
def test_a_body_go_would_not_unmarshal_is_400(body: bytes) -> None:
    """``encoding/json`` errors (bad JSON, a wrong type, a time that is not RFC 3339)
    are the adapter's 400, and nothing is created (a body with a readable ``startsAt``
    passes the freshness check first)."""
    with Gateway() as gw:
        resp = gw.post(body)
        _problem(resp, 400, "Failed to parse batch payload")
        assert gw.rrs() == []


def test_fingerprint_is_the_owner_not_the_alertname() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        first = gw.post(body_of(alert_for("web")))
        assert first.status_code == 201, first.text
        fp = first.json()["fingerprint"]
        assert fp == hashlib.sha256(b"test-workloads:Deployment:web").hexdigest()
        assert fp == signal_fingerprint("test-workloads", "Deployment", "web")
        other = alert_for("web", 2)
        other["labels"]["alertname"] = "SomethingElse"  # same owner: same signal
        again = gw.post(body_of(other))
        assert (again.status_code, again.json()["fingerprint"]) == (202, fp)
        assert signal_fingerprint("ns", "Deployment", "web", "east") == hashlib.sha256(
            b"east:ns:Deployment:web").hexdigest()


def test_exported_namespace_wins_and_deployment_beats_pod() -> None:
    with Gateway(managed_namespaces=("shop",)) as gw:
        gw.deploy("cart", "shop")
        alert = alert_for("cart", namespace="monitoring", exported_namespace="shop")
        resp = gw.post(body_of(alert))
        assert resp.status_code == 201, resp.text
        rr = gw.rrs()[0]
        assert rr["spec"]["targetResource"] == {"kind": "Deployment", "name": "cart",
                                                "namespace": "shop"}  # fmt: skip
        assert gw.metrics().count('gateway_owner_resolution_total{kind="Deployment",'
                                  'outcome="success"} 1.0') == 1


def test_commonlabels_cluster_needs_a_fleet_so_it_is_500() -> None:
    """A ``cluster`` common label makes the fingerprint cluster-aware and the local scope
    manager refuse it (no fleet in this stand-in): the handler's 500."""
    with Gateway() as gw:
        gw.deploy("web")
        resp = gw.post(body_of(alert_for("web"), commonLabels={"cluster": "east"}))
        _problem(resp, 500, "Internal server error")
        assert gw.rrs() == []


# ---------------------------------------------------------------- scope and dedup


def test_unmanaged_resource_is_200_rejected() -> None:
    with Gateway(managed_namespaces=()) as gw:
        gw.deploy("web")
        gw.deploy("opted-in", **{MANAGED_LABEL: "true"})
        resp = gw.post(body_of(alert_for("web")))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["status"], body["fingerprint"], body["duplicate"]) == ("rejected", "", False)
        assert body["rejection"]["reason"] == "unmanaged_resource"
        assert body["rejection"]["resource"] == "test-workloads:Deployment:web"
        assert body["rejection"]["action"].endswith(
            "kubectl label -n test-workloads deployment web kubernaut.ai/managed=true")
        assert classify("kubernaut", 200, resp.content) == ("rejected", "")
        # the resource's own label is enough
        assert gw.post(body_of(alert_for("opted-in"))).status_code == 201
        assert 'gateway_signals_rejected_total{reason="unmanaged_resource"} 1.0' in gw.metrics()
        # and it wins over its namespace's
    with Gateway() as gw:
        gw.deploy("web", **{MANAGED_LABEL: "false"})
        assert gw.post(body_of(alert_for("web"))).status_code == 200


def test_one_remediation_request_per_owner_for_its_whole_lifetime() -> None:
    with Gateway(remediation_phase_s=(1.0, 1.0, 1.0, 1.0)) as gw:  # Completed after >= 2.05 s
        gw.deploy("web")
        first = gw.post(body_of(alert_for("web", 1)))
        assert first.status_code == 201, first.text
        created = first.json()
        assert list(created) == ["status", "message", "fingerprint", "duplicate",
                                 "remediationRequestName", "remediationRequestNamespace"]
        assert created["message"] == "RemediationRequest CRD created successfully"
        name = created["remediationRequestName"]
        assert RR_NAME.match(name) and name[3:15] == created["fingerprint"][:12]
        assert created["remediationRequestNamespace"] == CONTROLLER

        seen = []
        for seq, dt in ((2, 0.0), (3, 0.3), (4, 0.7), (5, 0.9)):  # Pending ... Verifying
            gw.later(dt)
            seen.append(gw.cluster.get_rr(CONTROLLER, name)["status"]["overallPhase"])
            resp = gw.post(body_of(alert_for("web", seq)))
            assert resp.status_code == 202, (seen, resp.text)
        dup = resp.json()
        assert dup["remediationRequestName"] == name and dup["duplicate"] is True
        assert dup["message"] == "Duplicate signal (K8s status-based deduplication)"
        assert dup["metadata"]["count"] == 5
        assert dup["metadata"]["remediationRequestRef"] == f"{CONTROLLER}/{name}"
        assert dup["metadata"]["firstOccurrence"] <= dup["metadata"]["lastOccurrence"]
        assert "Processing" in seen and seen[-1] not in ("Completed", "Failed")
        assert classify("kubernaut", 202, resp.content) == ("duplicate", "")
        dedup = gw.cluster.get_rr(CONTROLLER, name)["status"]["deduplication"]
        assert dedup["occurrenceCount"] == 5

        gw.later(10)  # Completed: terminal, so the next alert is a new remediation
        assert gw.cluster.get_rr(CONTROLLER, name)["status"]["overallPhase"] == "Completed"
        again = gw.post(body_of(alert_for("web", 6)))
        assert again.status_code == 201 and again.json()["remediationRequestName"] != name
        assert gw.outcomes() == {"accepted": 2, "duplicate": 4, "rejected": 0, "throttled": 0,
                                 "failed": 0}  # fmt: skip
        metrics = gw.metrics()
        assert 'gateway_signals_deduplicated_total{signal_name="HighCPUUsage"} 4.0' in metrics
        assert ('gateway_crds_created_total{source_type="prometheus",status="created"} 2.0'
                in metrics)


def test_blocked_is_not_terminal_for_dedup() -> None:
    with Gateway(blocked_rate=1.0, blocked_s=30.0) as gw:
        gw.deploy("web")
        name = gw.post(body_of(alert_for("web"))).json()["remediationRequestName"]
        gw.later(5)
        assert gw.cluster.get_rr(CONTROLLER, name)["status"]["overallPhase"] == "Blocked"
        assert gw.post(body_of(alert_for("web", 2))).status_code == 202
        gw.later(60)  # ResourceBusy clears: on to Completed
        assert gw.cluster.get_rr(CONTROLLER, name)["status"]["overallPhase"] == "Completed"
        assert gw.post(body_of(alert_for("web", 3))).status_code == 201


def test_a_failed_remediation_allows_a_new_one_and_records_the_failure() -> None:
    with Gateway(remediation_fail_rate=1.0) as gw:
        gw.deploy("web")
        name = gw.post(body_of(alert_for("web"))).json()["remediationRequestName"]
        gw.later(30)
        status = gw.cluster.get_rr(CONTROLLER, name)["status"]
        assert (status["overallPhase"], status["completionStatus"]["failurePhase"]) == (
            "Failed", "WorkflowExecution")
        history = gw.client.get("/api/v1/actions").json()
        assert [(h["remediation"], h["status"]) for h in history] == [(name, "failed")]
        assert gw.post(body_of(alert_for("web", 2))).status_code == 201


def test_remediation_request_fields_and_phase_timestamps() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        alert = alert_for("web", 7, kubetest_run="run-42")
        sent = gw.post(body_of(alert))
        name = sent.json()["remediationRequestName"]
        rr = gw.cluster.get_rr(CONTROLLER, name)
        meta, spec = rr["metadata"], rr["spec"]
        assert (rr["apiVersion"], rr["kind"]) == ("kubernaut.ai/v1alpha1", "RemediationRequest")
        assert meta["namespace"] == CONTROLLER and meta["labels"] == {
            "app.kubernetes.io/managed-by": "gateway-service",
            "app.kubernetes.io/component": "remediation"}
        assert spec["signalFingerprint"] == sent.json()["fingerprint"]
        assert (spec["signalName"], spec["severity"], spec["signalType"], spec["signalSource"],
                spec["targetType"]) == ("HighCPUUsage", "warning", "alert", "prometheus",
                                        "kubernetes")  # fmt: skip
        assert spec["signalLabels"] == alert["labels"]
        assert spec["signalLabels"]["kubetest_run"] == "run-42"
        assert spec["firingTime"] == alert["startsAt"][:19] + "Z"  # metav1.Time: seconds
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", spec["receivedTime"])
        assert json.loads(spec["providerData"]) == {"labels": alert["labels"],
                                                    "namespace": "test-workloads"}
        assert json.loads(spec["originalPayload"])["alerts"][0]["labels"] == alert["labels"]
        dedup = rr["status"]["deduplication"]
        assert dedup["occurrenceCount"] == 1 and dedup["firstSeenAt"] == dedup["lastSeenAt"]

        gw.later(30)
        status = gw.cluster.get_rr(CONTROLLER, name)["status"]
        progress = status["phaseProgress"]
        stamps = [spec["receivedTime"], status["startTime"], progress["processingStartTime"],
                  progress["analyzingStartTime"], progress["executingStartTime"],
                  status["completedAt"]]  # fmt: skip
        assert stamps == sorted(stamps)
        assert status["completionStatus"]["outcome"] == "Remediated"
        # reaching Executing recorded the action, with the alert's run and seq
        (entry,) = gw.client.get("/api/v1/actions").json()
        assert (entry["remediation"], entry["run"], entry["seq"], entry["status"]) == (
            name, "run-42", 7, "executed")


def test_integrity_faults_show_in_remediation_requests_and_history() -> None:
    with Gateway(duplicate_rate=1.0) as gw:
        gw.deploy("web")
        name = gw.post(body_of(alert_for("web"))).json()["remediationRequestName"]
        assert [o["metadata"]["name"] for o in gw.rrs()] == [name, name + "-dup1"]
        gw.later(30)
        history = gw.client.get("/api/v1/actions").json()
        assert sorted(h["remediation"] for h in history) == [name, name + "-dup1"]
        assert gw.client.get("/api/v1/outcomes").json()["faults"]["duplicated"] == 1
    with Gateway(lose_rate=1.0) as gw:
        gw.deploy("web")
        assert gw.post(body_of(alert_for("web"))).status_code == 201  # answered, never written
        gw.later(30)
        assert gw.rrs() == [] and gw.client.get("/api/v1/actions").json() == []
        assert gw.post(body_of(alert_for("web", 2))).status_code == 201  # nothing to dedup on
        assert gw.client.get("/api/v1/outcomes").json()["faults"]["lost"] == 2


# ---------------------------------------------------------------- several alerts


def test_several_alerts_answer_207_and_dropped_ones_vanish() -> None:
    with Gateway(managed_namespaces=("test-workloads",)) as gw:
        gw.deploy("web")
        gw.deploy("api")
        gw.cluster.add_namespace("elsewhere")
        gw.deploy("other", "elsewhere")
        nameless = alert_for("api", 5)
        del nameless["labels"]["alertname"]
        alerts = [alert_for("web", 1), alert_for("web", 2), alert_for("other", 3,
                  namespace="elsewhere"), alert_for("ghost", 4), nameless]  # fmt: skip
        resp = gw.post(body_of(*alerts))
        assert resp.status_code == 207, resp.text
        body = resp.json()
        assert [r["status"] for r in body["results"]] == [
            "created", "duplicate", "rejected", "rejected"]
        assert body["summary"] == {"total": 4, "created": 1, "deduplicated": 1, "rejected": 2,
                                   "failed": 0}  # fmt: skip
        created, dup, unmanaged, invalid = body["results"]
        assert created == {"status": "created", "fingerprint": created["fingerprint"],
                           "message": "RemediationRequest CRD created successfully"}
        assert "fingerprint" not in unmanaged and unmanaged["message"].startswith(
            "Signal rejected: resource elsewhere:Deployment:other")
        assert invalid["error"] == "Signal validation failed: alertName is required"
        assert classify_all("kubernaut", 207, resp.content) == [
            ("accepted", ""), ("duplicate", ""), ("rejected", ""), ("rejected", "")]
        assert gw.outcomes()["accepted"] == 1 and gw.outcomes()["rejected"] == 2
        # two alerts, one dropped by owner resolution: the single-alert answer, 201
        pair = gw.post(body_of(alert_for("ghost", 6), alert_for("api", 7)))
        assert pair.status_code == 201, pair.text


# ---------------------------------------------------------------- refusals, in order


def test_alertname_is_required_and_a_missing_severity_is_unknown() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        gw.deploy("api")
        nameless = alert_for("web")
        del nameless["labels"]["alertname"]
        _problem(gw.post(body_of(nameless)), 400, "Signal validation failed: alertName is "
                 "required")  # fmt: skip
        assert gw.rrs() == []
        # prometheus_adapter.go: an empty severity becomes "unknown", which validates
        no_severity = alert_for("api")
        del no_severity["labels"]["severity"]
        assert gw.post(body_of(no_severity)).status_code == 201
        assert gw.rrs()[0]["spec"]["severity"] == "unknown"
        assert ('gateway_signals_received_total{severity="unknown",source_type="prometheus"} 1.0'
                in gw.metrics())


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_starts_at_is_required_and_at_most_two_minutes_ahead() -> None:
    now = datetime.now(UTC)
    with Gateway() as gw:
        gw.deploy("web")
        missing = alert_for("web")
        del missing["startsAt"]
        _problem(gw.post(body_of(missing)), 400, "alert payload missing startsAt timestamp",
                 instance="", request_id=False)  # fmt: skip
        zero = alert_for("web")
        zero["startsAt"] = "0001-01-01T00:00:00Z"
        assert gw.post(body_of(zero)).status_code == 400
        ahead = alert_for("web")
        ahead["startsAt"] = _iso(now + timedelta(minutes=3))
        _problem(gw.post(body_of(ahead)), 400, "alert startsAt in future: possible clock skew "
                 "attack", instance="", request_id=False)  # fmt: skip
        soon = alert_for("web")
        soon["startsAt"] = _iso(now + timedelta(minutes=1))
        assert gw.post(body_of(soon)).status_code == 201
        # the newest startsAt counts: one alert with a time is enough
        gw.deploy("api")
        assert gw.post(body_of(missing | {"labels": alert_for("api")["labels"]},
                               alert_for("api", 2))).status_code == 207
        assert gw.rrs() and all(o["spec"]["signalName"] for o in gw.rrs())


def test_x_timestamp_is_checked_instead_of_the_body() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        body = body_of(alert_for("web"))
        old = gw.post(body, headers={"X-Timestamp": str(int(time.time()) - 600)})
        _problem(old, 400, "timestamp too old: possible replay attack", instance="",
                 request_id=False)  # fmt: skip
        bad = gw.post(body, headers={"X-Timestamp": "soon"})
        assert bad.json()["detail"] == "invalid timestamp format"
        future = gw.post(body, headers={"X-Timestamp": str(int(time.time()) + 600)})
        assert future.json()["detail"] == "timestamp in future: possible clock skew attack"
        missing = alert_for("web")
        del missing["startsAt"]  # with the header, the body's times are not read
        ok = gw.post(body_of(missing), headers={"X-Timestamp": str(int(time.time()))})
        assert ok.status_code == 201


def test_content_type_must_be_json() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        raw = json.dumps(body_of(alert_for("web"))).encode()
        text = gw.post(raw, headers={"Content-Type": "text/plain"})
        doc = _problem(text, 415, "Content-Type must be application/json", request_id=False)
        assert doc["title"] == "Unsupported Media Type" and text.headers["accept"] == (
            "application/json")
        bad = gw.post(raw, headers={"Content-Type": "nonsense"})
        _problem(bad, 400, "Invalid Content-Type header format", request_id=False)
        assert gw.post(raw, headers={"Content-Type": "application/json; charset=utf-8"}
                       ).status_code == 201


def test_body_limits_400_above_100_kb_413_above_256_kib() -> None:
    with Gateway() as gw:
        gw.deploy("web")

        def padded(size: int) -> bytes:
            body = body_of(alert_for("web"))
            raw = json.dumps(body).encode()
            body["alerts"][0]["annotations"]["pad"] = "x" * (size - len(raw) - 10)
            out = json.dumps(body).encode()
            assert abs(len(out) - size) < 20
            return out

        _problem(gw.post(padded(150_000)), 400, "Failed to parse batch payload")
        _problem(gw.post(padded(262_000)), 400, "Failed to parse batch payload")
        big = gw.post(padded(300_000))  # caught by the freshness check, which reads it
        doc = _problem(big, 413, "Request body too large", instance="", request_id=False)
        assert doc["title"] == "Request Entity Too Large"
        stamped = gw.post(padded(300_000), headers={"X-Timestamp": str(int(time.time()))})
        _problem(stamped, 413, "Request body too large")  # the handler's, with request_id
        assert gw.rrs() == []
        assert problem_detail(stamped.content) == "Request Entity Too Large: Request body too large"


def test_429_plain_text_at_the_in_flight_limit() -> None:
    with Gateway(max_concurrent_requests=2, service_ms=1000.0) as gw:
        gw.deploy("web")
        client = gw.client

        async def burst() -> list[httpx.Response]:
            body = body_of(alert_for("web"))
            return await asyncio.gather(*(client._client.post(SIGNALS, json=body)
                                          for _ in range(3)))  # fmt: skip

        responses = client._loop.run_until_complete(burst())
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 202, 429]
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.text == "Server capacity exceeded.\n"
        assert refused.headers["content-type"] == "text/plain; charset=utf-8"
        assert "retry-after" not in refused.headers and "x-request-id" not in refused.headers
        assert classify("kubernaut", 429, refused.content) == ("throttled", "http_4xx")
        assert gw.outcomes()["throttled"] == 1


def test_signal_sources_need_the_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_SIGNAL_TOKEN", "signal-source-token-42")
    with Gateway(auth_token_env="KT_SIGNAL_TOKEN") as gw:
        gw.deploy("web")
        body = body_of(alert_for("web"))

        def post(header: str | None) -> httpx.Response:
            return gw.post(body, headers={"Authorization": header} if header else {})

        answers = {
            None: (401, "Missing Authorization header"),
            "Basic abc": (401, "Invalid Authorization header format"),
            "Bearer stranger": (401, "Invalid or expired token"),
        }
        for header, (code, detail) in answers.items():
            resp = post(header)
            assert (resp.status_code, resp.json()) == (code, {
                "detail": detail, "status": code, "title": "Unauthorized",
                "type": "about:blank"}), header  # fmt: skip
            assert classify("kubernaut", code, resp.content) == ("failed", "auth")
        kube = post("Bearer " + KUBE_TOKEN)  # authenticates, but is no signal source
        assert kube.status_code == 403
        detail = kube.json()["detail"]
        assert detail.startswith("Insufficient permissions")
        for word in ("create", "services/gateway-service", CONTROLLER):
            assert word in detail
        assert KUBE_TOKEN not in kube.text and "signal-source-token" not in kube.text
        assert post("Bearer signal-source-token-42").status_code == 201
        assert gw.rrs()
    monkeypatch.delenv("KT_SIGNAL_TOKEN")
    with pytest.raises(ValueError, match="KT_SIGNAL_TOKEN is not set"):
        create_app(TargetConfig(api="kubernaut", auth_token_env="KT_SIGNAL_TOKEN"))


def test_injected_errors_and_outages() -> None:
    with Gateway(error_rate=1.0) as gw:
        gw.deploy("web")
        _problem(gw.post(body_of(alert_for("web"))), 500, "Internal server error")
        assert gw.rrs() == []
    with Gateway(outages=((0.0, 3600.0),)) as gw:
        resp = gw.post(body_of(alert_for("web")))
        assert resp.status_code == 503 and int(resp.headers["retry-after"]) > 0
        assert gw.apps.health is not None
        with AppClient(gw.apps.health) as health:
            assert health.get("/healthz").status_code == 200  # alive, not ready
            ready = health.get("/readyz")
            assert ready.status_code == 503 and ready.json()["detail"] == (
                "Kubernetes API is not reachable")


def test_ports_are_apart_as_in_the_gateway() -> None:
    with Gateway() as gw:
        assert gw.apps.health is not None and gw.apps.metrics is not None
        with AppClient(gw.apps.health) as health:
            assert health.get("/healthz").json()["status"] == "healthy"
            assert health.get("/readyz").json() == {"status": "ready"}
            assert health.get("/metrics").status_code == 404
        for path in ("/health", "/healthz", "/readyz", "/metrics"):
            resp = gw.client.get(path)
            assert (resp.status_code, resp.text) == (404, "404 page not found\n")
        wrong = gw.client.get(SIGNALS)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert gw.client.get("/api/v1/actions").status_code == 200  # the target's own hooks
        metrics = gw.metrics()
        assert "gateway_http_request_duration_seconds" in metrics
        assert "kubetest_target_outcomes_total" in metrics


# ---------------------------------------------------------------- legacy and webhook


def _legacy(**overrides: Any) -> AppClient:
    fields = {f: getattr(LEGACY, f) for f in LEGACY.__dataclass_fields__}
    return AppClient(create_app(TargetConfig(**(fields | overrides))))


def _outcomes(client: AppClient) -> dict[str, int]:
    return client.get("/api/v1/outcomes").json()["outcomes"]


def test_legacy_answers_200_then_500_in_cooldown() -> None:
    with _legacy(cooldown_s=0.3) as c:
        alert = webhook([make_alert("high_cpu", 1, unique=False)])
        first = c.post("/alerts", json=alert)
        second = c.post("/alerts", json=alert)
        renamed = c.post("/alerts", json=webhook([make_alert("high_cpu", 2,
                                                                alertname_suffix=True)]))
        assert first.status_code == 200 and first.json()["status"] == "success"
        assert second.status_code == 500 and "cooldown" in second.json()["error"]
        assert renamed.status_code == 200  # another alertname: another pair
        assert classify("kubernaut-legacy", 500, second.content) == ("failed", "http_5xx")
        time.sleep(0.35)
        assert c.post("/alerts", json=alert).status_code == 200
        assert _outcomes(c) == {"accepted": 3, "duplicate": 0, "rejected": 0, "throttled": 0,
                                "failed": 1}  # fmt: skip
        assert c.get("/health").status_code == 200


def test_legacy_rate_limit_is_429() -> None:
    with _legacy(rate_limit_per_s=5.0, cooldown_s=0.0) as c:
        codes = [c.post("/alerts", json=webhook([make_alert("high_cpu", i)])).status_code
                 for i in range(8)]  # fmt: skip
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        assert _outcomes(c)["throttled"] == codes.count(429)


def test_webhook_profile_is_unchanged_and_counts_outcomes() -> None:
    with AppClient(create_app(TargetConfig(service_ms=1.0, service_dist="const"))) as c:
        assert c.post("/webhook/prometheus", json=webhook([make_alert("high_cpu", 1)])).status_code == 200  # noqa: E501
        assert c.post("/api/v1/signals/prometheus", json={}).status_code in (404, 405)
        assert c.post("/webhook/prometheus", content=b"{").status_code == 400
        assert _outcomes(c) == {"accepted": 1, "duplicate": 0, "rejected": 0, "throttled": 0,
                                "failed": 1}  # fmt: skip
        metrics = c.get("/metrics").text
        assert 'kubetest_target_outcomes_total{outcome="accepted"} 1.0' in metrics
        assert "gateway_" not in metrics
        for path in ("/health", "/ready", "/healthz", "/readyz"):
            assert c.get(path).status_code == 200


# ---------------------------------------------------------------- configuration


def test_cli_options_round_trip_to_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_TOKEN", "x" * 12)
    cfg = TargetConfig(api="kubernaut", auth_token_env="KT_TOKEN", max_concurrent_requests=7,
                       managed_namespaces=("a", "b"), rate_limit_per_s=9.5,
                       future_tolerance_s=1.0, cooldown_s=3.0, max_body_bytes=1000,
                       controller_namespace="ops", kube_namespaces=("c",),
                       remediation_phase_s=(0.1, 0.2, 0.3, 0.4), remediation_fail_rate=0.25,
                       blocked_rate=0.5, blocked_s=2.5,
                       kube_denied=("delete:deployments", "watch:remediationrequests"))  # fmt: skip
    args = build_parser().parse_args(child_arguments(cfg, "127.0.0.1"))
    assert config_from_args(args) == cfg
    assert (args.health_port, args.metrics_port, args.kube_port) == (0, 0, 0)
    assert "x" * 12 not in " ".join(child_arguments(cfg, "127.0.0.1"))  # the name, not the token
    none = TargetConfig(api="kubernaut", kube_namespaces=())
    assert config_from_args(build_parser().parse_args(child_arguments(none, "h"))) == none
    monkeypatch.delenv("KT_TOKEN")
    with pytest.raises(ParamsError, match="KT_TOKEN, which is not set"):
        config_from_args(args)
    assert TargetConfig(api="kubernaut").body_limit == 262_144
    assert TargetConfig(api="kubernaut").concurrency_limit == 100
    assert TargetConfig().body_limit == 1_048_576 and TargetConfig().concurrency_limit is None
    defaults = build_parser().parse_args([])
    assert isinstance(defaults, argparse.Namespace) and config_from_args(defaults) == TargetConfig()
    assert (defaults.port, defaults.health_port, defaults.metrics_port) == (8080, 8081, 9090)
    for bad in (["--kube-deny", "nuke:deployments"], ["--remediation-phase-s", "1,2,3"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)
    with pytest.raises(ValueError, match="kube_denied"):
        TargetConfig(api="kubernaut", kube_denied=("delete",))
    with pytest.raises(ValueError, match="namespace"):
        TargetConfig(api="kubernaut", controller_namespace="Bad_NS")


def test_params_embedded_target_follows_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_TOKEN", "abcdefgh")
    p = parse_params({"target": {"url": "embedded", "api": "kubernaut",
                                 "auth_token_env": "KT_TOKEN",
                                 "embedded": {"max_concurrent_requests": 3,
                                              "controller_namespace": "ops",
                                              "kube_namespaces": ["a"],
                                              "managed_namespaces": ["shop"],
                                              "remediation_phase_s": [0, 0.1, 0.2, 0.3],
                                              "remediation_fail_rate": 0.1,
                                              "blocked_rate": 0.2, "blocked_s": 4,
                                              "kube_denied": ["delete:deployments"]}}})  # fmt: skip
    cfg = TargetConfig.from_params(p.target.embedded)
    assert (cfg.api, cfg.auth_token_env, cfg.max_concurrent_requests) == (
        "kubernaut", "KT_TOKEN", 3)
    assert (cfg.controller_namespace, cfg.kube_namespaces, cfg.managed_namespaces) == (
        "ops", ("a",), ("shop",))
    assert cfg.remediation_phase_s == (0.0, 0.1, 0.2, 0.3)
    assert (cfg.remediation_fail_rate, cfg.blocked_rate, cfg.blocked_s) == (0.1, 0.2, 4.0)
    assert cfg.kube_denied == ("delete:deployments",)
    plain = TargetConfig.from_params(parse_params({"target": {"api": "kubernaut"}}).target.embedded)
    assert plain.kube_namespaces == TargetConfig().kube_namespaces
    own = parse_params({"target": {"api": "kubernaut", "embedded": {"api": "webhook"}}})
    assert own.target.embedded.api == "webhook"
    real = parse_params({"target": {"url": "http://gw.example:8080", "api": "kubernaut"}})
    assert real.target.url == "http://gw.example:8080/api/v1/signals/prometheus"
    legacy = parse_params({"target": {"url": "http://gw.example:8080/", "api": "kubernaut-legacy"}})
    assert legacy.target.url == "http://gw.example:8080/alerts"
    kept = parse_params({"target": {"url": "http://gw.example/custom/path", "api": "kubernaut"}})
    assert kept.target.url == "http://gw.example/custom/path"
    for bad, key in (({"max_concurrent_requests": 0}, "max_concurrent_requests"),
                     ({"dedup_window_s": 300}, "dedup_window_s"),
                     ({"kube_denied": ["delete"]}, "kube_denied"),
                     ({"remediation_phase_s": [1, 2]}, "remediation_phase_s"),
                     ({"controller_namespace": "Bad"}, "controller_namespace")):  # fmt: skip
        with pytest.raises(ParamsError, match="target.embedded." + key):
            parse_params({"target": {"embedded": bad}})


# ---------------------------------------------------------------- the child process


def test_embedded_target_serves_four_ports_and_a_kubeconfig(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBETEST_TARGET_KUBE_TOKEN", raising=False)
    cfg = TargetConfig(api="kubernaut", workers=2, service_ms=1.0, service_dist="const",
                       remediation_phase_s=(0.01, 0.01, 0.01, 0.01))  # fmt: skip
    target = EmbeddedTarget(cfg)
    with target:
        urls = [target.base_url, target.health_url, target.metrics_url, target.kube_url]
        assert len({httpx.URL(u).port for u in urls}) == 4
        assert target.health_url.endswith("/readyz") and target.metrics_url.endswith("/metrics")
        path = target.kubeconfig_path
        assert path is not None and "outputs" not in path.parts
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        token = json.loads(path.read_text())["users"][0]["user"]["token"]
        assert token not in " ".join(target.command())

        # kubetest's side: a managed Deployment through the kube API, then alerts about it
        api = k8s_config.new_client_from_config(str(path))
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_deployment("test-workloads", {
            "metadata": {"name": "web", "labels": {MANAGED_LABEL: "true", "app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}}}})  # fmt: skip
        sent = [httpx.post(target.webhook_url, json=body_of(alert_for(d, i)), timeout=10)
                for i, d in enumerate(["web", "web", "ghost"])]  # fmt: skip
        assert [r.status_code for r in sent] == [201, 202, 400]
        name = sent[0].json()["remediationRequestName"]
        custom = k8s.CustomObjectsApi(api)
        rr = custom.get_namespaced_custom_object("kubernaut.ai", "v1alpha1", CONTROLLER,
                                                 "remediationrequests", name)
        assert rr["spec"]["targetResource"]["name"] == "web"

        metrics = httpx.get(target.metrics_url).text
        for line in ('gateway_crds_created_total{source_type="prometheus",status="created"} 1.0',
                     'gateway_signals_deduplicated_total{signal_name="HighCPUUsage"} 1.0',
                     'gateway_signals_parse_dropped_total{reason="owner_resolution_failed"} 1.0',
                     'gateway_signals_received_total{severity="warning",source_type="prometheus"}'
                     " 2.0"):  # fmt: skip
            assert line in metrics
        assert httpx.get(target.health_url).json() == {"status": "ready"}
        assert httpx.get(target.base_url + "/health").status_code == 404
        outcomes = httpx.get(target.base_url + "/api/v1/outcomes").json()["outcomes"]
        assert (outcomes["accepted"], outcomes["duplicate"], outcomes["failed"]) == (1, 1, 1)
    assert not path.exists() and not path.parent.exists()
    assert target.kubeconfig_path is None


def test_other_profiles_keep_one_port() -> None:
    with EmbeddedTarget(TargetConfig(workers=1, service_ms=1.0)) as target:
        assert target.kube_url is None and target.kubeconfig_path is None
        assert target.health_url == target.base_url + "/health"
        assert target.metrics_url == target.base_url + "/metrics"
        assert httpx.get(target.health_url).status_code == 200


def test_kube_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEST_TARGET_KUBE_TOKEN", "chosen-token-abcdef")
    apps = create_apps(TargetConfig(api="kubernaut"))
    assert apps.state.kube_token == "chosen-token-abcdef"
    assert apps.cluster.authenticate("chosen-token-abcdef") is not None
    assert apps.kube is not None and apps.webhook.state.apps is apps
