"""The Kubernaut profile's refusals, in the order the gateway's middlewares apply them:
validation, freshness, content type, auth and its grant, injected faults, ports."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_apps import AppClient
from gateway_support import CONTROLLER, KUBE_TOKEN, SIGNALS, Gateway, _problem, alert_for, body_of

from kubetest.engine import classify, problem_detail
from kubetest.target import TargetConfig, create_app

# ---------------------------------------------------------------- refusals, in order


def test_alertname_is_required_and_a_missing_severity_is_unknown() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        gw.deploy("api")
        nameless = alert_for("web")
        del nameless["labels"]["alertname"]
        _problem(gw.post(body_of(nameless)), 400, "Signal validation failed: alertName is required")
        assert gw.rrs() == []
        # prometheus_adapter.go: an empty severity becomes "unknown", which validates
        no_severity = alert_for("api")
        del no_severity["labels"]["severity"]
        assert gw.post(body_of(no_severity)).status_code == 201
        assert gw.rrs()[0]["spec"]["severity"] == "unknown"
        assert (
            'gateway_signals_received_total{severity="unknown",source_type="prometheus"} 1.0'
            in gw.metrics()
        )


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
        assert (
            gw.post(
                body_of(missing | {"labels": alert_for("api")["labels"]}, alert_for("api", 2))
            ).status_code
            == 207
        )
        assert gw.rrs() and all(o["spec"]["signalName"] for o in gw.rrs())


def test_x_timestamp_is_checked_instead_of_the_body() -> None:
    with Gateway() as gw:
        gw.deploy("web")
        body = body_of(alert_for("web"))
        old = gw.post(body, headers={"X-Timestamp": str(int(time.time()) - 600)})
        _problem(
            old, 400, "timestamp too old: possible replay attack", instance="", request_id=False
        )
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
            "application/json"
        )
        bad = gw.post(raw, headers={"Content-Type": "nonsense"})
        _problem(bad, 400, "Invalid Content-Type header format", request_id=False)
        assert (
            gw.post(raw, headers={"Content-Type": "application/json; charset=utf-8"}).status_code
            == 201
        )


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
            return await asyncio.gather(
                *(client._client.post(SIGNALS, json=body) for _ in range(3))
            )

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
            assert (resp.status_code, resp.json()) == (
                code,
                {"detail": detail, "status": code, "title": "Unauthorized", "type": "about:blank"},
            ), header
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
                "Kubernetes API is not reachable"
            )


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
