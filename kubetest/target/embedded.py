"""The reference target as a child process (``EmbeddedTarget``), for a session or a test.

The child keeps the target's event loop and CPU apart from the load generator's, so
neither measures the other. It binds its ports itself (port 0: the kernel picks free
ones, no probe-then-bind race) and reports the URLs on its stdout once listening; it
also exits when its stdin closes, so a parent killed hard (a dead notebook kernel) does
not leave it behind. The kube API's token for kubetest reaches the child by environment,
never on its command line; ``EmbeddedTarget`` writes a kubeconfig holding it into a
private temporary folder for the target's lifetime.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import httpx

from kubetest import control
from kubetest.errors import TargetStartError
from kubetest.target.app import KUBE_TOKEN_ENV
from kubetest.target.command import child_arguments
from kubetest.target.model import TargetConfig
from kubetest.target.server import READY_PREFIX, describe, origin_url, write_kubeconfig

_READY_RE = re.compile(re.escape(READY_PREFIX) + r"(https?://\S+)")
_EXTRA_RE = re.compile(r"\b(health|metrics|kube)=(http://\S+)")
_STOP_GRACE_S = 5.0


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
        return origin_url(self.host, self.port)

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
        return {
            "webhook_url": self.webhook_url,
            "health_url": self.health_url,
            "metrics_url": self.metrics_url,
            "actions_url": self.actions_url,
            "kube_url": self.kube_url,
            "kubeconfig_path": str(self._kubeconfig) if self._kubeconfig else None,
        }

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
        return [sys.executable, "-m", "kubetest.target", *child_arguments(self.config, self.host)]

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
        self._kubeconfig = write_kubeconfig(
            self._private_dir / "kubeconfig", self.kube_url, self._kube_token
        )

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
                self.urls = {
                    "webhook": match.group(1),
                    **dict(_EXTRA_RE.findall(line[match.end() :])),
                }
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
        return f"EmbeddedTarget({where}, {describe(self.config)})"
