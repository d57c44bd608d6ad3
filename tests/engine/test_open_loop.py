"""Open loop: latency from the intended time, and honest self-judgement (saturation)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from engine_servers import WebServer, closed_port, ok_handler

from kubetest.engine import COLUMNS, LoadPlan, read_records, run_load
from kubetest.engine.schedule import constant, poisson
from kubetest.errors import KubetestError
from kubetest.payloads import PayloadFactory


def test_modest_rate_against_a_fast_server_is_not_saturated(
    tmp_path: Path, engine_client: str
) -> None:
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(url=server.url, schedule=constant(100, 2), client=engine_client)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["saturated"] is False, s["saturation_reasons"]
    assert s["sent_count"] == s["completed_count"] == s["success_count"] == 200
    assert s["success_rate"] == 1.0 and s["outcomes"]["accepted"] == 200
    assert s["achieved_rate_per_s"] == pytest.approx(100, rel=0.05)
    assert s["target_rate_per_s"] == pytest.approx(100)
    assert s["complete"] is True and s["interrupted"] is False
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert 0 <= s["loop_busy"] <= 1.5
    df = read_records(result.records_path)
    assert tuple(df.columns) == COLUMNS and len(df) == 200
    assert sorted(df.seq) == list(range(200))
    assert (df.latency_s >= df.service_s - 1e-6).all()  # intended <= sent
    assert (df.lag_s >= 0).all()  # never sent early
    np.testing.assert_allclose(np.sort(df.intended_s), constant(100, 2), atol=1e-6)
    assert result.histogram.get_total_count() == 200
    assert (tmp_path / "records.summary.json").exists()


def test_a_stall_shows_in_open_loop_latency(tmp_path: Path, engine_client: str) -> None:
    """The server stalls 0.5 s once; requests due during the stall wait for it. An open-loop
    generator keeps sending on schedule, so each of them reports the wait (a closed loop
    would report one slow request and hide the rest)."""
    stall: dict[str, float] = {}

    async def stalling(request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        start = stall.setdefault("start", now + 0.5)
        if start <= now < start + 0.5:
            await asyncio.sleep(start + 0.5 - now)
        return web.Response(text="ok")

    with WebServer(stalling) as server:
        plan = LoadPlan(url=server.url, schedule=constant(50, 2), client=engine_client)
        result = run_load(plan, tmp_path, progress=False)
    df = read_records(result.records_path)
    slow = df[df.latency_s > 0.1]
    # ~25 arrivals fall in the 0.5 s stall; those in its first 0.4 s wait > 0.1 s
    assert len(slow) >= 12, df.latency_s.describe()
    assert df.latency_s.max() >= 0.4
    # they were *sent* on time: the wait is the target's, measured from the intended time
    assert (slow.lag_s < 0.2).all()
    assert result.summary["p99"] >= 0.3
    assert result.summary["saturated"] is False, result.summary["saturation_reasons"]


def test_slow_target_with_in_flight_room_does_not_flag_the_generator(
    tmp_path: Path, engine_client: str
) -> None:
    with WebServer(ok_handler(delay_s=1.0)) as server:
        plan = LoadPlan(
            url=server.url, schedule=constant(40, 1.5), timeout_s=5, client=engine_client
        )
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["success_count"] == 60
    assert s["p50"] >= 1.0
    assert s["max_in_flight_seen"] >= 30
    assert s["saturated"] is False, s["saturation_reasons"]


def test_in_flight_cap_drops_arrivals_and_marks_saturation(
    tmp_path: Path, engine_client: str
) -> None:
    with WebServer(ok_handler(delay_s=0.5)) as server:
        plan = LoadPlan(url=server.url, schedule=constant(100, 1), max_in_flight=5, timeout_s=5,
                        client=engine_client)  # fmt: skip
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert server.max_in_flight <= 5
    assert s["max_in_flight_seen"] == 5
    assert s["errors"]["dropped"] >= 80
    assert s["late_or_dropped"] == s["errors"]["dropped"]
    assert s["saturated"] is True
    assert any("dropped" in r for r in s["saturation_reasons"])
    # dropped arrivals are records (with their intended time) but not target outcomes
    assert s["outcomes"]["failed"] == 0
    assert s["success_rate"] == 1.0 and s["completed_count"] == s["sent_count"]
    df = read_records(result.records_path)
    assert len(df) == 100
    dropped = df[df.error == "dropped"]
    assert (dropped.outcome == "failed").all() and (dropped.status == 0).all()
    assert (dropped.service_s == 0).all()


def test_generator_behind_schedule_records_late_and_flags_rate(
    tmp_path: Path, engine_client: str
) -> None:
    # max_lag_s tiny: every arrival is "too late" once the dispatcher sees it
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(
            url=server.url, schedule=constant(100, 1), max_lag_s=1e-9, client=engine_client
        )
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["errors"].get("late", 0) >= 90
    assert s["saturated"] is True
    assert any(r.startswith("sent ") for r in s["saturation_reasons"])
    assert any("late" in r for r in s["saturation_reasons"])


def test_poisson_schedule_and_kubernaut_profile(tmp_path: Path, engine_client: str) -> None:
    statuses = iter([201, 202, 200, 429] * 100)

    async def kubernaut(request: web.Request) -> web.StreamResponse:
        return web.Response(status=next(statuses), text="{}")

    with WebServer(kubernaut) as server:
        plan = LoadPlan(
            url=server.url, api="kubernaut", schedule=poisson(80, 1, seed=1), client=engine_client
        )
        result = run_load(plan, tmp_path, progress=False)
    o = result.summary["outcomes"]
    n = len(poisson(80, 1, seed=1))
    assert sum(o.values()) == n
    assert o["accepted"] + o["duplicate"] + o["rejected"] + o["throttled"] == n
    assert min(o["accepted"], o["duplicate"], o["rejected"], o["throttled"]) >= n // 4 - 1
    assert result.summary["success_count"] == o["accepted"]


def test_bearer_token_is_sent_but_never_stored(tmp_path: Path, monkeypatch, engine_client) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("KUBETEST_TEST_TOKEN", secret)
    with WebServer(ok_handler()) as server:
        plan = LoadPlan(
            url=server.url,
            schedule=constant(20, 0.25),
            auth_token_env="KUBETEST_TEST_TOKEN",
            client=engine_client,
        )
        run_load(plan, tmp_path, progress=False)
    assert {h.get("Authorization") for h in server.headers} == {f"Bearer {secret}"}
    for f in tmp_path.iterdir():
        assert secret not in f.read_text()


def test_missing_token_or_bad_plan_refused_before_sending(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KUBETEST_NO_SUCH_TOKEN", raising=False)
    url = "http://127.0.0.1:9/webhook/prometheus"
    with pytest.raises(KubetestError, match="KUBETEST_NO_SUCH_TOKEN"):
        run_load(
            LoadPlan(url=url, schedule=constant(1, 1), auth_token_env="KUBETEST_NO_SUCH_TOKEN"),
            tmp_path,
            progress=False,
        )
    with pytest.raises(KubetestError, match="URL"):
        run_load(LoadPlan(url="ftp://x", schedule=constant(1, 1)), tmp_path)
    with pytest.raises(KubetestError, match="schedule"):
        run_load(LoadPlan(url=url), tmp_path)
    with pytest.raises(KubetestError, match="api"):
        run_load(LoadPlan(url=url, api="soap", schedule=constant(1, 1)), tmp_path)
    monkeypatch.setattr("kubetest.engine.cluster.CONNECT_TIMEOUT_S", 1.0)
    nobody = f"tcp://127.0.0.1:{closed_port()}"  # loopback only: no name to resolve
    with pytest.raises(KubetestError, match="Dask scheduler"):
        run_load(LoadPlan(url=url, schedule=constant(1, 1)), tmp_path, scheduler=nobody)


def test_run_load_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A notebook cell runs inside ipykernel's loop: the engine must not need asyncio.run."""

    async def cell() -> dict[str, object]:
        with WebServer(ok_handler()) as server:
            plan = LoadPlan(
                url=server.url, schedule=constant(20, 0.5), payload=PayloadFactory(["disk_full"])
            )
            return run_load(plan, tmp_path, progress=False).summary

    s = asyncio.run(cell())
    assert s["success_count"] == 10


def test_a_pools_templates_are_built_before_the_start_instant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workload pool means a body template per workload and type, hundreds of them:
    built after the common start instant, they would make the first arrivals late (not
    sent). Here building them takes 1.5 s, and no arrival is late."""
    from kubetest.engine.pool import WorkloadScheduler

    real_warm = PayloadFactory.warm
    calls: list[int] = []

    def slow_warm(self: PayloadFactory, workloads: list[str] | None = None) -> None:
        if workloads and not calls:
            time.sleep(1.5)
        calls.append(len(workloads or []))
        real_warm(self, workloads)

    monkeypatch.setattr(PayloadFactory, "warm", slow_warm)
    with WebServer(ok_handler(201)) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 1.5),
                        pool=WorkloadScheduler([f"w{i}" for i in range(40)], "ns"))  # fmt: skip
        result = run_load(plan, tmp_path, progress=False)
    df = read_records(result.records_path)
    assert len(df) == 30 and not (df["error"] == "late").any(), df["error"].value_counts()
    assert calls and calls[0] == 40  # the pool's templates, before the run
    assert plan.pool is not None and plan.pool.stats.to_free == 30
