"""A loopback HTTP server in a thread, shared by the tests' stand-ins (``FakeGateway``,
``KubeStandIn``, ``tests/checks/check_support.py``'s ``FakeAPI``): one place for the bind
on a free port, the optional TLS wrap, the serving thread and the clean stop."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def routed_handler(owner: Any) -> type[BaseHTTPRequestHandler]:
    """An HTTP/1.1 handler, quiet, that hands GET and POST to ``owner._get(h)`` and
    ``owner._post(h)``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            owner._get(self)

        def do_POST(self) -> None:  # noqa: N802
            owner._post(self)

    return Handler


class LoopbackServer:
    """``handler`` served on ``127.0.0.1`` at a free port (``url`` is its origin), from
    ``start()`` (or ``with``) to ``stop()``; HTTPS when ``tls`` is given."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        tls: ssl.SSLContext | None = None,
        poll_interval: float = 0.5,
        daemon_threads: bool = False,
    ) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = daemon_threads
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
