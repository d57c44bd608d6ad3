"""The reference target's kubernaut and kubernaut-legacy profiles: what each answers.

The kubernaut profile is the current gateway backed by the target's own cluster. Most
tests run it in-process (httpx's ASGI transport, no sockets) with the cluster on a fake
clock, so RemediationRequest phases move only when a test moves the clock; the engine's
classification of each answer is checked beside it, so target and client agree. Refusals are in
``test_gateway_refusals.py``, the other profiles and the child process in
``test_target_profiles.py``.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from gateway_support import CONTROLLER, RR_NAME, Gateway, _problem, alert_for, body_of

from kubetest.engine import classify, classify_all
from kubetest.target.cluster import MANAGED_LABEL
from kubetest.target.profiles import signal_fingerprint

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
        assert (
            signal_fingerprint("ns", "Deployment", "web", "east")
            == hashlib.sha256(b"east:ns:Deployment:web").hexdigest()
        )


def test_exported_namespace_wins_and_deployment_beats_pod() -> None:
    with Gateway(managed_namespaces=("shop",)) as gw:
        gw.deploy("cart", "shop")
        alert = alert_for("cart", namespace="monitoring", exported_namespace="shop")
        resp = gw.post(body_of(alert))
        assert resp.status_code == 201, resp.text
        rr = gw.rrs()[0]
        assert rr["spec"]["targetResource"] == {"kind": "Deployment", "name": "cart",
                                                "namespace": "shop"}  # fmt: skip
        assert (
            gw.metrics().count(
                'gateway_owner_resolution_total{kind="Deployment",outcome="success"} 1.0'
            )
            == 1
        )


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
            "kubectl label -n test-workloads deployment web kubernaut.ai/managed=true"
        )
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
        assert list(created) == [
            "status",
            "message",
            "fingerprint",
            "duplicate",
            "remediationRequestName",
            "remediationRequestNamespace",
        ]
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
        assert (
            'gateway_crds_created_total{source_type="prometheus",status="created"} 2.0' in metrics
        )


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
            "Failed",
            "WorkflowExecution",
        )
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
            "app.kubernetes.io/component": "remediation",
        }
        assert spec["signalFingerprint"] == sent.json()["fingerprint"]
        assert (spec["signalName"], spec["severity"], spec["signalType"], spec["signalSource"],
                spec["targetType"]) == ("HighCPUUsage", "warning", "alert", "prometheus",
                                        "kubernetes")  # fmt: skip
        assert spec["signalLabels"] == alert["labels"]
        assert spec["signalLabels"]["kubetest_run"] == "run-42"
        assert spec["firingTime"] == alert["startsAt"][:19] + "Z"  # metav1.Time: seconds
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", spec["receivedTime"])
        assert json.loads(spec["providerData"]) == {
            "labels": alert["labels"],
            "namespace": "test-workloads",
        }
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
            name,
            "run-42",
            7,
            "executed",
        )


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
            "created",
            "duplicate",
            "rejected",
            "rejected",
        ]
        assert body["summary"] == {"total": 4, "created": 1, "deduplicated": 1, "rejected": 2,
                                   "failed": 0}  # fmt: skip
        created, dup, unmanaged, invalid = body["results"]
        assert created == {
            "status": "created",
            "fingerprint": created["fingerprint"],
            "message": "RemediationRequest CRD created successfully",
        }
        assert "fingerprint" not in unmanaged and unmanaged["message"].startswith(
            "Signal rejected: resource elsewhere:Deployment:other"
        )
        assert invalid["error"] == "Signal validation failed: alertName is required"
        assert classify_all("kubernaut", 207, resp.content) == [
            ("accepted", ""),
            ("duplicate", ""),
            ("rejected", ""),
            ("rejected", ""),
        ]
        assert gw.outcomes()["accepted"] == 1 and gw.outcomes()["rejected"] == 2
        # two alerts, one dropped by owner resolution: the single-alert answer, 201
        pair = gw.post(body_of(alert_for("ghost", 6), alert_for("api", 7)))
        assert pair.status_code == 201, pair.text
