"""Open loop without a task per request (``engine.direct``, ``FastClient.send_now``):
requests written by the dispatcher onto kept-alive connections time out, are cancelled
and are recorded like those of the task path. Every server is on 127.0.0.1, started by
the test; every run is bounded."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from engine_servers import RawServer, read_request

from kubetest.engine import LoadPlan, read_records, run_load
from kubetest.engine.client import make_session
from kubetest.engine.fastclient import FastClient
from kubetest.engine.schedule import constant
from kubetest.engine.transport import AiohttpTransport, direct_client, make_transport

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _answers_once_then_hangs(reader: asyncio.StreamReader, writer: Any) -> None:
    """The first request on a connection is answered; the next one never is."""
    await read_request(reader)
    writer.write(OK)
    await writer.drain()
    await read_request(reader)
    await asyncio.sleep(30)


def test_send_now_times_out_and_is_cancelled() -> None:
    """``send_now`` needs an idle connection; its request ends once, by the deadline queue
    (a timeout, on time) or by ``cancel_all``."""
    ended: list[tuple[Any, int, type, float]] = []

    def on_done(ctx: Any, status: int, body: bytes, exc: BaseException | None) -> None:
        ended.append((ctx, status, type(exc), time.monotonic()))

    async def scenario(url: str) -> None:
        client = FastClient(url, max_connections=4, timeout_s=0.3, max_body_bytes=1000)
        assert not client.send_now(b"{}", b"", on_done, "no idle connection")
        assert await client.post(b"{}") == (200, b"ok")
        sent = time.monotonic()
        assert client.send_now(b"{}", b"", on_done, "times out")
        await asyncio.sleep(0.7)
        assert [e[:3] for e in ended] == [("times out", 0, TimeoutError)]
        assert 0.29 <= ended[0][3] - sent < 0.5
        assert await client.post(b"{}") == (200, b"ok")  # on a new connection
        assert client.send_now(b"{}", b"", on_done, "cancelled")
        assert client.cancel_all() == 1 and client.cancel_all() == 0
        assert ended[-1][:3] == ("cancelled", 0, asyncio.CancelledError)
        await client.close()

    with RawServer(_answers_once_then_hangs) as server:
        asyncio.run(scenario(server.url))


def test_direct_sends_are_recorded_like_task_sends(tmp_path: Path, engine_client: str) -> None:
    """Against a server that answers each connection once, then hangs: every second
    request goes out on a kept-alive connection (the direct path, with the fast client)
    and times out; the records have the same classes and intended-time latencies."""
    with RawServer(_answers_once_then_hangs) as server:
        plan = LoadPlan(
            url=server.url, schedule=constant(20, 0.5), client=engine_client, timeout_s=0.4
        )
        result = run_load(plan, tmp_path, progress=False)
    df = read_records(result.records_path)
    assert len(df) == 10
    ok, timed_out = df[df["error"] == ""], df[df["error"] == "timeout"]
    assert len(ok) + len(timed_out) == 10 and len(timed_out) >= 3
    assert (ok["status"] == 200).all() and (ok["outcome"] == "accepted").all()
    assert (timed_out["status"] == 0).all() and (timed_out["outcome"] == "failed").all()
    # >= the timeout, less the loop clock's granularity (uvloop: 1 ms), like the task path
    assert ((timed_out["latency_s"] >= 0.39) & (timed_out["latency_s"] < 0.7)).all()


def test_only_the_fast_client_without_a_pool_writes_directly() -> None:
    async def check() -> None:
        plan = LoadPlan(url="http://127.0.0.1:9/", schedule=constant(1, 1), client="fast")
        fast = make_transport(plan, 4)
        assert direct_client(fast, plan) is fast
        slow = AiohttpTransport.__new__(AiohttpTransport)
        slow.session = make_session(4, 1.0)
        assert direct_client(slow, plan) is None
        await slow.close()
        await fast.close()

    asyncio.run(check())


def test_warm_opens_idle_connections_and_leaves_failures_to_the_requests() -> None:
    async def scenario(url: str, closed_port: int) -> None:
        client = FastClient(url, max_connections=3, timeout_s=1.0, max_body_bytes=100)
        assert await client.warm(5, 1.0) == 3 and len(client.idle) == 3  # within the cap
        assert await client.post(b"{}") == (200, b"ok") and client.opened == 3
        await client.close()
        refused = FastClient(
            f"http://127.0.0.1:{closed_port}/", max_connections=3, timeout_s=1.0,
            max_body_bytes=100,
        )  # fmt: skip
        assert await refused.warm(2, 1.0) == 0 and refused.n_conns == 0 and not refused.idle

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with RawServer(_answers_once_then_hangs) as server:
        asyncio.run(scenario(server.url, closed_port))
