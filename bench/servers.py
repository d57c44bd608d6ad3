"""Loopback targets for the benchmark, each started in its own process pinned to one core.

* ``Nginx``: nginx with a temporary config on a free 127.0.0.1 port, one single-process
  worker, answering every request (POST included) with a small JSON 200 - the fastest
  target there is, so the generator is what gets measured.
* ``PyServer("delay", delay=2.0)``: answers every request exactly ``delay`` s after it
  was read in full (a timer per request, no worker pool: any number can wait at once).
* ``PyServer("stall", period=10, stall=1, base=0.001)``: answers after ``base`` s,
  except that no answer leaves during the last ``stall`` s of every ``period`` s (counted
  from the server's start); what falls due in a stall is answered when the stall ends.

The Python servers are a minimal HTTP/1.1 (keep-alive, Content-Length bodies) on asyncio
(uvloop when installed): ``python -m bench.servers delay|stall [options]`` prints
``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"  # the only address the benchmark ever talks to
BODY = b'{"status":"success"}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


# --------------------------------------------------------------------------- pinning


def _affinity() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


_CORES = _affinity()  # read at import, before the benchmark pins its own process


def cores() -> list[int]:
    """The CPUs this process could run on when the benchmark started (sorted)."""
    return list(_CORES)


def pin_prefix(core: int | None) -> list[str]:
    """A ``taskset -c CORE`` command prefix, or ``[]`` when pinning is not possible."""
    if core is None or core not in cores() or len(cores()) < 2:
        return []
    if shutil.which("taskset"):
        return ["taskset", "-c", str(core)]
    return []


def pin_preexec(core: int | None):
    """A ``preexec_fn`` pinning the child to ``core`` where ``taskset`` is missing."""
    if (
        core is None
        or len(cores()) < 2
        or shutil.which("taskset")
        or not hasattr(os, "sched_setaffinity")
    ):
        return None

    def _pin() -> None:
        os.sched_setaffinity(0, {core})

    return _pin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class _Served:
    """A loopback server process (context manager): ``.url``, ``.pid`` and ``.command``
    once entered; leaving stops it with ``stop_signal``."""

    stop_signal = signal.SIGTERM

    def __init__(self, core: int | None) -> None:
        self.core = core
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""
        self.command: list[str] = []

    def _listening(self, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}/webhook/prometheus"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            _stop(self.proc, self.stop_signal)


# --------------------------------------------------------------------------- nginx

_NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{{"status":"success"}}\\n';
        }}
    }}
}}
"""


class Nginx(_Served):
    """nginx on a free loopback port (context manager); ``.url`` once entered."""

    stop_signal = signal.SIGQUIT

    def __init__(self, core: int | None = 0) -> None:
        super().__init__(core)
        self.binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Nginx:
        if not self.binary:
            raise RuntimeError("nginx not installed (Debian package nginx)")
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-nginx-")
        tmp = self.tmp.name
        for attempt in range(5):
            self.port = free_port()
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(tmp=tmp, host=HOST, port=self.port))
            self.command = [
                *pin_prefix(self.core), self.binary, "-p", tmp, "-c", str(conf),
                "-e", f"{tmp}/error.log",
            ]  # fmt: skip
            self.proc = subprocess.Popen(
                self.command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=pin_preexec(self.core),
            )
            try:
                wait_listening(self.port, 5.0)
                break
            except RuntimeError:
                _stop(self.proc)
                if attempt == 4:
                    err = self.proc.stderr.read() if self.proc.stderr else b""
                    err = err.decode(errors="replace")
                    raise RuntimeError(f"nginx did not start: {err.strip()[-300:]}") from None
        self._listening(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self.tmp is not None:
            self.tmp.cleanup()


# --------------------------------------------------------------------------- Python servers


class PyServer(_Served):
    """``python -m bench.servers MODE ...`` pinned to ``core`` (context manager)."""

    def __init__(self, mode: str, core: int | None = 0, **options: float) -> None:
        super().__init__(core)
        self.mode = mode
        self.options = options
        self.started_at = 0.0  # time.monotonic() when the server said READY (stall phase 0)

    def __enter__(self) -> PyServer:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in self.options.items()]
        self.command = [*pin_prefix(self.core), sys.executable, "-m", "bench.servers",
                        self.mode, *args]  # fmt: skip
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            preexec_fn=pin_preexec(self.core),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            _stop(self.proc)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"bench server {self.mode} did not start: {err.strip()[-300:]}")
        self.started_at = time.monotonic()
        self._listening(int(line[1]))
        return self


class _App:
    def __init__(self, mode: str, delay_s: float, period_s: float, stall_s: float, base_s: float):
        self.mode = mode
        self.delay_s = delay_s
        self.period_s = period_s
        self.stall_s = stall_s
        self.base_s = base_s
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()

    def due(self) -> float:
        """Loop time at which a request read in full now must be answered."""
        now = self.loop.time()
        if self.mode == "delay":
            return now + self.delay_s
        due = now + self.base_s
        phase = (due - self.t0) % self.period_s
        stall_from = self.period_s - self.stall_s
        if phase >= stall_from:
            due += self.period_s - phase  # held until the stall ends
        return due


class _Conn(asyncio.Protocol):
    def __init__(self, app: _App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._bad()
                return
            length = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        return self._bad()
                elif name == b"transfer-encoding":
                    return self._bad()  # clients here send Content-Length bodies
            total = end + 4 + length
            if len(self.buf) < total:
                return
            del self.buf[:total]
            self.app.loop.call_at(self.app.due(), self._answer)

    def _bad(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()


async def _serve(ns: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    app = _App(ns.mode, ns.delay, ns.period, ns.stall, ns.base)
    server = await loop.create_server(lambda: _Conn(app), HOST, ns.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app.t0 = loop.time()
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await asyncio.wait_for(stop.wait(), timeout=ns.max_lifetime)
    server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    p.add_argument("mode", choices=["delay", "stall"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay", type=float, default=2.0, help="delay mode: answer after S s")
    p.add_argument("--period", type=float, default=10.0, help="stall mode: period (s)")
    p.add_argument("--stall", type=float, default=1.0, help="stall mode: stall per period (s)")
    p.add_argument("--base", type=float, default=0.001, help="stall mode: normal delay (s)")
    p.add_argument("--max-lifetime", type=float, default=1800.0, help="exit after S s anyway")
    ns = p.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(TimeoutError, KeyboardInterrupt):
        runner(_serve(ns))


if __name__ == "__main__":
    main()
