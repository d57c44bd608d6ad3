"""The fast client (``engine.fastclient``) against the aiohttp one: the same records,
outcomes, statuses and error classes; its pool (keep-alive, cap, reconnect), headers,
compressed answers, and a 2 s server. Every server here is on 127.0.0.1, started by
the test; every run is bounded."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest
from aiohttp import web
from engine_servers import RawServer, WebServer, read_request

from kubetest.engine import LoadPlan, read_records, run_load
from kubetest.engine.client import USER_AGENT
from kubetest.engine.fastclient import FastClient
from kubetest.engine.schedule import constant

pytestmark = pytest.mark.timeout(120)


class KeepAlive:
    """A raw HTTP/1.1 server that answers ``close_after`` requests per connection, then
    closes it (``announce``: saying ``Connection: close`` on the last answer; else
    silently, as an idle timeout does), and counts connections and their concurrency."""

    def __init__(self, close_after: int, announce: bool, delay_s: float = 0.0) -> None:
        self.close_after, self.announce, self.delay_s = close_after, announce, delay_s
        self.connections = self.open = self.max_open = self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            for n in range(1, self.close_after + 1):
                await read_request(reader)
                self.requests += 1
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                last = n == self.close_after and self.announce
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                             + (b"Connection: close\r\n" if last else b"") + b"\r\nok")  # fmt: skip
                await writer.drain()
        finally:
            self.open -= 1


def _plan(
    url: str, client: str, rate: float = 40, duration: float = 0.75, **kw: object
) -> LoadPlan:
    return LoadPlan(url=url, schedule=constant(rate, duration), client=client, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("announce", [True, False], ids=["connection-close", "silent-close"])
def test_keep_alive_reuses_connections_and_reconnects_when_the_server_closes(
    tmp_path: Path, engine_client: str, announce: bool
) -> None:
    """Connections are reused; one the server closed (announced or not) is replaced and
    no request is lost to it."""
    handler = KeepAlive(close_after=3, announce=announce)
    with RawServer(handler) as server:
        result = run_load(
            _plan(server.url, engine_client, rate=40, duration=0.75), tmp_path, progress=False
        )
    s = result.summary
    assert s["success_count"] == 30 and s["errors"] == {}, s["errors"]
    assert handler.requests == 30
    assert 10 <= handler.connections < 30  # reused (3 per connection at most), then replaced


def test_connections_and_in_flight_are_capped(tmp_path: Path, engine_client: str) -> None:
    handler = KeepAlive(close_after=100, announce=False, delay_s=0.3)
    with RawServer(handler) as server:
        plan = _plan(server.url, engine_client, rate=50, duration=0.5, max_in_flight=4)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert handler.max_open <= 4 and s["max_in_flight_seen"] == 4
    assert s["errors"].get("dropped", 0) >= 10 and s["saturated"] is True
    assert s["success_count"] == s["sent_count"] == handler.requests


def test_both_clients_send_the_same_request(tmp_path: Path) -> None:
    """Method, path, body, Host, User-Agent, Content-Type, Content-Length and the bearer
    token alike; the fast client leaves out only Accept-Encoding (it asks for no
    compression, and inflates one it gets anyway: below)."""
    seen: dict[str, list[tuple[str, str, dict[str, str], bytes]]] = {"fast": [], "aiohttp": []}
    box = {"client": "fast"}

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen[box["client"]].append((request.method, request.path_qs, dict(request.headers), body))
        return web.Response(status=200, text="ok")

    with WebServer(record) as server:
        for client in ("fast", "aiohttp"):
            box["client"] = client
            plan = _plan(server.url + "?x=1", client, rate=10, duration=0.3)
            run_load(plan, tmp_path / client, progress=False)
    (fm, fp, fh, fb), (am, ap, ah, ab) = seen["fast"][0], seen["aiohttp"][0]
    assert len(seen["fast"]) == len(seen["aiohttp"]) == 3
    assert (fm, fp) == (am, ap) == ("POST", "/webhook/prometheus?x=1")
    assert json.loads(fb)["alerts"] and len(fb) == int(fh["Content-Length"])
    assert json.loads(fb).keys() == json.loads(ab).keys()
    for name in ("Host", "User-Agent", "Content-Type", "Accept"):
        assert fh[name] == ah[name], name
    assert fh["Host"] == f"127.0.0.1:{server.port}" and fh["User-Agent"] == USER_AGENT
    assert set(ah) - set(fh) == {"Accept-Encoding"} and set(fh) <= set(ah)


def _gzip_207(status: int) -> bytes:
    return gzip.compress(json.dumps({"results": [{"status": status}]}).encode())


@pytest.mark.parametrize(("body", "outcome", "error"), [
    (_gzip_207(202), "duplicate", ""),
    (gzip.compress(b" " * (1 << 20)), "failed", "oversized"),  # 1 KiB that inflates to 1 MiB
], ids=["207-gzip", "gzip-bomb"])  # fmt: skip
def test_a_compressed_answer_is_inflated_within_the_body_cap(
    tmp_path: Path, engine_client: str, body: bytes, outcome: str, error: str
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=207, body=body, headers={"Content-Encoding": "gzip"})

    with WebServer(answer) as server:
        plan = _plan(server.url, engine_client, rate=10, duration=0.3, api="kubernaut",
                     max_body_bytes=64 << 10)  # fmt: skip
        records = read_records(run_load(plan, tmp_path, progress=False).records_path)
    assert len(records) == 3 and set(records["status"]) == {207}
    assert set(records["outcome"]) == {outcome} and set(records["error"]) == {error}


async def _cut_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()


def test_an_answer_cut_short_keeps_its_status_and_is_a_reset(
    tmp_path: Path, engine_client: str
) -> None:
    with RawServer(_cut_mid_body) as server:
        records = read_records(
            run_load(
                _plan(server.url, engine_client, rate=10, duration=0.3), tmp_path, progress=False
            ).records_path
        )
    assert set(records["error"]) == {"reset"} and set(records["status"]) == {200}
    assert set(records["outcome"]) == {"failed"}


def test_a_2s_server_is_measured_from_the_intended_time(tmp_path: Path, engine_client: str) -> None:
    """40 requests a second for 1 s at a server answering in 2.0 s: 80 in flight, every
    one answered, none reported faster than the server."""

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2.0)
        return web.Response(text="ok")

    with WebServer(slow) as server:
        plan = _plan(server.url, engine_client, rate=40, duration=1.0, timeout_s=10)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["success_count"] == 40 and s["saturated"] is False, s["saturation_reasons"]
    assert server.max_in_flight >= 35
    df = read_records(result.records_path)
    assert (df["latency_s"] >= 2.0).all() and (df["service_s"] >= 2.0).all()
    assert 2.0 <= s["p50"] <= s["p99"] < 3.0


def test_the_url_decides_host_path_and_credentials() -> None:
    client = FastClient(
        "http://user:p%40ss@[::1]:8443/a/b?c=d", max_connections=1, timeout_s=1, max_body_bytes=10
    )
    head = client.head.decode()
    assert head.startswith("POST /a/b?c=d HTTP/1.1\r\nHost: [::1]:8443\r\n")
    assert "Authorization: Basic dXNlcjpwQHNz\r\n" in head  # user:p@ss
    plain = FastClient("https://h.example/x", max_connections=1, timeout_s=1, max_body_bytes=1)
    assert plain.head.startswith(b"POST /x HTTP/1.1\r\nHost: h.example\r\n")
    with pytest.raises(ValueError, match="http"):
        FastClient("ftp://h/x", max_connections=1, timeout_s=1, max_body_bytes=1)


async def _endless_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A status line, then one header that never ends, as fast as the client reads."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
    for _ in range(2000):  # 128 MiB at most: bounded, and far past any client's limit
        writer.write(b"a" * 65536)
        await writer.drain()


async def _early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 103 before each 201, on one kept-alive connection."""
    while True:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()


@pytest.mark.parametrize(
    ("behaviour", "status", "outcome", "error"),
    [(_endless_header, 0, "failed", "bad_response"), (_early_hints, 201, "accepted", "")],
    ids=["endless-header", "103-then-201"],
)
def test_head_of_an_answer_is_bounded_and_1xx_is_skipped(
    tmp_path: Path, engine_client: str, behaviour: object, status: int, outcome: str, error: str
) -> None:
    with RawServer(behaviour) as server:  # type: ignore[arg-type]
        plan = _plan(server.url, engine_client, rate=10, duration=0.3, timeout_s=5)
        records = read_records(run_load(plan, tmp_path, progress=False).records_path)
    assert len(records) == 3 and set(records["status"]) == {status}
    assert set(records["outcome"]) == {outcome} and set(records["error"]) == {error}
