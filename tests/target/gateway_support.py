"""The Kubernaut profile of the reference target in a test: in-process, on a fake clock,
with the helpers that build alerts and read RFC 7807 problems."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from asgi_apps import AppClient, FakeClock

from kubetest.alerts import make_alert, webhook
from kubetest.target import TargetConfig
from kubetest.target.app import TargetApps, create_apps

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
        self.apps: TargetApps = create_apps(
            TargetConfig(**(fields | overrides)), kube_token=KUBE_TOKEN, clock=self.clock
        )
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


def alert_for(
    deployment: str, seq: int = 1, *, namespace: str = "test-workloads", **labels: str
) -> dict[str, Any]:
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
    keys = ["type", "title", "detail", "status", "instance"] + (
        ["request_id"] if request_id else []
    )
    assert list(doc) == keys
    assert doc["detail"] == detail and doc["status"] == code and doc["instance"] == instance
    assert doc["type"].startswith("https://kubernaut.ai/problems/")
    if request_id:
        assert doc["request_id"] == resp.headers["x-request-id"]
    return doc
