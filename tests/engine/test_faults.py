"""Fault matrix (issue 7): the engine keeps measuring whatever the target does, and the
reference target stays up under abuse. Every server here is started by the test on
127.0.0.1 and every run is bounded in time and count."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp import web
from engine_servers import HOSTILE, RawServer, WebServer, hostile_service, read_request

from kubetest import control
from kubetest.alerts import make_alert, webhook
from kubetest.checks import check_target
from kubetest.engine import LoadPlan, read_records, run_load
from kubetest.engine.schedule import constant
from kubetest.metrics import MetricsScrape
from kubetest.params import Params
from kubetest.probes import ProbeTarget, probe_endpoints
from kubetest.target.embedded import EmbeddedTarget
from kubetest.target.model import TargetConfig

pytestmark = pytest.mark.timeout(120)


def plan(
    url: str, rate: float, duration: float, timeout_s: float = 2.0, client: str = "fast"
) -> LoadPlan:
    return LoadPlan(
        url=url, mode="open", schedule=constant(rate, duration), timeout_s=timeout_s, client=client
    )


def test_slow_loris_response_is_a_timeout(tmp_path: Path, engine_client: str) -> None:
    """Headers at once, then the body one byte at a time: the request times out."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    with RawServer(drip) as server:
        p = plan(server.url, 10, 1.0, timeout_s=0.5, client=engine_client)
        result = run_load(p, tmp_path, progress=False)
    records = read_records(result.records_path)
    assert len(records) == 10
    assert set(records["error"]) == {"timeout"} and set(records["outcome"]) == {"failed"}
    assert result.summary["saturated"] is False  # the target was slow, not the generator


def test_oversized_response_is_classed_and_does_not_break_the_run(
    tmp_path: Path, engine_client: str
) -> None:
    big = b"{" + b" " * (8 << 20) + b"}"  # 8 MiB of answer to a tiny request

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=big)

    with WebServer(huge) as server:
        p = plan(server.url, 5, 1.0, timeout_s=10, client=engine_client)
        result = run_load(p, tmp_path, progress=False)
    records = read_records(result.records_path)
    assert len(records) == 5
    assert set(records["error"]) == {"oversized"} and set(records["status"]) == {200}
    assert result.summary["errors"] == {"oversized": 5}


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


#: What each hostile answer must be classed as, engine and control plane alike.
HOSTILE_CLASS = {"endless-chunked": "oversized", "announced-2GB": "oversized",
                 "trickle-1Bps": "timeout", "trickle-headers": "timeout"}  # fmt: skip


@pytest.mark.parametrize("name", list(HOSTILE))
def test_engine_bounds_hostile_answers(tmp_path: Path, name: str, engine_client: str) -> None:
    """Bodies that never end, announce 2 GB or trickle: bounded time, memory, one class."""
    before, t0 = _peak_mb(), time.monotonic()
    with RawServer(HOSTILE[name]) as server:
        p = plan(server.url, 10, 1.0, timeout_s=3.0, client=engine_client)
        result = run_load(p, tmp_path, progress=False)
    took = time.monotonic() - t0
    records = read_records(result.records_path)
    assert len(records) == 10 and set(records["error"]) == {HOSTILE_CLASS[name]}
    assert took < 1.0 + 3.0 + 10
    assert _peak_mb() - before < 500


def test_a_body_at_the_cap_is_read_and_classified_one_past_it_is_not(
    tmp_path: Path, engine_client: str
) -> None:
    """``max_body_bytes`` is a hard edge, announced (Content-Length) or not (chunked)."""
    body = json.dumps({"results": [{"status": 201}]}).encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        size = len(body) + (1 if request.path.endswith("/over") else 0)
        resp = web.StreamResponse(status=207)
        if request.path.startswith("/chunked"):
            resp.enable_chunked_encoding()
        else:
            resp.content_length = size
        await resp.prepare(request)
        await resp.write(body + b" " * (size - len(body)))
        return resp

    with WebServer(answer) as server:
        base = f"http://127.0.0.1:{server.port}"
        for path, error in (("/plain/at", ""), ("/plain/over", "oversized"),
                            ("/chunked/at", ""), ("/chunked/over", "oversized")):  # fmt: skip
            p = LoadPlan(url=base + path, api="kubernaut", schedule=constant(5, 0.4),
                         timeout_s=5, max_body_bytes=len(body), client=engine_client)  # fmt: skip
            out = tmp_path / path.strip("/").replace("/", "_")
            records = read_records(run_load(p, out, progress=False).records_path)
            assert set(records["error"]) == {error}, path
            assert set(records["outcome"]) == ({"accepted"} if not error else {"failed"}), path


@pytest.mark.parametrize("name", list(HOSTILE))
def test_control_plane_calls_are_capped_and_deadlined(name: str) -> None:
    """The one module every control-plane call goes through: a clear class, in time."""
    before = _peak_mb()
    with RawServer(HOSTILE[name]) as server:
        url = f"http://127.0.0.1:{server.port}/health"
        t0 = time.monotonic()
        with pytest.raises(httpx.HTTPError) as info:
            control.get(url, timeout_s=3.0)
        took = time.monotonic() - t0
        probes = probe_endpoints([ProbeTarget("health", url, 1.0)], 2.0, 0.5)
        sample = MetricsScrape(Path(os.devnull), url=url, interval_s=0.5)
        with control.client(timeout_s=2.0, cap=control.METRICS_CAP) as client:
            rows, error = sample._scrape(client), sample.last_error
    assert control.error_class(info.value) == HOSTILE_CLASS[name] and took < 3.0 + 10
    assert len(probes) >= 3 and set(probes["error"]) == {HOSTILE_CLASS[name]}
    assert not probes["ok"].any() and (probes["done_s"] - probes["t_s"]).max() < 1.0 + 10
    assert rows == [] and sample.errors == 1 and type(info.value).__name__ in error
    assert _peak_mb() - before < 500


def test_target_check_names_a_flooding_health_endpoint() -> None:
    with RawServer(HOSTILE["endless-chunked"]) as server:
        url = f"http://127.0.0.1:{server.port}/health"
        t0 = time.monotonic()
        check = check_target(Params(), timeout_s=3.0, health_url=url)
    assert check.status == "failed" and "oversized" in check.detail
    assert "health_url" in check.fix and time.monotonic() - t0 < 3.0 + 10


@pytest.mark.timeout(240)
def test_hostile_service_leaves_check_and_a1_bounded(tmp_path: Path) -> None:
    """Every answer announces 2 GB and /health never ends: ``kubetest check`` and a 15 s
    A1 at 600/min end within their timeouts + 10 s, each under 500 MB peak RSS."""
    with RawServer(hostile_service) as server:
        base = f"http://127.0.0.1:{server.port}"
        params = tmp_path / "hostile.yaml"
        params.write_text(yaml.safe_dump({
            "target": {"url": base + "/webhook/prometheus", "health_url": base + "/health",
                       "metrics_url": base + "/metrics", "timeout_s": 5},
            "a1_response_time": {"rate_per_min": 600, "duration_min": 0.25},
        }))  # fmt: skip
        runs = {}
        for name, args in (
            ("check", ["check"]),
            ("run", ["run", "--only", "A1", "--outputs", str(tmp_path), "--session", "hostile"]),
        ):
            before, t0 = _peak_mb(resource.RUSAGE_CHILDREN), time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "kubetest", *args, "--params", str(params)],
                capture_output=True, text=True, timeout=180, cwd=tmp_path,
            )  # fmt: skip
            runs[name] = (proc, time.monotonic() - t0, _peak_mb(resource.RUSAGE_CHILDREN) - before)
    check, took, grew = runs["check"]
    assert check.returncode == 1 and "oversized" in check.stdout, check.stderr[-2000:]
    assert took < 5 + 10 and grew < 500
    run, took, grew = runs["run"]
    assert run.returncode == 0, run.stderr[-2000:]
    a1_s = float(re.search(r"A1: done in (\d+) s", run.stderr).group(1))  # type: ignore[union-attr]
    assert a1_s < 15 + 5 + 10 and grew < 500
    summary = json.loads((tmp_path / "hostile" / "records" / "A1.summary.json").read_text())
    assert summary["errors"] == {"oversized": 150}


class Restartable:
    """An HTTP 200 server on a fixed loopback port that can go away and come back."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def up(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self.server.sockets[0].getsockname()[1]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def down(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in list(self.writers):  # kept-alive connections die with the target
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_target_dying_and_coming_back_mid_run(tmp_path: Path, engine_client: str) -> None:
    """Refused while the target is down, accepted before and after, nothing lost."""
    server = Restartable()
    server.up()
    url = f"http://127.0.0.1:{server.port}/webhook/prometheus"
    box: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: box.update(
            result=run_load(
                plan(url, 20, 4.0, timeout_s=1.0, client=engine_client), tmp_path, progress=False
            )
        )
    )
    thread.start()
    time.sleep(1.5)
    server.down()
    time.sleep(1.0)
    server.up()
    thread.join(timeout=30)
    server.close()
    records = read_records(box["result"].records_path)  # type: ignore[attr-defined]
    assert len(records) == 80 and records["seq"].is_unique
    records = records.sort_values("intended_s").reset_index(drop=True)
    failed = records.index[records["outcome"] != "accepted"]
    assert len(failed) >= 5, "the outage was not seen"
    # one contiguous outage: accepted before it, refused during it, accepted after it
    outage = records.loc[failed.min() : failed.max()]
    assert set(outage["error"]) <= {"refused", "reset"} and (outage["outcome"] == "failed").all()
    assert failed.min() > 5 and failed.max() < len(records) - 5


def test_sigkill_leaves_readable_records(tmp_path: Path) -> None:
    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"ok")

    with WebServer(ok) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubetest.engine", "--url", server.url, "--rate", "200",
             "--duration", "20", "--out", str(tmp_path), "--name", "killed", "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        path = tmp_path / "killed.csv"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (path.exists() and path.stat().st_size > 20_000):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    records = read_records(path)  # a torn last line is dropped, the rest is intact
    assert len(records) > 50
    assert records["seq"].is_unique and (records["outcome"] == "accepted").all()


@pytest.fixture(scope="module")
def target() -> EmbeddedTarget:
    t = EmbeddedTarget(TargetConfig(workers=4, service_ms=1, service_dist="const")).start()
    yield t
    t.stop()


def _healthy(t: EmbeddedTarget) -> bool:
    return httpx.get(t.base_url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (json.dumps({"version": "4", "status": "firing"}).encode(), 400),
        (
            json.dumps({"version": "4", "status": "firing", "alerts": [{"labels": {}}]}).encode(),
            400,
        ),
        (b"x" * (10 << 20), 413),
    ],
    ids=["invalid-json", "missing-alerts", "alert-without-alertname", "10MB-body"],
)
def test_target_refuses_abuse_with_a_reason_and_stays_up(
    target: EmbeddedTarget, body: bytes, status: int
) -> None:
    resp = httpx.post(
        target.webhook_url, content=body, timeout=30, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status
    assert resp.json().get("error") or resp.json().get("detail")
    assert _healthy(target)


def test_target_refuses_ten_thousand_alerts_in_one_webhook(target: EmbeddedTarget) -> None:
    body = webhook([make_alert("high_cpu", i) for i in range(10_000)])
    resp = httpx.post(target.webhook_url, json=body, timeout=60)
    assert resp.status_code == 413 and "alerts" in resp.text
    assert _healthy(target)


def test_slow_client_does_not_block_the_target(target: EmbeddedTarget) -> None:
    """A client trickling its body holds one connection, not the service."""
    import socket

    host, port = "127.0.0.1", int(target.base_url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=5) as slow:
        head = b"POST /webhook/prometheus HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        slow.sendall(head + b"Content-Type: application/json\r\n\r\n{")
        for _ in range(3):
            slow.sendall(b" ")
            assert _healthy(target)
            ok = httpx.post(
                target.webhook_url, json=webhook([make_alert("pod_crash", 1)]), timeout=10
            )
            assert ok.status_code == 200
            time.sleep(0.2)


def test_a_full_disk_stops_the_run_with_one_clear_line(tmp_path: Path) -> None:
    """Records that cannot be written make the run stop with a KubetestError (one line
    on the CLI), not a traceback and not load sent into the void."""
    from kubetest.errors import RecordsWriteError

    (tmp_path / "full.csv").symlink_to("/dev/full")  # every write: ENOSPC

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"ok")

    with WebServer(ok) as server, pytest.raises(RecordsWriteError) as info:
        run_load(plan(server.url, 50, 2.0), tmp_path, name="full", progress=False)
    message = str(info.value)
    assert "No space left on device" in message and "\n" not in message
    assert server.requests < 100  # it stopped instead of sending the whole plan
