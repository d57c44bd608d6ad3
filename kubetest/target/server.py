"""Serving the reference target: in the foreground (``serve``) or as a child process.

The child process (``EmbeddedTarget``) keeps the target's event loop and CPU apart from
the load generator's, so neither measures the other. The child binds its ports itself
(port 0: the kernel picks free ones, no probe-then-bind race) and reports the URLs on its
stdout once listening; it also exits when its stdin closes, so a parent killed hard (a
dead notebook kernel) does not leave it behind.

The ``kubernaut`` profile listens on four ports in one event loop, as the real gateway
does on three (webhook :8080, health :8081, metrics :9090, ``pkg/gateway/server.go``) plus
the target's own cluster as a Kubernetes API; the other profiles on one. The kube API's
token for kubetest reaches the child by environment (``KUBETEST_TARGET_KUBE_TOKEN``),
never on its command line; ``EmbeddedTarget`` writes a kubeconfig holding it into a
private temporary folder for the target's lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn

from kubetest import control
from kubetest.errors import ParamsError, TargetStartError
from kubetest.target.app import KUBE_TOKEN_ENV, create_apps
from kubetest.target.cluster import VERBS
from kubetest.target.model import SERVICE_DISTS, TARGET_APIS, TargetConfig

#: First words of the line the server prints once it listens (the child's port report):
#: ``kubetest target listening on <webhook origin> [health=<url> metrics=<url> kube=<url>]
#: (<description>)``.
READY_PREFIX = "kubetest target listening on "
_READY_RE = re.compile(re.escape(READY_PREFIX) + r"(https?://\S+)")
_EXTRA_RE = re.compile(r"\b(health|metrics|kube)=(http://\S+)")
_STOP_GRACE_S = 5.0
#: Default ports in the foreground, as the real gateway's (kube: an API server's).
DEFAULT_PORTS = {"webhook": 8080, "health": 8081, "metrics": 9090, "kube": 6443}


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _describe(config: TargetConfig) -> str:
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
        text += (f", history faults: lose {config.lose_rate:g}, "
                 f"duplicate {config.duplicate_rate:g}")  # fmt: skip
    if config.api == "kubernaut":
        phases = "/".join(f"{p:g}" for p in config.remediation_phase_s)
        text += (f", RemediationRequests in {config.controller_namespace} "
                 f"(phases {phases} s, fail {config.remediation_fail_rate:g}, "
                 f"blocked {config.blocked_rate:g} for {config.blocked_s:g} s)")  # fmt: skip
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
        raise TargetStartError(f"target: cannot listen on {host}:{port} ({what}): "
                               f"{exc.strerror or exc}") from None  # fmt: skip


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
    return (f"kubetest target: WARNING: listening on {host}, beyond loopback ({token}); "
            "use --host 127.0.0.1 unless other machines must reach it")


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
    ports = {"webhook": port, "health": health_port, "metrics": metrics_port,
             "kube": kube_port}  # fmt: skip
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
    urls = {name: _url(host, sock.getsockname()[1],
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
        tasks = [asyncio.ensure_future(server.serve(sockets=[sock]))
                 for server, sock in zip(servers, sockets, strict=True)]  # fmt: skip
        ticker = (asyncio.ensure_future(apps.cluster.run_ticker())
                  if apps.cluster is not None else None)  # fmt: skip
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    break
                await asyncio.sleep(0.01)
            else:
                extra = " ".join(f"{name}={url}" for name, url in urls.items()
                                 if name != "webhook")  # fmt: skip
                where = urls["webhook"] + (" " + extra if extra else "")
                print(f"{READY_PREFIX}{where} ({_describe(config)})", flush=True)
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


# ---------------------------------------------------------------- command line


def _number(
    kind: type[int] | type[float],
    lo: float,
    hi: float,
    message: str,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """An argparse ``type`` that reads ``kind`` and refuses it outside ``lo``..``hi``.

    The bounds are closed unless ``lo_open``/``hi_open``; NaN is always refused. A refusal
    reads ``<message>, got <text>``, with the text as typed (``1e999`` rather than ``inf``).
    """
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None
        above = lo < value if lo_open else lo <= value
        below = value < hi if hi_open else value <= hi
        if not (above and below):
            raise argparse.ArgumentTypeError(f"{message}, got {text}")
        return value

    return parse


_INF = float("inf")
_positive_int = _number(int, 1, _INF, "must be >= 1")
_port = _number(int, 0, 65535, "must be within 0..65535 (0: any free port)")
_positive_float = _number(float, 0, _INF, "must be > 0", lo_open=True, hi_open=True)
_fraction = _number(float, 0, 1, "must be within [0, 1]")
_non_negative_float = _number(float, 0, _INF, "must be >= 0", hi_open=True)


def _outage(text: str) -> tuple[float, float]:
    start, sep, duration = text.partition(":")
    try:
        if not sep:
            raise ValueError
        window = (float(start), float(duration))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be START_S:DURATION_S (seconds after start), got {text!r}"
        ) from None
    if not (window[0] >= 0 and 0 < window[1] < float("inf")):
        raise argparse.ArgumentTypeError(f"needs START_S >= 0 and DURATION_S > 0, got {text!r}")
    return window


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list (``""``: none)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _phases(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(
            f"must be PROCESSING,ANALYZING,EXECUTING,VERIFYING (4 numbers >= 0, seconds), "
            f"got {text!r}"
        )
    return values  # type: ignore[return-value]


def _denied(text: str) -> str:
    verb, sep, resource = text.partition(":")
    if not sep or verb not in VERBS or not resource:
        raise argparse.ArgumentTypeError(
            f"must be VERB:RESOURCE (e.g. delete:deployments), VERB one of "
            f"{', '.join(sorted(VERBS))}; got {text!r}"
        )
    return text


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the target's options to ``parser`` (e.g. a ``kubetest target`` subparser)."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="python -m kubetest.target",
            description="Run the kubetest reference target (a Kubernaut-compatible stand-in "
            "with a known M/G/c queueing model) in the foreground until interrupted.",
        )
    d = TargetConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add(
        "--port",
        type=_port,
        default=8080,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    add(
        "--workers",
        type=_positive_int,
        default=d.workers,
        help="concurrent analysers, the c of M/G/c (default: %(default)s)",
    )
    add(
        "--service-ms",
        type=_positive_float,
        default=d.service_ms,
        help="mean service time per alert in ms (default: %(default)s)",
    )
    add(
        "--service-dist",
        choices=SERVICE_DISTS,
        default=d.service_dist,
        help="service-time distribution (default: %(default)s)",
    )
    add(
        "--lognormal-sigma",
        type=_positive_float,
        default=d.lognormal_sigma,
        help="shape of the lognormal service time (default: %(default)s)",
    )
    add(
        "--error-rate",
        type=_fraction,
        default=d.error_rate,
        help="probability that a webhook answers 500 (default: %(default)s)",
    )
    add(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="START_S:DURATION_S",
        help="answer 503 during this window after start; repeatable",
    )
    add("--seed", type=int, default=None, help="random seed for service times and errors")
    add(
        "--max-body-bytes",
        type=_positive_int,
        default=None,
        help="larger webhook bodies get 413 (default: 1048576; kubernaut: 262144)",
    )
    add(
        "--max-alerts",
        type=_positive_int,
        default=d.max_alerts,
        help="webhooks with more alerts get 413 (default: %(default)s)",
    )
    add(
        "--api",
        choices=TARGET_APIS,
        default=d.api,
        help="API profile: webhook (POST /webhook/prometheus, the guide's), kubernaut "
        "(POST /api/v1/signals/prometheus: 201/202/207, dedup, 429), kubernaut-legacy "
        "(POST /alerts: 200, cooldown 500, rate limit 429) (default: %(default)s)",
    )
    add(
        "--auth-token-env",
        metavar="NAME",
        default=None,
        help="require Authorization: Bearer <value of $NAME> on the webhook (401 otherwise)",
    )
    add(
        "--max-concurrent-requests",
        type=_positive_int,
        default=None,
        help="webhook requests in flight before 429 (default: kubernaut 100, others no limit)",
    )
    add(
        "--managed-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="kubernaut: a namespace of the target's cluster labelled kubernaut.ai/managed="
        "true (alerts about its Deployments are in scope); repeatable (default: none)",
    )
    add(
        "--kube-namespaces",
        type=_names,
        default=d.kube_namespaces,
        metavar="NS,NS",
        help="kubernaut: the cluster's other namespaces, unlabelled (default: "
        + ",".join(d.kube_namespaces) + ")",
    )
    add(
        "--controller-namespace",
        default=d.controller_namespace,
        metavar="NS",
        help="kubernaut: where RemediationRequests are created (default: %(default)s)",
    )
    add(
        "--remediation-phase-s",
        type=_phases,
        default=d.remediation_phase_s,
        metavar="P,A,E,V",
        help="kubernaut: mean seconds a RemediationRequest spends Processing, Analyzing, "
        "Executing and Verifying (default: " + ",".join(f"{p:g}" for p in d.remediation_phase_s)
        + ")",
    )
    add(
        "--remediation-fail-rate",
        type=_fraction,
        default=d.remediation_fail_rate,
        help="kubernaut: share of RemediationRequests that fail at Executing "
        "(default: %(default)s)",
    )
    add(
        "--blocked-rate",
        type=_fraction,
        default=d.blocked_rate,
        help="kubernaut: share of RemediationRequests Blocked (non-terminal) for "
        "--blocked-s, then Failed (if failing) or on to Completed (default: %(default)s)",
    )
    add(
        "--blocked-s",
        type=_non_negative_float,
        default=d.blocked_s,
        help="kubernaut: how long a Blocked RemediationRequest stays Blocked "
        "(default: %(default)s)",
    )
    add(
        "--kube-deny",
        type=_denied,
        action="append",
        default=[],
        metavar="VERB:RESOURCE",
        help="kubernaut: take this grant from kubetest's kube API token (e.g. "
        "delete:deployments); repeatable",
    )
    add(
        "--health-port",
        type=_port,
        default=DEFAULT_PORTS["health"],
        help="kubernaut: port of /healthz and /readyz (default: %(default)s)",
    )
    add(
        "--metrics-port",
        type=_port,
        default=DEFAULT_PORTS["metrics"],
        help="kubernaut: port of /metrics (default: %(default)s)",
    )
    add(
        "--kube-port",
        type=_port,
        default=DEFAULT_PORTS["kube"],
        help="kubernaut: port of the cluster's Kubernetes API (default: %(default)s)",
    )
    add(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubernaut: write a kubeconfig for the kube API there (mode 0600); its token is "
        f"${KUBE_TOKEN_ENV} when set, else a random one",
    )
    add(
        "--future-tolerance-s",
        type=_non_negative_float,
        default=d.future_tolerance_s,
        help="kubernaut: refuse alerts whose startsAt is further ahead (default: %(default)s)",
    )
    add(
        "--rate-limit",
        type=_positive_float,
        default=None,
        metavar="PER_S",
        help="answer 429 above this many webhook requests per second (default: none)",
    )
    add(
        "--cooldown-s",
        type=_non_negative_float,
        default=d.cooldown_s,
        help="kubernaut-legacy: 500 for an alertname/namespace pair seen within this "
        "many seconds (default: %(default)s)",
    )
    add(
        "--lose-rate",
        type=_fraction,
        default=d.lose_rate,
        help="integrity fault: share of accepted alerts silently left out of the action "
        "history (default: %(default)s)",
    )
    add(
        "--duplicate-rate",
        type=_fraction,
        default=d.duplicate_rate,
        help="integrity fault: share of accepted alerts recorded twice in the action "
        "history (default: %(default)s)",
    )
    add(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="warning",
        help="server log level (default: %(default)s)",
    )
    add("--tls-cert", help="serve HTTPS with this certificate chain (PEM); needs --tls-key")
    add("--tls-key", help="the private key (PEM) of --tls-cert")
    add(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (used by a parent process that owns this target)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TargetConfig:
    """The ``TargetConfig`` named by options parsed with ``build_parser``.

    Raises ``ParamsError`` (one line) when the options are inconsistent.
    """
    try:
        config = TargetConfig(
            workers=args.workers,
            service_ms=args.service_ms,
            service_dist=args.service_dist,
            error_rate=args.error_rate,
            outages=tuple(args.outage),
            lognormal_sigma=args.lognormal_sigma,
            seed=args.seed,
            max_body_bytes=args.max_body_bytes,
            max_alerts=args.max_alerts,
            api=args.api,
            auth_token_env=args.auth_token_env,
            max_concurrent_requests=args.max_concurrent_requests,
            managed_namespaces=tuple(args.managed_namespace),
            kube_namespaces=tuple(args.kube_namespaces),
            controller_namespace=args.controller_namespace,
            remediation_phase_s=tuple(args.remediation_phase_s),
            remediation_fail_rate=args.remediation_fail_rate,
            blocked_rate=args.blocked_rate,
            blocked_s=args.blocked_s,
            kube_denied=tuple(args.kube_deny),
            future_tolerance_s=args.future_tolerance_s,
            rate_limit_per_s=args.rate_limit,
            cooldown_s=args.cooldown_s,
            lose_rate=args.lose_rate,
            duplicate_rate=args.duplicate_rate,
        )
    except ValueError as exc:
        raise ParamsError(f"target: {exc}") from None
    if config.auth_token_env and not os.environ.get(config.auth_token_env):
        raise ParamsError(
            f"target: --auth-token-env names ${config.auth_token_env}, which is not set: "
            "export the token first"
        )
    return config


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with options parsed by ``build_parser`` until interrupted; the exit code.

    For ``kubetest target`` as well as ``python -m kubetest.target``.
    """
    config = config_from_args(args)
    tls_files = [f for f in (args.tls_cert, args.tls_key) if f]
    if len(tls_files) == 1 or any(not os.path.isfile(f) for f in tls_files):
        raise ParamsError("target: HTTPS needs both --tls-cert and --tls-key, existing PEM files")
    serve(
        config,
        args.host,
        args.port,
        log_level=args.log_level,
        exit_on_stdin_eof=args.exit_on_stdin_eof,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        kube_port=args.kube_port,
        kubeconfig=args.kubeconfig,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config_from_args(args)
    except ParamsError as exc:
        parser.error(str(exc))
    return run_from_args(args)


# ---------------------------------------------------------------- child process


def _arguments(config: TargetConfig, host: str) -> list[str]:
    args = [
        "--host",
        host,
        "--port",
        "0",
        "--workers",
        str(config.workers),
        "--service-ms",
        repr(config.service_ms),
        "--service-dist",
        config.service_dist,
        "--lognormal-sigma",
        repr(config.lognormal_sigma),
        "--error-rate",
        repr(config.error_rate),
        "--max-alerts",
        str(config.max_alerts),
        "--api",
        config.api,
        "--future-tolerance-s",
        repr(config.future_tolerance_s),
        "--cooldown-s",
        repr(config.cooldown_s),
        "--lose-rate",
        repr(config.lose_rate),
        "--duplicate-rate",
        repr(config.duplicate_rate),
        "--controller-namespace",
        config.controller_namespace,
        "--kube-namespaces",
        ",".join(config.kube_namespaces),
        "--remediation-phase-s",
        ",".join(repr(p) for p in config.remediation_phase_s),
        "--remediation-fail-rate",
        repr(config.remediation_fail_rate),
        "--blocked-rate",
        repr(config.blocked_rate),
        "--blocked-s",
        repr(config.blocked_s),
        "--health-port",
        "0",
        "--metrics-port",
        "0",
        "--kube-port",
        "0",
        "--exit-on-stdin-eof",
    ]
    # The token's *name* only: the child inherits the environment that holds its value.
    optional = (
        ("--max-body-bytes", config.max_body_bytes),
        ("--auth-token-env", config.auth_token_env),
        ("--max-concurrent-requests", config.max_concurrent_requests),
        ("--rate-limit", config.rate_limit_per_s),
    )
    for flag, value in optional:
        if value is not None:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    for ns in config.managed_namespaces:
        args += ["--managed-namespace", ns]
    for item in config.kube_denied:
        args += ["--kube-deny", item]
    for start, duration in config.outages:
        args += ["--outage", f"{start!r}:{duration!r}"]
    if config.seed is not None:
        args += ["--seed", str(config.seed)]
    return args


class EmbeddedTarget:
    """The reference target in a child process on free loopback ports.

    ``with EmbeddedTarget(cfg) as t: ... t.webhook_url ...``. ``stop`` is idempotent and
    also runs at interpreter exit; the child also exits by itself if this process dies.

    For ``kubernaut`` the child listens on four ports: ``base_url`` (the webhook, with
    the target's ``/api/v1/actions`` and ``/api/v1/outcomes``), ``health_url``
    (``/readyz`` on the health port), ``metrics_url`` (``/metrics`` on the metrics port)
    and ``kube_url`` (the cluster's Kubernetes API; ``kubeconfig_path`` is a kubeconfig
    for it, written at start into a private temporary folder and removed at stop). The
    kube token is ``$KUBETEST_TARGET_KUBE_TOKEN`` when set, else a random one, handed to
    the child by environment. For the other profiles ``kube_url`` and
    ``kubeconfig_path`` are ``None`` and ``health_url``/``metrics_url`` are
    ``base_url + /health`` and ``/metrics``.
    """

    def __init__(
        self,
        config: TargetConfig,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        *,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.config = config
        self.host = host
        self.log_path = Path(log_path) if log_path is not None else None
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.urls: dict[str, str] = {}  # webhook / health / metrics / kube origins
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._tail: deque[str] = deque(maxlen=30)
        self._log: IO[str] | None = None
        self._kube_token: str | None = None
        self._private_dir: Path | None = None
        self._kubeconfig: Path | None = None

    # -- addresses

    @property
    def base_url(self) -> str:
        """The webhook port's origin."""
        if self.port is None:
            raise RuntimeError("EmbeddedTarget is not started: call start() or use `with`")
        return _url(self.host, self.port)

    @property
    def webhook_url(self) -> str:
        """The profile's webhook: /webhook/prometheus, /api/v1/signals/prometheus or /alerts."""
        return self.base_url + self.config.webhook_path

    @property
    def health_url(self) -> str:
        """What tells the target is up: kubernaut ``/readyz`` on its health port, else
        ``/health`` on the webhook port."""
        if self.config.api == "kubernaut":
            return self._origin("health") + "/readyz"
        return self.base_url + "/health"

    @property
    def actions_url(self) -> str:
        return self.base_url + "/api/v1/actions"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics: kubernaut on its metrics port, else on the webhook port."""
        if self.config.api == "kubernaut":
            return self._origin("metrics") + "/metrics"
        return self.base_url + "/metrics"

    @property
    def kube_url(self) -> str | None:
        """The target's cluster as a Kubernetes API (kubernaut), else ``None``."""
        return self._origin("kube") if self.config.api == "kubernaut" else None

    @property
    def kubeconfig_path(self) -> Path | None:
        """A kubeconfig reaching ``kube_url`` with the kube token (kubernaut, while
        running; mode 0600 in a 0700 temporary folder), else ``None``."""
        return self._kubeconfig

    def endpoints(self) -> dict[str, Any]:
        """Every address a notebook or a check needs (no secret: the kubeconfig's path)."""
        return {"webhook_url": self.webhook_url, "health_url": self.health_url,
                "metrics_url": self.metrics_url, "actions_url": self.actions_url,
                "kube_url": self.kube_url,
                "kubeconfig_path": str(self._kubeconfig) if self._kubeconfig else None}

    def _origin(self, name: str) -> str:
        self.base_url  # noqa: B018 - raises when not started
        return self.urls[name]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kubetest.target", *_arguments(self.config, self.host)]

    # -- lifetime

    def start(self) -> EmbeddedTarget:
        """Start the child; wait until ``GET /health`` answers, else raise ``TargetStartError``."""
        if self._proc is not None:
            return self
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.config.api == "kubernaut":
            self._kube_token = os.environ.get(KUBE_TOKEN_ENV) or secrets.token_urlsafe(32)
            env[KUBE_TOKEN_ENV] = self._kube_token  # by environment, never on argv
        # The child must import this very kubetest, even when it is not installed.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8")
        self._ready.clear()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the parent is the parent's to handle
        )
        atexit.register(self.stop)
        self._reader = threading.Thread(target=self._read_output, args=(self._proc,), daemon=True)
        self._reader.start()
        try:
            self._wait_ready(time.monotonic() + self.start_timeout_s)
            if self.config.api == "kubernaut":
                self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_kubeconfig(self) -> None:
        """The kube API's kubeconfig in a private temporary folder (never under outputs/)."""
        assert self._kube_token is not None and self.kube_url is not None
        self._private_dir = Path(tempfile.mkdtemp(prefix="kubetest-target-"))  # mode 0700
        self._kubeconfig = write_kubeconfig(self._private_dir / "kubeconfig", self.kube_url,
                                            self._kube_token)  # fmt: skip

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        """Drain the child's output (so it never blocks on a full pipe); catch the port."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if self._log is not None:
                with contextlib.suppress(ValueError, OSError):
                    self._log.write(line + "\n")
                    self._log.flush()
            if not self._ready.is_set() and (match := _READY_RE.search(line)):
                self.urls = {"webhook": match.group(1),
                             **dict(_EXTRA_RE.findall(line[match.end():]))}  # fmt: skip
                self.port = httpx.URL(match.group(1)).port
                self._ready.set()
        self._ready.set()  # EOF: wake a waiting start() so it can report the exit

    def _failure(self, what: str) -> TargetStartError:
        tail = " | ".join(line for line in self._tail if line.strip())[-1500:]
        where = f" (log: {self.log_path})" if self.log_path else ""
        return TargetStartError(f"reference target {what}{where}: {tail or 'no output'}")

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        if not self._ready.wait(max(0.0, deadline - time.monotonic())):
            raise self._failure(f"did not report its port within {self.start_timeout_s:g} s")
        if self.port is None:
            self._proc.wait(timeout=5)
            raise self._failure(f"exited with code {self._proc.returncode} before listening")
        if self.config.api == "kubernaut" and not {"health", "metrics", "kube"} <= set(self.urls):
            raise self._failure(f"reported {sorted(self.urls)} but not all its ports")
        with control.client(timeout_s=2.0) as client:
            last = "no answer"
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise self._failure(f"exited with code {self._proc.returncode}")
                try:
                    resp = client.get(self.health_url)
                    # 503 from an outage window scheduled at start still means "up".
                    if resp.status_code == 200 or (resp.status_code == 503 and self.config.outages):
                        return
                    last = f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        raise self._failure(
            f"GET {self.health_url} did not answer 200 within {self.start_timeout_s:g} s ({last})"
        )

    def stop(self) -> None:
        """Close the child's stdin (it stops at once), then SIGTERM, then SIGKILL after a
        few seconds; safe to call twice. (uvicorn takes about a second to act on SIGTERM;
        the stdin path stops within a tick.)"""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if proc.poll() is None:
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=_STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
            self._kubeconfig = None

    def __enter__(self) -> EmbeddedTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.port is not None else "not started"
        return f"EmbeddedTarget({where}, {_describe(self.config)})"
