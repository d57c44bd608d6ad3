"""The collector during a run: frozen heap, raised thresholds, previous state restored."""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from engine_servers import WebServer

from kubetest.alerts import fingerprint
from kubetest.collector import RUN_GC_THRESHOLDS, quiet_gc
from kubetest.engine import LoadPlan, run_load
from kubetest.engine.schedule import constant
from kubetest.engine.shard import run_shard
from kubetest.errors import KubetestError
from kubetest.payloads import PayloadFactory
from kubetest.probes import ProbeTarget, probe_endpoints


def _state() -> tuple[bool, tuple[int, int, int], int]:
    return gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()


def test_quiet_gc_freezes_and_restores_even_on_error() -> None:
    before = _state()
    with pytest.raises(RuntimeError), quiet_gc():
        assert gc.get_threshold() == RUN_GC_THRESHOLDS and gc.get_freeze_count() > 0
        assert gc.isenabled()  # young collections still reclaim the run's cycles
        raise RuntimeError("boom")
    assert _state() == before


def test_quiet_gc_keeps_a_disabled_collector_disabled_and_nests() -> None:
    gc.disable()
    try:
        before = _state()
        with quiet_gc():
            with quiet_gc():  # a second shard in the same process
                pass
            assert gc.get_threshold() == RUN_GC_THRESHOLDS  # still the first one's period
        assert _state() == before and not gc.isenabled()
    finally:
        gc.enable()


def test_a_run_is_quiet_and_sends_exact_bodies(tmp_path: Path) -> None:
    """During the run (seen by the in-process server) the heap is frozen with the run's
    thresholds; after it, the previous state. Every body is Alertmanager-exact."""
    seen: list[tuple[tuple[int, int, int], int]] = []
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        bodies.append(await request.read())
        return web.Response(text="ok")

    before = _state()
    factory = PayloadFactory(["high_memory", "random"], api="kubernaut-legacy", seed=2)
    with WebServer(handler) as server:
        plan = LoadPlan(url=server.url, schedule=constant(200, 1), payload=factory)
        result = run_load(plan, tmp_path, progress=False)
    assert _state() == before
    assert result.summary["success_count"] == 200
    assert all(t == RUN_GC_THRESHOLDS and frozen > 0 for t, frozen in seen)
    for raw in bodies:
        alert = json.loads(raw)["alerts"][0]
        seq = int(alert["labels"]["kubetest_seq"])
        want = json.loads(factory.reference_body(seq)[0])["alerts"][0]
        assert alert.pop("startsAt") and want.pop("startsAt")
        assert alert == want and fingerprint(alert["labels"]) == alert["fingerprint"]


def test_gc_state_is_restored_when_a_shard_fails(tmp_path: Path) -> None:
    before = _state()
    plan = LoadPlan(url="http://127.0.0.1:9/", schedule=constant(10, 1),
                    auth_token_env="KUBETEST_SURELY_UNSET_TOKEN")  # fmt: skip
    with pytest.raises(KubetestError):
        run_shard(plan, 0, 1, time.time() + 0.2, tmp_path / "r.csv")
    assert _state() == before


def test_concurrent_shards_share_one_quiet_period() -> None:
    before = _state()
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with quiet_gc():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    with quiet_gc():
        pass
    assert gc.get_threshold() == RUN_GC_THRESHOLDS  # the other one is still running
    release.set()
    t.join(5)
    assert _state() == before


def test_probes_run_with_a_quiet_collector() -> None:
    """A3's probe loop: a full collection in a notebook kernel held it 110-140 ms, past a
    short window's downtime budget; during probing the heap is frozen, afterwards the
    previous state."""
    seen: list[tuple[tuple[int, int, int], int]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return web.Response(text="ok")

    before = _state()
    with WebServer(handler) as server:  # a webhook: POST
        target = ProbeTarget("webhook", server.url, 2.0, method="POST", body=b"{}")
        probes = probe_endpoints([target], 0.3, 0.05)
    assert _state() == before
    assert len(seen) == len(probes) >= 5 and bool(probes["ok"].all())
    assert all(t == RUN_GC_THRESHOLDS and frozen > 0 for t, frozen in seen)
