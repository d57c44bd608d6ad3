"""Payloads match what Alertmanager's webhook notifier (v4) sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kubetest.alerts import (
    ACTIONS,
    DESTRUCTIVE_ACTIONS,
    PayloadFactory,
    action_alert,
    fingerprint,
    make_alert,
    webhook,
)

ENVELOPE = {
    "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
    "commonLabels", "commonAnnotations", "externalURL", "alerts",
}  # fmt: skip
ALERT_FIELDS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def test_envelope_has_every_alertmanager_field() -> None:
    body = webhook([make_alert("high_memory", 1), make_alert("high_memory", 2)])
    assert set(body) == ENVELOPE
    assert body["version"] == "4"
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"
    for alert in body["alerts"]:
        assert set(alert) == ALERT_FIELDS
        datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
        assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    # common labels are exactly the labels shared by all alerts
    assert body["commonLabels"]["alertname"] == "HighMemoryUsage"
    assert "pod" not in body["commonLabels"]


def test_fingerprint_is_alertmanagers_fnv1a_over_sorted_labels() -> None:
    # Alertmanager's model.LabelSet{}.Fingerprint() of the empty set is the FNV-1a offset basis.
    assert fingerprint({}) == "cbf29ce484222325"
    a = fingerprint({"a": "1", "b": "2"})
    assert a == fingerprint({"b": "2", "a": "1"})
    assert a != fingerprint({"a": "12"})
    assert len(a) == 16


def test_unique_alerts_differ_in_what_services_deduplicate_on() -> None:
    a, b = make_alert("pod_crash", 1), make_alert("pod_crash", 2)
    assert a.fingerprint != b.fingerprint and a.labels["pod"] != b.labels["pod"]
    c, d = make_alert("pod_crash", 1, unique=False), make_alert("pod_crash", 2, unique=False)
    assert c.labels["pod"] == d.labels["pod"] and c.labels["deployment"] == d.labels["deployment"]


def test_starts_at_is_never_in_the_future() -> None:
    now = datetime.now(UTC)
    assert make_alert("high_cpu", now=now).starts_at < now


def test_one_alert_per_action_and_enough_of_them() -> None:
    assert len(set(ACTIONS)) >= 25
    assert set(ACTIONS) >= DESTRUCTIVE_ACTIONS
    alerts = [action_alert(a, i) for i, a in enumerate(ACTIONS)]
    assert [a.action for a in alerts] == list(ACTIONS)
    assert len({a.fingerprint for a in alerts}) == len(ACTIONS)
    with pytest.raises(ValueError, match="unknown action"):
        action_alert("format_disk")


def test_payload_factory_cycles_types_and_is_valid_json() -> None:
    f = PayloadFactory(["high_memory", "random"], seed=3)
    raw, kind, fp = f.body(0)
    body = json.loads(raw)
    assert kind == "high_memory" and body["alerts"][0]["fingerprint"] == fp
    assert f.body(1)[1] in {"high_memory", "high_cpu", "pod_crash", "disk_full", "network_latency"}
    # "random" is reproducible from the seed, so two shards build the same plan
    assert [f.body(i)[1] for i in range(1, 40, 2)] == [
        PayloadFactory(["high_memory", "random"], seed=3).body(i)[1] for i in range(1, 40, 2)
    ]
    with pytest.raises(ValueError):
        PayloadFactory(["bogus"])
