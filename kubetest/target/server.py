"""Serving the reference target: in the foreground (``serve``) or as a child process.

The child process (``EmbeddedTarget``) keeps the target's event loop and CPU apart from
the load generator's, so neither measures the other. The child binds the port itself
(port 0: the kernel picks a free one, no probe-then-bind race) and reports the URL on its
stdout once listening; it also exits when its stdin closes, so a parent killed hard (a
dead notebook kernel) does not leave it behind.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn

from kubetest.errors import KubetestError, ParamsError
from kubetest.target.app import create_app
from kubetest.target.model import SERVICE_DISTS, TARGET_APIS, TargetConfig

#: First words of the line the server prints once it listens (the child's port report).
READY_PREFIX = "kubetest target listening on "
_READY_RE = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
_STOP_GRACE_S = 5.0


class TargetStartError(KubetestError):
    """The embedded reference target did not come up (the message says why)."""


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
    return text


class _Server(uvicorn.Server):
    """uvicorn, plus: announce the bound URL, and stop when asked from another thread."""

    def __init__(self, config: uvicorn.Config, announce: str, stop: threading.Event) -> None:
        super().__init__(config)
        self._announce = announce
        self._stop = stop

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sockname = self.servers[0].sockets[0].getsockname()
            scheme = "https" if self.config.ssl_certfile else "http"
            url = _url(self.config.host, sockname[1], scheme)
            print(f"{READY_PREFIX}{url} ({self._announce})", flush=True)

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


def serve(
    config: TargetConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    exit_on_stdin_eof: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve the target in the foreground until SIGINT/SIGTERM (then return normally).

    Prints ``kubetest target listening on <url> (...)`` once the socket listens; with
    ``port=0`` the URL carries the port the kernel picked.
    """
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # no per-request logging on the hot path
        log_level=log_level,
        lifespan="off",
        ws="none",
        server_header=False,
        backlog=4096,
        timeout_graceful_shutdown=3,
        ssl_certfile=tls_cert,  # HTTPS, to try target.tls locally
        ssl_keyfile=tls_key,
    )
    stop = threading.Event()
    if exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    server = _Server(uv_config, _describe(config), stop)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these
    # placeholders installed that re-raise is a no-op, so Ctrl-C ends without a traceback.
    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


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
        "--dedup-window-s",
        type=_non_negative_float,
        default=d.dedup_window_s,
        help="kubernaut: a repeat of a signal within this window is a 202 duplicate "
        "(0: no dedup; default: %(default)s)",
    )
    add(
        "--managed-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="kubernaut: only these namespaces are managed, others answer 200 rejected; "
        "repeatable (default: all)",
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
            dedup_window_s=args.dedup_window_s,
            managed_namespaces=tuple(args.managed_namespace),
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
        "--dedup-window-s",
        repr(config.dedup_window_s),
        "--future-tolerance-s",
        repr(config.future_tolerance_s),
        "--cooldown-s",
        repr(config.cooldown_s),
        "--lose-rate",
        repr(config.lose_rate),
        "--duplicate-rate",
        repr(config.duplicate_rate),
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
    for start, duration in config.outages:
        args += ["--outage", f"{start!r}:{duration!r}"]
    if config.seed is not None:
        args += ["--seed", str(config.seed)]
    return args


class EmbeddedTarget:
    """The reference target in a child process on a free loopback port.

    ``with EmbeddedTarget(cfg) as t: ... t.webhook_url ...``. ``stop`` is idempotent and
    also runs at interpreter exit; the child also exits by itself if this process dies.
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
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._tail: deque[str] = deque(maxlen=30)
        self._log: IO[str] | None = None

    # -- addresses

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedTarget is not started: call start() or use `with`")
        return _url(self.host, self.port)

    @property
    def webhook_url(self) -> str:
        """The profile's webhook: /webhook/prometheus, /api/v1/signals/prometheus or /alerts."""
        return self.base_url + self.config.webhook_path

    @property
    def health_url(self) -> str:
        return self.base_url + "/health"

    @property
    def actions_url(self) -> str:
        return self.base_url + "/api/v1/actions"

    @property
    def metrics_url(self) -> str:
        return self.base_url + "/metrics"

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
        except BaseException:
            self.stop()
            raise
        return self

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
        with httpx.Client(timeout=2.0, trust_env=False) as client:
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

    def __enter__(self) -> EmbeddedTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.port is not None else "not started"
        return f"EmbeddedTarget({where}, {_describe(self.config)})"
