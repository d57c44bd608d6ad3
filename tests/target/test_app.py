"""The reference target: its contract (webhook, health, history, metrics) and its queueing truth.

Most tests drive the ASGI app in-process (fast, no sockets); the lifecycle, CLI and
throughput tests run the real child process on 127.0.0.1. Timing bounds are generous:
these must hold on a busy 2-core CI machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_apps import AppClient
from prometheus_client.parser import text_string_to_metric_families

from kubetest.alerts import action_alert, make_alert, webhook
from kubetest.params import EmbeddedTarget as EmbeddedParams
from kubetest.target import EmbeddedTarget, TargetConfig, TargetStartError, create_app, make_sampler
from kubetest.target.model import lognormal_mu

FAST_KW: dict[str, Any] = {"workers": 4, "service_ms": 1.0, "service_dist": "const", "seed": 1}
FAST = TargetConfig(**FAST_KW)


@pytest.fixture
def client() -> Iterator[AppClient]:
    with AppClient(create_app(FAST)) as c:
        yield c


def _client(config: TargetConfig) -> AppClient:
    return AppClient(create_app(config))


def _post(client: AppClient, payload: Any) -> httpx.Response:
    return client.post("/webhook/prometheus", json=payload)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ------------------------------------------------------------------ model


def test_config_from_params() -> None:
    params = EmbeddedParams(workers=3, service_ms=20, service_dist="exp", outages=[(1, 2)])
    cfg = TargetConfig.from_params(params)
    assert (cfg.workers, cfg.service_ms, cfg.service_dist) == (3, 20.0, "exp")
    assert cfg.outages == ((1.0, 2.0),)
    assert cfg.capacity_per_s == pytest.approx(150.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"service_ms": 0}, {"service_dist": "pareto"}, {"error_rate": 1.5},
     {"outages": ((1.0, 0.0),)}],
)  # fmt: skip
def test_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TargetConfig(**kwargs)


@pytest.mark.parametrize("dist", ["exp", "const", "lognormal"])
def test_service_time_mean_is_service_ms(dist: str) -> None:
    cfg = TargetConfig(service_ms=150.0, service_dist=dist, seed=42)
    draw = make_sampler(cfg)
    samples = [draw() for _ in range(200_000)]
    assert statistics.fmean(samples) == pytest.approx(0.150, rel=0.02)
    if dist == "lognormal":
        # The mean is right *because* mu is not ln(mean): the median sits below the mean.
        median = statistics.median(samples)
        assert median == pytest.approx(pow(2.718281828459045, lognormal_mu(0.150, 0.5)), rel=0.02)
        assert median < 0.150 * 0.9


# ------------------------------------------------------------------ webhook contract


def test_valid_webhook_is_processed_and_recorded(client: AppClient) -> None:
    alerts = [make_alert("high_cpu", 7), action_alert("drain_node", 8)]
    resp = _post(client, webhook(alerts))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success" and body["processed"] == 2
    assert [r["fingerprint"] for r in body["results"]] == [a.fingerprint for a in alerts]
    assert [r["status"] for r in body["results"]] == ["executed", "executed"]

    hist = client.get("/api/v1/actions")
    assert hist.status_code == 200
    assert hist.headers["X-Total-Count"] == "2"
    entries = hist.json()
    assert [(e["action"], e["fingerprint"], e["seq"]) for e in entries] == [
        ("scale_deployment", alerts[0].fingerprint, 7),
        ("drain_node", alerts[1].fingerprint, 8),
    ]
    first = entries[0]
    assert first["alertname"] == "HighCPUUsage" and first["namespace"] == "test-workloads"
    assert first["status"] == "executed" and first["time"].endswith("Z")


def test_history_paging(client: AppClient) -> None:
    for seq in range(5):
        assert _post(client, webhook([make_alert("pod_crash", seq)])).status_code == 200
    page = client.get("/api/v1/actions", params={"since": 2, "limit": 2})
    assert page.headers["X-Total-Count"] == "5"
    assert [e["seq"] for e in page.json()] == [2, 3]
    assert [e["index"] for e in page.json()] == [2, 3]
    assert client.get("/api/v1/actions", params={"since": 9}).json() == []
    bad = client.get("/api/v1/actions", params={"limit": "-1"})
    assert bad.status_code == 400 and "limit" in bad.json()["error"]


def test_invalid_json_is_400_with_reason(client: AppClient) -> None:
    resp = client.post("/webhook/prometheus", content=b'{"version": "4", ')
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("invalid JSON")


def _mutated(path: str, value: Any) -> dict[str, Any]:
    payload = webhook([make_alert("high_memory", 1)])
    *parents, last = path.split(".")
    node: Any = payload
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("alerts", KeyError, "alerts: required"),
        ("alerts", {"a": 1}, "alerts: must be an array"),
        ("alerts", [], "alerts: must hold at least one"),
        ("version", "3", "version: unsupported"),
        ("status", KeyError, "status: required"),
        ("truncatedAlerts", "0", "truncatedAlerts"),
        ("commonLabels", [], "commonLabels"),
        ("alerts.0.labels", KeyError, "alerts[0].labels: required"),
        ("alerts.0.labels.alertname", KeyError, "alerts[0].labels.alertname"),
        ("alerts.0.labels.severity", 3, "alerts[0].labels.severity: must be a string"),
        ("alerts.0.startsAt", 17, "alerts[0].startsAt"),
        ("alerts.0.status", "pending", "alerts[0].status"),
    ],
)
def test_bad_payload_is_400_naming_the_field(
    client: AppClient, path: str, value: Any, named: str
) -> None:
    resp = _post(client, _mutated(path, value))
    assert resp.status_code == 400
    assert named in resp.json()["error"]
    assert client.get("/api/v1/actions").json() == []


def test_oversized_body_is_413() -> None:
    cfg = TargetConfig(service_ms=1.0, service_dist="const", max_body_bytes=4_000, max_alerts=3)
    payload = webhook([make_alert("high_cpu", i) for i in range(6)])
    raw = json.dumps(payload).encode()
    assert len(raw) > 4_000
    with _client(cfg) as c:
        resp = c.post("/webhook/prometheus", content=raw)  # Content-Length says it up front
        assert resp.status_code == 413 and "body" in resp.json()["error"]

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
            for i in range(0, len(raw), 1000):
                yield raw[i : i + 1000]

        resp = c.post("/webhook/prometheus", content=chunked())
        assert resp.status_code == 413 and "body" in resp.json()["error"]

        small = webhook([make_alert("high_cpu", i, unique=False) for i in range(4)])
        small["commonAnnotations"] = small["commonLabels"] = {}
        for alert in small["alerts"]:
            alert["annotations"] = {}
        assert len(json.dumps(small)) < 4_000
        resp = _post(c, small)
        assert resp.status_code == 413 and "limit of 3" in resp.json()["error"]


def test_unknown_action_fails_clearly(client: AppClient) -> None:
    alert = make_alert("disk_full", 3, action="teleport_cluster")
    resp = _post(client, webhook([alert]))
    assert resp.status_code == 200
    assert resp.json()["results"][0]["status"] == "failed"
    (entry,) = client.get("/api/v1/actions").json()
    assert entry["status"] == "failed"
    assert entry["reason"] == "unknown action 'teleport_cluster'"
    assert entry["action"] == "teleport_cluster"


def test_error_rate_one_fails_every_request() -> None:
    cfg = TargetConfig(service_ms=1.0, service_dist="const", error_rate=1.0)
    with _client(cfg) as c:
        codes = {_post(c, webhook([make_alert("high_cpu", i)])).status_code for i in range(20)}
        assert codes == {500}
        assert c.get("/api/v1/actions").json() == []
        assert c.get("/health").status_code == 200


def test_outage_window_then_recovery() -> None:
    cfg = TargetConfig(service_ms=1.0, service_dist="const", outages=((0.0, 0.8),))
    app = create_app(cfg)
    with AppClient(app) as c:
        body = webhook([make_alert("high_cpu", 1)])
        down = _post(c, body)
        health = c.get("/health")
        if app.state.target.elapsed() < 0.8:  # still inside the window when both answered
            assert down.status_code == 503 and "outage" in down.json()["error"]
            assert health.status_code == 503 and int(health.headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 10
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "never recovered from the outage"
            time.sleep(0.05)
        assert app.state.target.elapsed() >= 0.8
        assert _post(c, body).status_code == 200


def test_metrics_parse_and_show_the_queue() -> None:
    cfg = TargetConfig(workers=2, service_ms=400.0, service_dist="const")
    app = create_app(cfg)
    body = webhook([make_alert("high_cpu", 1)])

    async def scenario() -> tuple[dict[str, float], list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://target") as c:
            posts = [
                asyncio.create_task(c.post("/webhook/prometheus", json=body)) for _ in range(6)
            ]
            await asyncio.sleep(0.15)  # all six in: two in service, four queued
            text = (await c.get("/metrics")).text
            codes = [r.status_code for r in await asyncio.gather(*posts)]
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values.setdefault(sample.name, sample.value)
        return values, codes

    values, codes = asyncio.run(scenario())
    assert codes == [200] * 6
    assert values["kubetest_target_in_flight_requests"] == 6
    assert values["kubetest_target_busy_workers"] == 2
    assert values["kubetest_target_queue_depth"] == 4
    assert values["kubetest_target_workers"] == 2
    assert values["kubetest_target_service_ms"] == 400
    assert "process_cpu_seconds_total" in values or sys.platform != "linux"
    state = app.state.target
    assert (state.in_flight, state.waiting, state.busy, state.recorded) == (0, 0, 0, 6)


# ------------------------------------------------------------------ the real child process


def test_embedded_target_starts_and_leaves_nothing_behind(tmp_path: Any) -> None:
    log = tmp_path / "target.log"
    target = EmbeddedTarget(FAST, log_path=log)
    with target:
        assert target.base_url.startswith("http://127.0.0.1:")
        assert target.webhook_url == target.base_url + "/webhook/prometheus"
        pid = target.pid
        assert pid is not None and target.running
        with httpx.Client(trust_env=False, timeout=5) as c:
            assert c.get(target.base_url + "/health").json() == {"status": "ok"}
            resp = c.post(target.webhook_url, json=webhook([action_alert("restart_pod", 1)]))
            assert resp.status_code == 200
    assert not target.running
    deadline = time.monotonic() + 5
    while not _gone(pid):  # reaped by stop(); allow the kernel a moment
        assert time.monotonic() < deadline, f"target process {pid} still alive"
        time.sleep(0.05)
    target.stop()  # idempotent
    assert "listening on" in log.read_text()


def test_embedded_target_exits_when_its_parent_goes() -> None:
    target = EmbeddedTarget(FAST).start()
    try:
        proc = target._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.close()  # what the OS does when the parent dies
        assert proc.wait(timeout=10) is not None
    finally:
        target.stop()


def test_embedded_target_reports_a_failed_start() -> None:
    target = EmbeddedTarget(FAST, host="203.0.113.1", start_timeout_s=15)  # not a local address
    with pytest.raises(TargetStartError, match="exited with code"):
        target.start()
    assert not target.running


@pytest.mark.parametrize(
    "argv",
    [["--workers", "0"], ["--service-dist", "pareto"], ["--outage", "5"], ["--error-rate", "2"],
     ["--port", "70000"]],
)  # fmt: skip
def test_cli_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubetest.target", *argv], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_throughput_matches_workers_over_service_time() -> None:
    """Closed loop, N=32 clients, c=4 workers, D=50 ms: X = c/D = 80/s, W = N·D/c = 0.4 s."""
    workers, service_s, clients = 4, 0.050, 32
    warmup_s, window_s = 0.5, 2.5
    cfg = TargetConfig(workers=workers, service_ms=service_s * 1000, service_dist="const")
    body = json.dumps(webhook([make_alert("high_cpu", 1)])).encode()

    async def load(url: str) -> list[tuple[float, float]]:
        done: list[tuple[float, float]] = []  # (completion time, latency)
        limits = httpx.Limits(max_connections=clients * 2)
        async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as c:
            t0 = time.monotonic()
            end = t0 + warmup_s + window_s

            async def one_client() -> None:
                while (sent := time.monotonic()) < end:
                    resp = await c.post(url, content=body)
                    assert resp.status_code == 200
                    now = time.monotonic()
                    done.append((now - t0, now - sent))

            await asyncio.gather(*(one_client() for _ in range(clients)))
        return done

    with EmbeddedTarget(cfg) as target:
        done = asyncio.run(load(target.webhook_url))
    steady = [lat for t, lat in done if warmup_s <= t < warmup_s + window_s]
    throughput = len(steady) / window_s
    mean_latency = statistics.fmean(steady)
    expected_x = workers / service_s
    print(f"throughput {throughput:.1f}/s (theory {expected_x:.0f}), mean W {mean_latency:.3f} s")
    assert throughput == pytest.approx(expected_x, rel=0.15)
    assert mean_latency == pytest.approx(clients * service_s / workers, rel=0.2)
    assert throughput * mean_latency == pytest.approx(clients, rel=0.15)  # Little's law


# ------------------------------------------------------------------ auth and exposure


@pytest.mark.parametrize("api", ["webhook", "kubernaut-legacy", "kubernaut"])
def test_a_token_guards_every_route_but_the_probes(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetest.target.app import create_apps

    monkeypatch.setenv("KT_TARGET_TOKEN", "kt-target-token-123")
    apps = create_apps(TargetConfig(api=api, auth_token_env="KT_TARGET_TOKEN", **FAST_KW))
    good = {"Authorization": "Bearer kt-target-token-123"}
    bad = {"Authorization": "Bearer wrong"}
    guarded = [(apps.webhook, "/api/v1/actions"), (apps.webhook, "/api/v1/outcomes"),
               (apps.metrics or apps.webhook, "/metrics")]  # fmt: skip
    for app, path in guarded:
        with AppClient(app) as c:
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=bad).status_code == 401, path
            assert c.get(path, headers=good).status_code == 200, path
    probes = (apps.health, ["/healthz", "/readyz"]) if apps.health else (apps.webhook, ["/health"])
    with AppClient(probes[0]) as c:
        for path in probes[1]:
            assert c.get(path).status_code == 200, path  # as the real gateway's :8081


def test_without_a_token_the_routes_stay_open(client: AppClient) -> None:
    assert client.get("/api/v1/outcomes").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_binding_beyond_loopback_warns_in_one_line() -> None:
    from kubetest.target.server import exposure_warning

    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.5"):
        assert exposure_warning(host, FAST) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        line = exposure_warning(host, FAST)
        assert line is not None and "\n" not in line and host in line, host
        assert "no auth_token_env" in line
    guarded = TargetConfig(auth_token_env="KT_TARGET_TOKEN", **FAST_KW)
    assert "bearer token" in (exposure_warning("0.0.0.0", guarded) or "")


def test_the_metrics_scrape_sends_the_token_only_to_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubetest.metrics import _target_auth

    monkeypatch.setenv("KT_TARGET_TOKEN", "kt-target-token-123")
    own = _target_auth(
        "KT_TARGET_TOKEN", "http://127.0.0.1:9090/metrics", "http://127.0.0.1:8080/x"
    )
    assert own == {"Authorization": "Bearer kt-target-token-123"}
    assert _target_auth("KT_TARGET_TOKEN", "http://prom.example:9090/metrics",
                        "http://127.0.0.1:8080/x") == {}  # fmt: skip
    assert _target_auth(None, "http://127.0.0.1:9090/metrics", "http://127.0.0.1:8080/x") == {}
