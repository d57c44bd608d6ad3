"""Serving the reference target in the foreground (``serve``): every app of the profile
on its own socket in one event loop, the port report on stdout once all listen, and a
clean stop on SIGINT/SIGTERM (or when stdin closes, for a parent that owns the process).

The ``kubernaut`` profile listens on four ports in one event loop, as the real gateway
does on three (webhook :8080, health :8081, metrics :9090, ``pkg/gateway/server.go``) plus
the target's own cluster as a Kubernetes API; the other profiles on one. The kube API's
token for kubetest reaches a child target by environment (``KUBETEST_TARGET_KUBE_TOKEN``),
never on its command line. ``command`` is the command line around it, ``embedded`` the
child process a session or a test runs it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from kubetest.errors import TargetStartError
from kubetest.target.app import create_apps
from kubetest.target.model import TargetConfig

#: First words of the line the server prints once it listens (the child's port report):
#: ``kubetest target listening on <webhook origin> [health=<url> metrics=<url> kube=<url>]
#: (<description>)``.
READY_PREFIX = "kubetest target listening on "
#: Default ports in the foreground, as the real gateway's (kube: an API server's).
DEFAULT_PORTS = {"webhook": 8080, "health": 8081, "metrics": 9090, "kube": 6443}


def origin_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def describe(config: TargetConfig) -> str:
    outages = ", ".join(f"{s:g}s+{d:g}s" for s, d in config.outages) or "none"
    text = (
        f"api {config.api} on {config.webhook_path}, "
        f"workers={config.workers}, service {config.service_ms:g} ms {config.service_dist}, "
        f"error_rate {config.error_rate:g}, outages {outages}"
    )
    if config.auth_token_env:
        text += f", bearer token from ${config.auth_token_env}"
    if config.concurrency_limit is not None:
        text += f", max {config.concurrency_limit} in flight"
    if config.rate_limit_per_s is not None:
        text += f", rate limit {config.rate_limit_per_s:g}/s"
    if config.lose_rate or config.duplicate_rate:
        text += f", history faults: lose {config.lose_rate:g}, duplicate {config.duplicate_rate:g}"
    if config.api == "kubernaut":
        phases = "/".join(f"{p:g}" for p in config.remediation_phase_s)
        text += (
            f", RemediationRequests in {config.controller_namespace} "
            f"(phases {phases} s, fail {config.remediation_fail_rate:g}, "
            f"blocked {config.blocked_rate:g} for {config.blocked_s:g} s)"
        )
        if config.kube_denied:
            text += f", kube token denied {', '.join(config.kube_denied)}"
    return text


class _Server(uvicorn.Server):
    """uvicorn, one of several in a loop: stops when ``stop`` is set (from any thread);
    signals are ``serve``'s to handle, not each server's."""

    def __init__(self, config: uvicorn.Config, stop: threading.Event) -> None:
        super().__init__(config)
        self._stop = stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        if self._stop.is_set():
            self.should_exit = True
        return await super().on_tick(counter)


def _watch_stdin(stop: threading.Event) -> None:
    """Set ``stop`` when stdin reaches EOF: the parent closed it or died."""
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read1(65536):
            pass
    stop.set()


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=4096)
    except OSError as exc:
        raise TargetStartError(
            f"target: cannot listen on {host}:{port} ({what}): {exc.strerror or exc}"
        ) from None


def kubeconfig_text(server: str, token: str, name: str = "kubetest-target") -> str:
    """A kubeconfig (JSON is YAML) whose current context reaches ``server`` with
    ``token``."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }, indent=2) + "\n"  # fmt: skip


def write_kubeconfig(path: str | Path, server: str, token: str) -> Path:
    """Write :func:`kubeconfig_text` to ``path`` readable by its owner only (0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(kubeconfig_text(server, token))
    return path


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return None
    return uvloop.new_event_loop


def exposure_warning(host: str, config: TargetConfig) -> str | None:
    """One line when ``host`` is reachable beyond this machine: the reference target is a
    test double (its kube API hands out a cluster's worth of access; without a token its
    actions and metrics are open), so binding it wider should be a deliberate choice."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    token = ("its routes need the bearer token" if config.auth_token_env
             else "no auth_token_env: anyone who reaches it may use it")  # fmt: skip
    return (
        f"kubetest target: WARNING: listening on {host}, beyond loopback ({token}); "
        "use --host 127.0.0.1 unless other machines must reach it"
    )


def serve(
    config: TargetConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    exit_on_stdin_eof: bool = False,
    health_port: int = DEFAULT_PORTS["health"],
    metrics_port: int = DEFAULT_PORTS["metrics"],
    kube_port: int = DEFAULT_PORTS["kube"],
    kubeconfig: str | Path | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve the target in the foreground until SIGINT/SIGTERM (then return normally).

    Prints ``kubetest target listening on <url> ...`` once every socket listens (with
    port 0 the URLs carry the ports the kernel picked); for ``kubernaut`` the line also
    names ``health=``, ``metrics=`` and ``kube=`` URLs, one event loop serving all four.
    ``kubeconfig`` (kubernaut): write a kubeconfig for the kube API there (mode 0600).
    """
    warning = exposure_warning(host, config)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    apps = create_apps(config)
    ports = {"webhook": port, "health": health_port, "metrics": metrics_port, "kube": kube_port}
    listeners = apps.listeners()
    sockets: list[socket.socket] = []
    try:
        for name, _ in listeners:
            sockets.append(_bind(host, ports[name], name))
    except TargetStartError:
        for sock in sockets:
            sock.close()
        raise
    # HTTPS on the webhook only (to try target.tls locally); health, metrics and the kube
    # API stay plain HTTP, as the gateway's own health and metrics servers are
    urls = {name: origin_url(host, sock.getsockname()[1],
                       "https" if tls_cert and name == "webhook" else "http")
            for (name, _), sock in zip(listeners, sockets, strict=True)}  # fmt: skip
    if kubeconfig is not None and apps.cluster is not None:
        assert apps.state.kube_token is not None
        write_kubeconfig(kubeconfig, urls["kube"], apps.state.kube_token)
    # the cluster's own flag, so open watches end as soon as the servers begin to stop
    stop = apps.cluster.closing if apps.cluster is not None else threading.Event()
    if exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    servers = [
        _Server(uvicorn.Config(
            app, host=host, port=ports[name], access_log=False, log_level=log_level,
            lifespan="off", ws="none", server_header=False, backlog=4096,
            timeout_graceful_shutdown=3,
            ssl_certfile=tls_cert if name == "webhook" else None,
            ssl_keyfile=tls_key if name == "webhook" else None), stop)
        for name, app in listeners
    ]  # fmt: skip

    async def main() -> None:
        tasks = [
            asyncio.ensure_future(server.serve(sockets=[sock]))
            for server, sock in zip(servers, sockets, strict=True)
        ]
        ticker = (
            asyncio.ensure_future(apps.cluster.run_ticker()) if apps.cluster is not None else None
        )
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    break
                await asyncio.sleep(0.01)
            else:
                extra = " ".join(f"{name}={url}" for name, url in urls.items() if name != "webhook")
                where = urls["webhook"] + (" " + extra if extra else "")
                print(f"{READY_PREFIX}{where} ({describe(config)})", flush=True)
                if kubeconfig is not None and apps.cluster is not None:
                    print(f"kubeconfig for the kube API: {kubeconfig}", flush=True)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()  # one server down (or stopping): all of them
            await asyncio.gather(*tasks, return_exceptions=True)
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker

    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
