"""kubetest.control: the proxy policy (``target.proxy``) of every control-plane client,
and its caps on well-behaved answers. Hostile answers are in engine/test_faults.py. Every server
here is a loopback server the test starts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from engine_servers import send_json

from kubetest import control
from kubetest.errors import ParamsError
from kubetest.params import Params, parse_params

pytestmark = pytest.mark.timeout(60)


class Recorder(ThreadingHTTPServer):
    """Answers ``{"ok": true}`` to anything and keeps each request's line and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append((self.requestline, dict(self.headers)))
                send_json(self, 200, {"ok": True})

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Recorder, Recorder]]:
    """(service, proxy), with HTTP_PROXY naming the proxy and nothing bypassing it."""
    pair = (Recorder(), Recorder())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in pair]
    for t in threads:
        t.start()
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", pair[1].url)
    monkeypatch.setenv("http_proxy", pair[1].url)
    yield pair
    for s in pair:
        s.shutdown()
        s.server_close()


def test_proxy_none_sends_the_token_to_the_service_only(servers: tuple[Recorder, Recorder]) -> None:
    service, proxy = servers
    resp = control.get(
        service.url + "/health", timeout_s=5, headers={"Authorization": "Bearer s3cret"}
    )
    assert resp.json() == {"ok": True}
    assert len(service.seen) == 1 and proxy.seen == []
    assert service.seen[0][1]["Authorization"] == "Bearer s3cret"


def test_proxy_env_goes_through_the_named_proxy(servers: tuple[Recorder, Recorder]) -> None:
    service, proxy = servers
    with control.client(timeout_s=5, proxy="env") as client:
        assert client.get(service.url + "/health").json() == {"ok": True}
    assert service.seen == [] and len(proxy.seen) == 1
    assert proxy.seen[0][0].startswith(f"GET {service.url}/health")  # absolute-form: a proxy


def test_async_clients_follow_the_same_policy(servers: tuple[Recorder, Recorder]) -> None:
    service, proxy = servers

    async def both() -> None:
        for policy in ("none", "env"):
            client = control.async_client(timeout_s=5, proxy=policy)  # type: ignore[arg-type]
            async with client:
                assert (await client.get(service.url + "/x")).status_code == 200

    asyncio.run(both())
    assert len(service.seen) == 1 and len(proxy.seen) == 1


def test_no_proxy_is_honoured_in_env_mode(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, proxy = servers
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    control.get(service.url + "/health", timeout_s=5, proxy="env")
    assert len(service.seen) == 1 and proxy.seen == []


def test_a_body_at_the_cap_reads_as_usual_and_one_over_does_not() -> None:
    server = Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        resp = control.get(server.url, timeout_s=5, cap=len(b'{"ok": true}'))
        assert resp.json() == {"ok": True}
        with pytest.raises(control.ResponseTooLarge):
            control.get(server.url, timeout_s=5, cap=len(b'{"ok": true}') - 1)
    finally:
        server.shutdown()
        server.server_close()


def test_params_take_proxy_and_body_cap_and_refuse_others() -> None:
    assert Params().target.proxy == "none"
    assert Params().generator.max_body_bytes == 64 << 10
    with pytest.raises(ParamsError, match="proxy"):
        parse_params({"target": {"proxy": "system"}})
    with pytest.raises(ParamsError, match="max_body_bytes"):
        parse_params({"generator": {"max_body_bytes": 0}})


def test_httpx_errors_keep_their_meaning() -> None:
    assert issubclass(control.ResponseTooLarge, httpx.HTTPError)
    assert issubclass(control.DeadlineExceeded, httpx.TimeoutException)
    assert control.error_class(control.ResponseTooLarge("x")) == "oversized"
    assert control.error_class(control.DeadlineExceeded("x")) == "timeout"
