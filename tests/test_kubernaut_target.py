"""The reference target's kubernaut and kubernaut-legacy profiles: what each answers.

In-process (httpx's ASGI transport, no sockets), like tests/test_target.py; the engine's
classification of each answer is checked beside it, so target and client agree.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest
from test_target import AppClient

from kubetest.alerts import make_alert, webhook
from kubetest.engine import classify, classify_all, problem_detail
from kubetest.errors import ParamsError
from kubetest.params import parse_params
from kubetest.target import TargetConfig, create_app
from kubetest.target.model import owning_resource
from kubetest.target.server import _arguments, build_parser, config_from_args

SIGNALS = "/api/v1/signals/prometheus"
KUBERNAUT = TargetConfig(workers=4, service_ms=1.0, service_dist="const", seed=1, api="kubernaut")
LEGACY = TargetConfig(
    workers=4, service_ms=1.0, service_dist="const", seed=1, api="kubernaut-legacy"
)


def _client(**overrides: Any) -> AppClient:
    base = LEGACY if overrides.pop("legacy", False) else KUBERNAUT
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    return AppClient(create_app(TargetConfig(**(fields | overrides))))


def _outcomes(client: AppClient) -> dict[str, int]:
    return client.get("/api/v1/outcomes").json()["outcomes"]


def test_one_alert_answers_201_then_202_within_the_window() -> None:
    with _client() as c:
        first = c.post(SIGNALS, json=webhook([make_alert("high_cpu", 1, unique=False)]))
        again = c.post(SIGNALS, json=webhook([make_alert("high_cpu", 2, unique=False)]))
        other = c.post(SIGNALS, json=webhook([make_alert("high_cpu", 3)]))
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["status"] == "created" and body["duplicate"] is False
        assert body["remediationRequestName"].startswith("rr-" + body["fingerprint"][:12])
        assert body["remediationRequestNamespace"] == "test-workloads"
        assert len(body["fingerprint"]) == 64
        assert again.status_code == 202
        dup = again.json()
        assert dup["status"] == "duplicate" and dup["duplicate"] is True
        assert dup["remediationRequestName"] == body["remediationRequestName"]
        assert dup["metadata"]["occurrenceCount"] == 2
        assert other.status_code == 201  # another Deployment: another signal
        assert [classify("kubernaut", r.status_code, r.content) for r in (first, again, other)] == [
            ("accepted", ""), ("duplicate", ""), ("accepted", "")]  # fmt: skip
        assert _outcomes(c) == {"accepted": 2, "duplicate": 1, "rejected": 0, "throttled": 0,
                                "failed": 0}  # fmt: skip
        # created signals are listed with their labels (for a stand-in Kubernetes API)
        created = c.get("/api/v1/remediations").json()
        assert [r["name"] for r in created] == [
            body["remediationRequestName"], other.json()["remediationRequestName"]]
        assert created[0]["signalLabels"]["kubetest_seq"] == "1"
        history = c.get("/api/v1/actions").json()
        assert [h["remediation"] for h in history] == [r["name"] for r in created]


def test_dedup_window_expires() -> None:
    with _client(dedup_window_s=0.2) as c:
        alert = webhook([make_alert("pod_crash", 1, unique=False)])
        assert c.post(SIGNALS, json=alert).status_code == 201
        assert c.post(SIGNALS, json=alert).status_code == 202
        time.sleep(0.3)
        assert c.post(SIGNALS, json=alert).status_code == 201


def test_pods_of_one_deployment_collapse() -> None:
    assert owning_resource({"pod": "api-7d9c8b6f5d-x2x7q"}) == ("Deployment", "api")
    assert owning_resource({"pod": "lonely"}) == ("Pod", "lonely")
    assert owning_resource({"deployment": "web", "pod": "web-0"}) == ("Deployment", "web")
    with _client() as c:
        a, b = make_alert("high_cpu", 1), make_alert("high_cpu", 2)
        for alert, pod in ((a, "shop-5f7b9c6d4-abcde"), (b, "shop-5f7b9c6d4-fghij")):
            del alert.labels["deployment"]
            alert.labels["pod"] = pod
        codes = [c.post(SIGNALS, json=webhook([x])).status_code for x in (a, b)]
        assert codes == [201, 202]


def test_several_alerts_answer_207_per_alert() -> None:
    with _client(managed_namespaces=("test-workloads",)) as c:
        alerts = [make_alert("high_cpu", 1), make_alert("high_cpu", 1),
                  make_alert("disk_full", 2, namespace="elsewhere")]  # fmt: skip
        resp = c.post(SIGNALS, json=webhook(alerts))
        assert resp.status_code == 207, resp.text
        body = resp.json()
        assert [r["status"] for r in body["results"]] == ["created", "duplicate", "rejected"]
        assert body["summary"] == {"total": 3, "created": 1, "deduplicated": 1, "rejected": 1,
                                   "failed": 0}  # fmt: skip
        assert body["results"][2]["rejection"]["reason"] == "UnmanagedNamespace"
        assert classify_all("kubernaut", 207, resp.content) == [
            ("accepted", ""), ("duplicate", ""), ("rejected", "")]  # fmt: skip
        assert _outcomes(c)["accepted"] == 1 and _outcomes(c)["rejected"] == 1
        single = c.post(SIGNALS, json=webhook([make_alert("pod_crash", 3, namespace="other")]))
        assert single.status_code == 200 and single.json()["status"] == "rejected"
        assert classify("kubernaut", 200, single.content) == ("rejected", "")


@pytest.mark.parametrize(
    ("mutate", "code", "words"),
    [
        (lambda b: b.update(version="3"), 400, "version"),
        (lambda b: b["alerts"][0].update(startsAt="2999-01-01T00:00:00Z"), 400, "future"),
        (lambda b: b["alerts"][0]["annotations"].update(pad="x" * 300_000), 413, "limit"),
    ],
)
def test_errors_are_rfc7807(mutate: Any, code: int, words: str) -> None:
    body = webhook([make_alert("high_memory", 1)])
    mutate(body)
    with _client() as c:
        resp = c.post(SIGNALS, content=json.dumps(body).encode())
        assert resp.status_code == code
        assert resp.headers["content-type"] == "application/problem+json"
        doc = resp.json()
        assert set(doc) == {"type", "title", "status", "detail", "instance"}
        assert doc["status"] == code and words in doc["detail"]
        assert problem_detail(resp.content).startswith(doc["title"] + ": ")
        assert _outcomes(c)["failed"] == 1
        assert c.get("/api/v1/actions").json() == []


def test_x_timestamp_outside_the_window_is_refused() -> None:
    body = webhook([make_alert("high_memory", 1)])
    with _client() as c:
        old = c.post(SIGNALS, json=body, headers={"X-Timestamp": str(int(time.time()) - 600)})
        assert old.status_code == 400 and "too old" in old.json()["detail"]
        ok = c.post(SIGNALS, json=body, headers={"X-Timestamp": str(int(time.time()))})
        assert ok.status_code == 201


def test_bearer_token_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_TEST_TOKEN", "s3cret-token")
    body = webhook([make_alert("high_memory", 1)])
    with _client(auth_token_env="KT_TEST_TOKEN") as c:
        none = c.post(SIGNALS, json=body)
        wrong = c.post(SIGNALS, json=body, headers={"Authorization": "Bearer nope"})
        right = c.post(SIGNALS, json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert (none.status_code, wrong.status_code, right.status_code) == (401, 401, 201)
        assert classify("kubernaut", 401, wrong.content) == ("failed", "auth")
        assert "s3cret" not in wrong.text
        assert c.get("/health").status_code == 200  # probes need no token
    monkeypatch.delenv("KT_TEST_TOKEN")
    with pytest.raises(ValueError, match="KT_TEST_TOKEN is not set"):
        create_app(TargetConfig(api="kubernaut", auth_token_env="KT_TEST_TOKEN"))


def test_health_and_readiness_paths() -> None:
    with _client() as c:
        for path in ("/health", "/ready", "/healthz", "/readyz"):
            assert c.get(path).status_code == 200
        assert c.post("/webhook/prometheus", json={}).status_code in (404, 405)


def test_legacy_answers_200_then_500_in_cooldown() -> None:
    with _client(legacy=True, cooldown_s=0.3) as c:
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


def test_legacy_rate_limit_is_429() -> None:
    with _client(legacy=True, rate_limit_per_s=5.0, cooldown_s=0.0) as c:
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


def test_cli_options_round_trip_to_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_TOKEN", "x" * 12)
    cfg = TargetConfig(api="kubernaut", auth_token_env="KT_TOKEN", max_concurrent_requests=7,
                       dedup_window_s=2.5, managed_namespaces=("a", "b"), rate_limit_per_s=9.5,
                       future_tolerance_s=1.0, cooldown_s=3.0, max_body_bytes=1000)  # fmt: skip
    args = build_parser().parse_args(_arguments(cfg, "127.0.0.1"))
    assert config_from_args(args) == cfg
    assert "x" * 12 not in " ".join(_arguments(cfg, "127.0.0.1"))  # the name, not the token
    monkeypatch.delenv("KT_TOKEN")
    with pytest.raises(ParamsError, match="KT_TOKEN, which is not set"):
        config_from_args(args)
    assert KUBERNAUT.body_limit == 262_144 and KUBERNAUT.concurrency_limit == 100
    assert TargetConfig().body_limit == 1_048_576 and TargetConfig().concurrency_limit is None
    defaults = build_parser().parse_args([])
    assert isinstance(defaults, argparse.Namespace) and config_from_args(defaults) == TargetConfig()


def test_params_embedded_target_follows_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_TOKEN", "abcdefgh")
    p = parse_params({"target": {"url": "embedded", "api": "kubernaut",
                                 "auth_token_env": "KT_TOKEN",
                                 "embedded": {"max_concurrent_requests": 3}}})  # fmt: skip
    cfg = TargetConfig.from_params(p.target.embedded)
    assert (cfg.api, cfg.auth_token_env, cfg.max_concurrent_requests) == (
        "kubernaut", "KT_TOKEN", 3)
    own = parse_params({"target": {"api": "kubernaut", "embedded": {"api": "webhook"}}})
    assert own.target.embedded.api == "webhook"
    real = parse_params({"target": {"url": "http://gw.example:8080", "api": "kubernaut"}})
    assert real.target.url == "http://gw.example:8080/api/v1/signals/prometheus"
    legacy = parse_params({"target": {"url": "http://gw.example:8080/", "api": "kubernaut-legacy"}})
    assert legacy.target.url == "http://gw.example:8080/alerts"
    kept = parse_params({"target": {"url": "http://gw.example/custom/path", "api": "kubernaut"}})
    assert kept.target.url == "http://gw.example/custom/path"
    with pytest.raises(ParamsError, match="target.embedded.max_concurrent_requests"):
        parse_params({"target": {"embedded": {"max_concurrent_requests": 0}}})
