"""The kubernaut-legacy and webhook profiles, the target's configuration (CLI, params),
and the child process with its four ports and kubeconfig."""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from typing import Any

import httpx
import pytest
from asgi_apps import AppClient
from gateway_support import CONTROLLER, LEGACY, alert_for, body_of
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kubetest.alerts import make_alert, webhook
from kubetest.engine import classify
from kubetest.errors import ParamsError
from kubetest.params import parse_params
from kubetest.target import EmbeddedTarget, TargetConfig, create_app
from kubetest.target.app import create_apps
from kubetest.target.cluster import MANAGED_LABEL
from kubetest.target.command import build_parser, child_arguments, config_from_args

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
        renamed = c.post(
            "/alerts", json=webhook([make_alert("high_cpu", 2, alertname_suffix=True)])
        )
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
        codes = [
            c.post("/alerts", json=webhook([make_alert("high_cpu", i)])).status_code
            for i in range(8)
        ]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        assert _outcomes(c)["throttled"] == codes.count(429)


def test_webhook_profile_is_unchanged_and_counts_outcomes() -> None:
    with AppClient(create_app(TargetConfig(service_ms=1.0, service_dist="const"))) as c:
        assert (
            c.post("/webhook/prometheus", json=webhook([make_alert("high_cpu", 1)])).status_code
            == 200
        )  # noqa: E501
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
        "kubernaut",
        "KT_TOKEN",
        3,
    )
    assert (cfg.controller_namespace, cfg.kube_namespaces, cfg.managed_namespaces) == (
        "ops",
        ("a",),
        ("shop",),
    )
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
    for bad, key in (
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"dedup_window_s": 300}, "dedup_window_s"),
        ({"kube_denied": ["delete"]}, "kube_denied"),
        ({"remediation_phase_s": [1, 2]}, "remediation_phase_s"),
        ({"controller_namespace": "Bad"}, "controller_namespace"),
    ):
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
        sent = [
            httpx.post(target.webhook_url, json=body_of(alert_for(d, i)), timeout=10)
            for i, d in enumerate(["web", "web", "ghost"])
        ]
        assert [r.status_code for r in sent] == [201, 202, 400]
        name = sent[0].json()["remediationRequestName"]
        custom = k8s.CustomObjectsApi(api)
        rr = custom.get_namespaced_custom_object(
            "kubernaut.ai", "v1alpha1", CONTROLLER, "remediationrequests", name
        )
        assert rr["spec"]["targetResource"]["name"] == "web"

        metrics = httpx.get(target.metrics_url).text
        for line in (
            'gateway_crds_created_total{source_type="prometheus",status="created"} 1.0',
            'gateway_signals_deduplicated_total{signal_name="HighCPUUsage"} 1.0',
            'gateway_signals_parse_dropped_total{reason="owner_resolution_failed"} 1.0',
            'gateway_signals_received_total{severity="warning",source_type="prometheus"} 2.0',
        ):
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
