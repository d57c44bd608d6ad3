"""Payloads match what Alertmanager's webhook notifier (v4) sends."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from kubetest.alerts import (
    ACTIONS,
    ALERT_TYPES,
    DESTRUCTIVE_ACTIONS,
    action_alert,
    fingerprint,
    make_alert,
    webhook,
)
from kubetest.payloads import PayloadFactory

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


def _parsed_without_starts(raw: bytes) -> tuple[dict, datetime]:
    doc = json.loads(raw)
    starts = doc["alerts"][0].pop("startsAt")
    return doc, datetime.fromisoformat(starts.replace("Z", "+00:00"))


SEQS = [
    *range(0, 40), 99, 100, 1023, 1024, 1025, 9_999, 10_000, 123_457, 9_999_999, 10_000_000,
    99_999_999, 100_000_000, 123_456_789, 2**40 + 3, 10**18 - 1025, 10**18 + 5,
]  # fmt: skip


@pytest.mark.parametrize("api", ["webhook", "kubernaut", "kubernaut-legacy"])
@pytest.mark.parametrize("unique", [True, False])
@pytest.mark.parametrize("run", [None, "", "a1b2c3"])
def test_fast_body_is_the_reference_body(api: str, unique: bool, run: str | None) -> None:
    """The templated body parses to the reference builder's JSON (startsAt aside, which is
    "now" in both), and its fingerprint is Alertmanager's of the labels actually sent."""
    types = [*sorted(ALERT_TYPES), "random", "pod_crash"]
    f = PayloadFactory(types, unique=unique, seed=5, api=api, run=run, namespace='ns-1%x"é')
    seqs = SEQS + [s * 7 + k for s in range(0, 3000, 97) for k in range(len(types))]
    for seq in seqs:
        before = datetime.now(UTC)
        raw, kind, fp = f.body(seq)
        ref_raw, ref_kind, ref_fp = f.reference_body(seq)
        got, starts = _parsed_without_starts(raw)
        want, ref_starts = _parsed_without_starts(ref_raw)
        assert got == want, seq
        assert (kind, fp) == (ref_kind, ref_fp)
        labels = got["alerts"][0]["labels"]
        assert fingerprint(labels) == got["alerts"][0]["fingerprint"] == fp
        assert labels["kubetest_seq"] == str(seq) and labels["alert_type"] == kind
        # startsAt is "now" less 1 ms, to the millisecond, when the body is built
        assert abs((starts - ref_starts).total_seconds()) < 0.05
        assert before - timedelta(milliseconds=2) <= starts <= datetime.now(UTC)


def test_fast_bodies_out_of_order_and_after_pickling() -> None:
    f = PayloadFactory(["high_cpu", "disk_full"], run="ffffff")
    order = [5000, 3, 5001, 1_000_000, 2, 4999, 70]
    first = [f.body(s)[2] for s in order]
    assert first == [f.reference_body(s)[2] for s in order]
    clone = pickle.loads(pickle.dumps(f))
    assert not any(k.startswith("_c_") for k in vars(clone))  # caches stay home
    clone.warm()
    assert set(clone._c_templates) == {("high_cpu", None), ("disk_full", None)}
    assert [clone.body(s)[2] for s in order] == first
    assert len(pickle.dumps(f)) < 1000


def test_a_template_that_does_not_match_falls_back_to_the_reference(monkeypatch) -> None:
    import kubetest.payloads as payloads

    monkeypatch.setattr(payloads, "_STARTS", "\x00X\x00")  # breaks the startsAt slot
    f = PayloadFactory(["high_memory"])
    with pytest.warns(RuntimeWarning, match="slow way"):
        raw, kind, fp = f.body(3)
    ref, ref_kind, ref_fp = f.reference_body(3)
    assert _parsed_without_starts(raw)[0] == _parsed_without_starts(ref)[0]
    assert (kind, fp) == (ref_kind, ref_fp)


def test_bodies_take_the_template_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path never falls back to the slow reference builder (speed is bench/'s
    business; this only proves the template is what runs)."""
    import warnings

    f = PayloadFactory(["high_memory", "pod_crash"])
    f.warm()

    def slow(*args: object, **kwargs: object) -> object:
        raise AssertionError("the reference builder ran on the hot path")

    monkeypatch.setattr(f, "reference_body", slow)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a template mismatch warns before falling back
        for seq in range(0, 5_000, 7):
            f.body(seq)


def test_a_workload_body_names_that_deployment_and_no_pod() -> None:
    """Pool alerts name an existing Deployment (the gateway resolves the owner in the
    cluster): the fast body equals the reference one, per workload, fingerprint included."""
    f = PayloadFactory(["high_cpu", "pod_crash"], run="abc123")
    for seq, workload in ((0, "kubetest-abc123-0"), (1, "kubetest-abc123-7"), (4242, "web")):
        raw, kind, fp = f.body(seq, workload)
        ref, ref_kind, ref_fp = f.reference_body(seq, workload)
        got, want = _parsed_without_starts(raw)[0], _parsed_without_starts(ref)[0]
        assert got == want and (kind, fp) == (ref_kind, ref_fp)
        labels = got["alerts"][0]["labels"]
        assert labels["deployment"] == workload and "pod" not in labels
        assert labels["namespace"] == "test-workloads" and labels["severity"]
        assert labels["alertname"] in ("HighCPUUsage", "PodCrashLooping")
        assert labels["kubetest_run"] == "abc123" and labels["kubetest_seq"] == str(seq)
    assert f.body(5, "a")[2] != f.body(5, "b")[2]  # the workload is in the label set
