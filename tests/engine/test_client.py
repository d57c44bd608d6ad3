"""Outcome classification per API profile, and exception classes (synthetic and real)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from engine_servers import RawServer, WebServer, closed_port, ok_handler, read_request

from kubetest.engine import LoadPlan, classify, classify_exception, classify_results, run_load
from kubetest.engine.schedule import constant


@pytest.mark.parametrize(
    ("api", "status", "body", "expected"),
    [
        ("webhook", 200, b"", ("accepted", "")),
        ("webhook", 201, b"", ("accepted", "")),
        ("webhook", 202, b"", ("accepted", "")),
        ("webhook", 204, b"", ("accepted", "")),
        ("webhook", 302, b"", ("failed", "http_3xx")),
        ("webhook", 400, b"bad body", ("failed", "http_4xx")),
        ("webhook", 429, b"", ("throttled", "http_4xx")),
        ("webhook", 500, b"", ("failed", "http_5xx")),
        ("webhook", 503, b"", ("failed", "http_5xx")),
        ("kubernaut", 201, b"{}", ("accepted", "")),
        ("kubernaut", 202, b"{}", ("duplicate", "")),
        ("kubernaut", 200, b"{}", ("rejected", "")),
        ("kubernaut", 204, b"", ("failed", "bad_response")),
        ("kubernaut", 401, b"", ("failed", "auth")),
        ("kubernaut", 403, b"", ("failed", "auth")),
        ("webhook", 401, b"", ("failed", "auth")),
        ("kubernaut-legacy", 403, b"", ("failed", "auth")),
        ("kubernaut", 429, b"", ("throttled", "http_4xx")),
        ("kubernaut", 500, b"", ("failed", "http_5xx")),
        ("kubernaut-legacy", 200, b'{"status":"success"}', ("accepted", "")),
        ("kubernaut-legacy", 200, b"", ("accepted", "")),
        ("kubernaut-legacy", 200, b'{"status":"ignored"}', ("rejected", "")),
        ("kubernaut-legacy", 429, b"", ("throttled", "http_4xx")),
        ("kubernaut-legacy", 500, b'{"error":"cooldown"}', ("failed", "http_5xx")),
        ("kubernaut-legacy", 404, b"", ("failed", "http_4xx")),
    ],
)
def test_classify_profiles(api: str, status: int, body: bytes, expected: tuple[str, str]) -> None:
    assert classify(api, status, body) == expected


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([{"status": 201}], ("accepted", "")),
        ([{"status": 202}], ("duplicate", "")),
        ([{"status": 200}], ("rejected", "")),
        ([{"status": 429}], ("throttled", "http_4xx")),
        ([{"status": 500}], ("failed", "http_5xx")),
        ([{"status": "created"}], ("accepted", "")),
        ([{"status": "deduplicated"}], ("duplicate", "")),
        ([{"status": "Rejected"}], ("rejected", "")),
        ([{"status": "???"}], ("failed", "bad_response")),
        ([{"status": 202}, {"status": 201}], ("duplicate", "")),  # the first result counts
    ],
)
def test_classify_kubernaut_207(
    results: list[dict[str, object]], expected: tuple[str, str]
) -> None:
    body = json.dumps({"results": results}).encode()
    assert classify("kubernaut", 207, body) == expected


def test_classify_results_lists_every_alert_and_survives_garbage() -> None:
    body = json.dumps({"results": [{"status": 201}, {"status": "duplicate"}, 5]}).encode()
    assert classify_results(body) == [
        ("accepted", ""),
        ("duplicate", ""),
        ("failed", "bad_response"),
    ]
    assert classify("kubernaut", 207, b"not json") == ("failed", "bad_response")
    assert classify("kubernaut", 207, b'{"results": []}') == ("failed", "bad_response")


def test_classify_unknown_api() -> None:
    with pytest.raises(ValueError, match="unknown api"):
        classify("graphql", 200, b"")


def test_classify_exception_synthetic() -> None:
    key = ConnectionKey("h.invalid", 80, False, True, None, None, None)
    assert classify_exception(TimeoutError()) == "timeout"
    assert classify_exception(aiohttp.ConnectionTimeoutError()) == "timeout"
    dns = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    assert classify_exception(dns) == "dns"
    gai = aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name or service not known"))
    assert classify_exception(gai) == "dns"
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    assert classify_exception(refused) == "refused"
    unreachable = aiohttp.ClientConnectorError(key, OSError(101, "Network is unreachable"))
    assert classify_exception(unreachable) == "connect"
    assert classify_exception(aiohttp.ServerDisconnectedError()) == "reset"
    assert classify_exception(aiohttp.ClientOSError(104, "Connection reset by peer")) == "reset"
    # the server closed the connection while aiohttp wrote (seen as the target went down)
    cut = aiohttp.ClientOSError(None, "Can not write request body for http://127.0.0.1:1/x")
    assert classify_exception(cut) == "reset"
    assert classify_exception(aiohttp.ClientOSError(None, "something else")) == "network"
    assert classify_exception(RuntimeError("boom")) == "other"


# -- real faults on loopback ------------------------------------------------------------


def _errors(url: str, tmp_path: Path, client: str, timeout_s: float = 2.0) -> dict[str, object]:
    plan = LoadPlan(url=url, schedule=constant(10, 0.3), timeout_s=timeout_s, client=client)
    return run_load(plan, tmp_path, progress=False).summary


async def _cut_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    writer.close()


async def _close_silently(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)


async def _rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # type: ignore[attr-defined]


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(30)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"this is not http\r\n\r\n")
    await writer.drain()


async def _bad_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    await writer.drain()


def test_refused_on_a_closed_port(tmp_path: Path, engine_client: str) -> None:
    s = _errors(f"http://127.0.0.1:{closed_port()}/webhook/prometheus", tmp_path, engine_client)
    assert s["errors"] == {"refused": 3}
    assert s["outcomes"]["failed"] == 3 and s["success_rate"] == 0.0
    # the target's failure is not the generator's (a busy machine may still delay a send:
    # schedule lag is the one reason that can honestly appear with 3 requests)
    assert [r for r in s["saturation_reasons"] if "schedule lag" not in r] == []


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (_cut_mid_body, "reset"),
        (_close_silently, "reset"),
        (_rst, "reset"),
        (_never_answer, "timeout"),
        (_garbage, "bad_response"),
        (_bad_chunks, "bad_response"),
    ],
)
def test_network_faults_are_classified(behaviour, error, tmp_path, engine_client) -> None:  # type: ignore[no-untyped-def]
    with RawServer(behaviour) as server:
        s = _errors(server.url, tmp_path, engine_client, timeout_s=0.4)
    assert s["errors"] == {error: 3}
    assert s["outcomes"]["failed"] == 3
    assert error in s["error_samples"]


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [(503, "http_5xx", "failed"), (404, "http_4xx", "failed"), (429, "http_4xx", "throttled")],
)
def test_http_errors_are_classified(
    status: int, error: str, outcome: str, tmp_path: Path, engine_client: str
) -> None:
    with WebServer(ok_handler(status)) as server:
        s = _errors(server.url, tmp_path, engine_client)
    assert s["errors"] == {error: 3}
    assert s["outcomes"][outcome] == 3


def test_oversized_is_a_documented_class() -> None:
    """A body past ``max_body_bytes`` is its own class, listed with the others."""
    from kubetest.engine import client as engine_client

    assert engine_client.classify_exception(engine_client.BodyTooLarge("x")) == "oversized"
    assert "\noversized " in (engine_client.__doc__ or "")
