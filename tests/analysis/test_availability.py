"""Availability from probe timestamps (downtime, bounds, budget, verdicts), and A3 against
held-out services on loopback: what counts as up and down, and which endpoint is judged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from aiohttp import web
from engine_servers import _LoopThread, closed_port

from kubetest.analysis.availability import availability_from_probes, downtime_budget
from kubetest.analysis.verdicts import apply_validity
from kubetest.endpoints import origin
from kubetest.errors import KubetestError, ParamsError
from kubetest.params import parse_params
from kubetest.probes import probe_endpoints
from kubetest.workbook import a3_availability
from kubetest.workbook.a3_availability import PROBE_LABEL, a3_validity, judge
from kubetest.workbook.context import TestContext
from kubetest.workloads import Pool


def probes(pattern: str, interval: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"t_s": [i * interval for i in range(len(pattern))], "ok": [c == "u" for c in pattern]}
    )


def test_budget_is_computed_from_the_window_not_the_guides_18_s() -> None:
    assert downtime_budget(30 * 60, 0.999) == pytest.approx(1.8)


def test_downtime_runs_from_first_failed_to_next_successful_probe() -> None:
    a = availability_from_probes(probes("uuuddduuuu"), window_s=10, target=0.9, interval_s=1)
    assert len(a.outages) == 1
    o = a.outages[0]
    assert (o.start_s, o.end_s, o.probes) == (3, 6, 3)
    assert a.downtime_s == 3 and a.downtime_low_s == 2 and a.downtime_high_s == 4
    assert a.availability == pytest.approx(0.7)
    assert a.resolution_s == 1


def test_bounds_allow_for_when_the_service_saw_each_probe() -> None:
    """A probe is seen by the service somewhere between its send and its answer: with
    answers 0.1 s after sending, the outage of probes 3-5 lasted at least from probe 3's
    answer (3.1) to probe 5's send (5), at most from probe 2's send to probe 6's answer."""
    p = probes("uuuddduuuu").assign(done_s=lambda f: f["t_s"] + 0.1)
    a = availability_from_probes(p, window_s=10, target=0.9, interval_s=1)
    assert a.downtime_s == 3  # first failed to next successful probe, as before
    assert a.downtime_low_s == pytest.approx(1.9) and a.downtime_high_s == pytest.approx(4.1)


def test_several_outages_and_one_still_open_at_the_end() -> None:
    a = availability_from_probes(probes("uduuuudd", 0.5), window_s=4.0, target=0.99, interval_s=0.5)
    assert [o.probes for o in a.outages] == [1, 2]
    assert a.outages[-1].open_ended and a.outages[-1].end_s == 4.0
    assert a.downtime_s == pytest.approx(0.5 + 1.0)


def test_verdicts() -> None:
    clean = availability_from_probes(probes("u" * 100, 0.1), 10, 0.95, 0.1)
    assert judge(clean).status == "PASS" and judge(clean).measured == 100
    down = availability_from_probes(probes("u" * 50 + "dd" + "u" * 48, 0.1), 10, 0.99, 0.1)
    assert down.downtime_s == pytest.approx(0.2) and down.budget_s == pytest.approx(0.1)
    assert judge(down).status == "FAIL"
    coarse = availability_from_probes(probes("u" * 10, 10.0), 100, 0.999, 10.0)
    verdict = judge(coarse)
    assert verdict.status == "INCONCLUSIVE" and "probe_interval_s" in verdict.details["reasons"][0]


# -- A3 against a held-out service on loopback -----------------------------------------------

Answer = Callable[[float, int], tuple[int, float]]


class Service(_LoopThread):
    """A held-out service on 127.0.0.1: every POST is its webhook, answered ``webhook(t, n)``
    → (status, delay s), ``t`` seconds after it started and ``n`` its POSTs before this one;
    ``GET /health`` answers ``health(t)``. Every POST body is kept."""

    def __init__(self, webhook: Answer, health: Callable[[float], int] = lambda _t: 200) -> None:
        super().__init__()
        self.webhook, self.health = webhook, health
        self.bodies: list[bytes] = []
        self.t0 = time.monotonic()

    async def _post(self, request: web.Request) -> web.Response:
        n = len(self.bodies)
        self.bodies.append(await request.read())
        status, delay_s = self.webhook(time.monotonic() - self.t0, n)
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.json_response({"status": status}, status=status)

    async def _get(self, _request: web.Request) -> web.Response:
        return web.Response(status=self.health(time.monotonic() - self.t0), text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._get)
        app.router.add_route("POST", "/{tail:.*}", self._post)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.2
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.t0 = time.monotonic()

    async def _close(self) -> None:
        await self.runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def probe_alerts(self) -> list[dict[str, Any]]:
        """The alerts of every POST that carried A3's probe label."""
        alerts = [a for b in self.bodies for a in json.loads(b).get("alerts", [])]
        return [a for a in alerts if a["labels"].get(PROBE_LABEL) == "availability"]


@contextmanager
def a3_context(
    tmp_path: Path, url: str, *, api: str = "webhook", health_url: str = "", **a3: object
) -> Iterator[TestContext]:
    params = tmp_path / "params.yaml"
    target = {"url": url, "api": api, "health_url": health_url or origin(url) + "/health"}
    params.write_text(yaml.safe_dump({"target": target, "a3_availability": a3}))
    ctx = TestContext.open("A3", str(params), str(tmp_path / "session"))
    try:
        yield ctx
    finally:
        ctx.close()


def outage(start_s: float, end_s: float) -> Answer:
    """503 from ``start_s`` to ``end_s`` after the service started, else 200."""
    return lambda t, _n: (503 if start_s <= t < end_s else 200, 0.0)


@pytest.mark.timeout(120)
def test_a_webhook_outage_behind_a_green_health_endpoint_fails_br_pa_001(tmp_path: Path) -> None:
    """The issue's case: the webhook answers 503 for 5 s while /health answers 200."""
    with Service(outage(10.0, 15.0)) as svc, a3_context(
        tmp_path, svc.base + "/webhook/prometheus",
        duration_min=0.5, probe_interval_s=0.5, target=0.999,
    ) as ctx:  # fmt: skip
        result = a3_availability.run(ctx)
    a = result.availability
    print(f"downtime {a.downtime_s:.3f} s [{a.downtime_low_s:.3f}, {a.downtime_high_s:.3f}]")
    assert result.probe == "webhook"
    assert 4.5 <= a.downtime_s <= 6.0 and len(a.outages) == 1
    assert result.requirement.status == "FAIL"
    d = result.requirement.details
    assert d["probe"] == "webhook" and d["judged_on"].startswith("the webhook (POST /webhook")
    assert result.series["health"].downtime_s == 0  # what the old A3 would have reported
    assert d["other_series"]["health"]["failed_probes"] == 0
    saved = json.loads(ctx.result_path.read_text())
    assert saved["probe"] == "webhook" and set(saved["series"]) == {"webhook", "health"}
    assert saved["validity"] == {"status": "VALID", "reasons": []} == d["validity"]
    assert {a["labels"]["alertname"] for a in svc.probe_alerts()} == {"HighMemoryUsage"}
    # without a pool: one fixed alert (unique: false), so every repeat is the same signal
    assert len({a["fingerprint"] for a in svc.probe_alerts()}) == 1


@pytest.mark.timeout(120)
def test_probe_health_keeps_the_webhook_outage_as_the_second_series(tmp_path: Path) -> None:
    with Service(outage(5.0, 10.0)) as svc, a3_context(
        tmp_path, svc.base + "/webhook/prometheus", probe="health",
        duration_min=0.25, probe_interval_s=0.5, target=0.9,
    ) as ctx:  # fmt: skip
        result = a3_availability.run(ctx)
    assert result.probe == "health"
    assert result.availability.downtime_s == 0 and result.requirement.status == "PASS"
    assert result.requirement.details["judged_on"].startswith("the health endpoint (GET /health")
    webhook = result.series["webhook"]
    assert 4.5 <= webhook.downtime_s <= 6.0
    assert result.requirement.details["other_series"]["webhook"]["outages"] == 1
    records = pd.read_csv(ctx.records_dir / "A3_probes.csv")
    assert set(records["endpoint"]) == {"webhook", "health"}
    fig = result.timeline()
    assert [ax.get_title() for ax in fig.axes] == ["health (judged)", "webhook"]


def test_429_is_down_and_counted_apart_as_throttled(tmp_path: Path) -> None:
    # POST 0 is the token check, 1 the probe alert's check: 6-10 are window probes 4-8
    throttle: Answer = lambda _t, n: (429 if 6 <= n <= 10 else 200, 0.0)  # noqa: E731
    with Service(throttle) as svc, a3_context(
        tmp_path, svc.base + "/webhook/prometheus", duration_min=2 / 60, probe_interval_s=0.1,
    ) as ctx:  # fmt: skip
        result = a3_availability.run(ctx)
    a = result.availability
    assert (a.failed_probes, a.throttled_probes, len(a.outages)) == (5, 5, 1)
    assert a.errors == {"http_4xx": 5}
    assert result.requirement.details["throttled_probes"] == 5
    assert result.series["health"].failed_probes == 0
    assert result.table.loc["throttled (429)", "webhook (judged)"] == 5


def test_timeouts_and_refused_connections_are_down(tmp_path: Path) -> None:
    slow: Answer = lambda _t, n: (200, 1.0 if 6 <= n <= 8 else 0.0)  # noqa: E731
    with Service(slow) as svc, a3_context(
        tmp_path, svc.base + "/webhook/prometheus",
        health_url=f"http://127.0.0.1:{closed_port()}/health",
        duration_min=2 / 60, probe_interval_s=0.1, probe_timeout_s=0.3,
    ) as ctx:  # fmt: skip
        result = a3_availability.run(ctx)
    webhook, health = result.series["webhook"], result.series["health"]
    assert webhook.errors == {"timeout": 3} and webhook.failed_probes == 3
    assert health.failed_probes == health.probes > 0 and health.errors == {"refused": health.probes}
    assert len(health.outages) == 1 and health.outages[0].open_ended


def test_duplicates_are_up_and_kubernaut_probes_name_one_workload(tmp_path: Path) -> None:
    """After the first 201 every probe is a 202 duplicate: up, and no RR per probe."""
    gateway: Answer = lambda _t, n: (201 if n <= 1 else 202, 0.0)  # noqa: E731
    pool = Pool(namespace="pool-ns", names=["kt-w-0", "kt-w-1", "kt-w-2"], owned=False)
    with Service(gateway) as svc, a3_context(
        tmp_path, svc.base + "/api/v1/signals/prometheus", api="kubernaut",
        duration_min=1 / 60, probe_interval_s=0.1, background_rate_per_min=600,
    ) as ctx:  # fmt: skip
        ctx.pool = lambda: pool  # type: ignore[method-assign]
        probes = probe_endpoints([a3_availability.probe_targets(ctx)["webhook"]], 1.0, 0.1)
        plan = a3_availability.background_plan(ctx)
    a = availability_from_probes(probes, 1.0, 0.999, 0.1)
    assert a.failed_probes == 0 and a.downtime_s == 0
    assert set(probes["outcome"]) == {"accepted", "duplicate"}
    assert (probes["outcome"] == "duplicate").sum() == len(probes) - 2
    alerts = svc.probe_alerts()
    assert len(alerts) == len(probes)
    assert {(a["labels"]["namespace"], a["labels"]["deployment"]) for a in alerts} == {
        ("pool-ns", "kt-w-0")
    }
    assert not any("pod" in a["labels"] for a in alerts)  # the gateway resolves the Deployment
    assert len(set(svc.bodies)) == 1  # the same alert every time
    assert plan.pool is not None and plan.pool.names == ["kt-w-1", "kt-w-2"]  # not the probe's
    assert plan.abort is None  # slo.abort would leave the rest of the window without load


def test_a3_validity_from_a_restart_and_from_its_background_load() -> None:
    """A restart mid-window, or a background load not as asked: INCONCLUSIVE, never
    INVALID (the probes are not the engine's load), so an outage's FAIL stands."""
    assert a3_validity({"restarts": []}, None).status == "VALID"
    restart = {"restarts": [{"t_s": 12.0, "why": "process_start_time_seconds changed"}]}
    v = a3_validity(restart, {})
    assert v.status == "INCONCLUSIVE" and v.reasons[0].startswith("target restarted mid-test")
    lagging = {"saturated": True, "saturation_reasons": ["schedule lag p99 80 ms > 50 ms"]}
    v = a3_validity(None, lagging)
    assert v.status == "INCONCLUSIVE"
    assert v.reasons == ["background load: generator: schedule lag p99 80 ms > 50 ms"]
    a = availability_from_probes(probes("uuddu", 1.0), window_s=5.0, target=0.999, interval_s=1.0)
    assert apply_validity(judge(a), v).status == "FAIL"  # the outage the probes saw stands
    up = availability_from_probes(probes("uuuuu", 1.0), window_s=5.0, target=0.5, interval_s=1.0)
    assert judge(up).status == "PASS" and apply_validity(judge(up), v).status == "INCONCLUSIVE"


def test_kubernaut_legacy_probes_are_new_alerts_each_time(tmp_path: Path) -> None:
    """Its cooldown answers a repeated alertname 500: each probe varies it."""
    with a3_context(tmp_path, "http://127.0.0.1:9/alerts", api="kubernaut-legacy") as ctx:
        body = a3_availability.probe_body(ctx)
        assert callable(body)
        names = {json.loads(body(k))["alerts"][0]["labels"]["alertname"] for k in range(3)}
    assert len(names) == 3


def test_a_probe_alert_the_service_refuses_stops_a3_before_its_window(tmp_path: Path) -> None:
    refuse: Answer = lambda _t, _n: (400, 0.0)  # noqa: E731
    with Service(refuse) as svc, a3_context(
        tmp_path, svc.base + "/api/v1/signals/prometheus", api="kubernaut", duration_min=1,
    ) as ctx:  # fmt: skip
        with pytest.raises(KubetestError, match="probe alert was refused.*alerts.workloads"):
            a3_availability.run(ctx)
        assert not ctx.result_path.exists()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"probe": "ping"}, "a3_availability.probe"),
        ({"background_rate_per_min": 0}, "a3_availability.background_rate_per_min"),
        ({"background_rate_per_min": -600}, "a3_availability.background_rate_per_min"),
        ({"probe_timeout_s": 0}, "a3_availability.probe_timeout_s"),
    ],
)
def test_a3_params_are_checked(section: dict[str, object], key: str) -> None:
    with pytest.raises(ParamsError, match=key):
        parse_params({"a3_availability": section})
    assert parse_params({"a3_availability": {}}).a3_availability.probe == "webhook"
