"""What the environment-check tests share: planted secrets, servers started and stopped on
loopback, params and a session for the ENV notebook."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from glob import glob
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from engine_servers import send_json
from loopback import LoopbackServer

from kubetest.params import Environment, Params, parse_params
from kubetest.workbook import environment
from kubetest.workbook.context import TestContext

REDIS_PW = "kt-redis-" + secrets.token_hex(8)
PG_PW = "kt-pg-" + secrets.token_hex(8)
KUBE_TOKEN = "kt-kube-" + secrets.token_hex(12)
SECRETS = (REDIS_PW, PG_PW, KUBE_TOKEN)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own REDIS_PASSWORD or KUBECONFIG must not leak into these tests."""
    for name in ("REDIS_PASSWORD", "KUBECONFIG", "KT_REDIS_PW", "KT_PG_DSN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME is the test's empty tmp_path: no ~/.kube/config (``_clean_env`` clears KUBECONFIG)."""
    monkeypatch.setenv("HOME", str(tmp_path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_server(what: str) -> NoReturn:
    """In CI the servers are installed by the Makefile: their absence is a failure there."""
    reason = f"{what} is not installed: run scripts/system-deps.sh redis-server postgresql openssl"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def wait_until(ready: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout_s} s")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def env_of(**kw: Any) -> Environment:
    return Environment(**kw)


def unchecked_env(**kw: Any) -> Environment:
    return Environment.model_construct(**{**Environment().model_dump(), **kw})


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def write_params(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_environment(tmp_path: Path, data: dict[str, Any]) -> tuple[TestContext, Any]:
    """The environment test on these params: its context (closed) and its result."""
    ctx = TestContext.open("ENV", str(write_params(tmp_path, data)), str(tmp_path / "session"))
    try:
        return ctx, environment.run(ctx)
    finally:
        ctx.close()


def written(ctx: TestContext, result: Any) -> tuple[str, ...]:
    """All the environment test shows and saves: its tables and its result file."""
    return (result.table.to_string(), result.debug_table.to_string(), ctx.result_path.read_text())


def cli_check(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubetest check`` on these params, without KUBECONFIG and with HOME in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "kubetest", "check", "--params", str(write_params(tmp_path, data))],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip


def start_redis(password: str | None) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        missing_server("redis-server")
    port = free_port()
    args = f"--port {port} --bind 127.0.0.1 --appendonly no --daemonize no"
    cmd = [exe, *args.split(), "--save", ""]
    if password:
        cmd += ["--requirepass", password]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts(port), 10, proc)
    except RuntimeError:
        stop(proc)
        raise
    return proc, port


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """redis-server with ``--requirepass``, as the guide's integration Redis."""
    proc, port = start_redis(REDIS_PW)
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def redis_open_port() -> Iterator[int]:
    """redis-server without a password."""
    proc, port = start_redis(None)
    yield port
    stop(proc)


def _postgres_bin() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("postgres")
    return Path(exe).parent if exe else None


def _run_as() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@pytest.fixture(scope="module")
def postgres_port() -> Iterator[int]:
    """A throwaway cluster (initdb, scram-sha-256 auth) on a free loopback port."""
    bindir = _postgres_bin()
    if bindir is None:
        missing_server("postgresql")
    user = _run_as()
    as_user: dict[str, Any] = (
        {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    )
    root = Path(tempfile.mkdtemp(prefix="kubetest-pg-"))
    data, port = root / "data", free_port()
    initdb = f"-D {data} -U kt -A scram-sha-256 --pwfile={root / 'pw'} --no-sync -E UTF8 --locale=C"
    server = f"-D {data} -k {root} -p {port} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
    try:
        (root / "pw").write_text(PG_PW + "\n")
        if user:
            for path in (root, root / "pw"):
                os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run([str(bindir / "initdb"), *initdb.split()], cwd=root, check=True,
                       capture_output=True, timeout=60, **as_user)  # fmt: skip
        with (root / "log").open("wb") as log:
            proc = subprocess.Popen([str(bindir / "postgres"), *server.split()], cwd=root,
                                    stdout=subprocess.DEVNULL, stderr=log, **as_user)  # fmt: skip
            try:
                wait_until(lambda: _pg_ready(port), 20, proc)
            except RuntimeError as exc:
                stop(proc, signal.SIGINT)
                tail = (root / "log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres: {exc}: {tail}") from None
            try:
                yield port
            finally:
                stop(proc, signal.SIGINT)  # fast shutdown
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg_ready(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(_dsn(port, PG_PW), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _dsn(port: int, password: str, db: str = "postgres") -> str:
    return f"postgresql://kt:{password}@127.0.0.1:{port}/{db}"


class FakeAPI:
    """A loopback HTTP server answering fixed JSON per path, recording request headers."""

    def __init__(
        self,
        routes: dict[str, tuple[int, Any]],
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.routes, self.token = routes, token
        self.seen: list[tuple[str, str]] = []
        self.peers: list[Any] = []  # client certificates seen (TLS only)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                api.seen.append((self.path, self.headers.get("Authorization", "")))
                if tls:
                    api.peers.append(self.connection.getpeercert())  # type: ignore[attr-defined]
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    status, body = 401, {"kind": "Status", "code": 401}
                else:
                    status, body = api.routes.get(self.path, (404, {"error": "not found"}))
                send_json(self, status, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = LoopbackServer(Handler, tls=tls, poll_interval=0.05)
        self.url = self.http.url

    def __enter__(self) -> FakeAPI:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()


OLLAMA_TAGS = {"models": [{"name": "granite3.1-dense:8b"}, {"name": "llama3:latest"}]}


OPENAI_MODELS = {"object": "list", "data": [{"id": "granite3.1-dense:8b", "object": "model"}]}


KUBE_ROUTES = {
    "/version": (200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"}),
    "/api/v1/namespaces/test-workloads": (
        200,
        {"kind": "Namespace", "status": {"phase": "Active"}},
    ),
}


def kubeconfig(tmp_path: Path, server: str, user: dict[str, Any]) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kind-kubetest",
                "clusters": [{"name": "kind-kubetest", "cluster": {"server": server}}],
                "contexts": [
                    {
                        "name": "kind-kubetest",
                        "context": {"cluster": "kind-kubetest", "user": "kind-kubetest"},
                    }
                ],
                "users": [{"name": "kind-kubetest", "user": user}],
            }
        )
    )
    return path


def kube_params(path: Path, namespaces: list[str] | None = None) -> Params:
    data: dict[str, Any] = {"environment": {"kubeconfig": str(path)}}
    if namespaces is not None:
        data["a4_actions"] = {"namespaces": namespaces}
    return parse_params(data)
