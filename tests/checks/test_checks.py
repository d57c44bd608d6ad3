"""Environment checks against real servers the suite starts on loopback.

Redis and PostgreSQL are Debian's own servers (``make test`` installs them through
``scripts/system-deps.sh``); the LLM and Kubernetes APIs are small fakes that answer the
endpoints the checks read. Every secret is planted in the environment and must never show
up in a table, a detail, a fix or a result file.
"""

from __future__ import annotations

import json
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
from fake_gateway import FakeGateway
from loopback import LoopbackServer

from kubetest.checks import (
    FAILED,
    NOT_CONFIGURED,
    OK,
    Check,
    check_kubernetes,
    check_llm,
    check_postgres,
    check_redis,
    check_target,
    checks_table,
    collect,
    redact,
    redact_url,
)
from kubetest.params import Environment, Params, parse_params
from kubetest.workbook import environment
from kubetest.workbook.context import TestContext

pytestmark = pytest.mark.timeout(60)

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
    return (result.table.to_string(), result.debug_table.to_string(),
            ctx.result_path.read_text())  # fmt: skip


def cli_check(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubetest check`` on these params, without KUBECONFIG and with HOME in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "kubetest", "check", "--params", str(write_params(tmp_path, data))],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip


# --------------------------------------------------------------------------- Redis


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


def test_redis_with_the_right_password_answers_pong(
    redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_REDIS_PW", REDIS_PW)
    env = env_of(redis_url=f"redis://127.0.0.1:{redis_port}/0", redis_password_env="KT_REDIS_PW")
    check = check_redis(env)
    assert check.status == OK, check
    assert check.required
    assert "PONG" in check.detail and "$KT_REDIS_PW" in check.detail
    assert_no_secret(repr(check))


def test_redis_with_a_wrong_password_fails_wrongpass(
    redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "kt-wrong-" + secrets.token_hex(8)
    monkeypatch.setenv("KT_REDIS_PW", wrong)
    env = env_of(redis_url=f"redis://127.0.0.1:{redis_port}/0", redis_password_env="KT_REDIS_PW")
    check = check_redis(env)
    assert check.status == FAILED and check.required
    assert "WRONGPASS" in check.detail
    assert "KT_REDIS_PW" in check.fix
    assert wrong not in repr(check)
    assert_no_secret(repr(check))


def test_redis_without_the_env_var_names_it(
    redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KT_REDIS_PW", raising=False)
    env = env_of(redis_url=f"redis://127.0.0.1:{redis_port}/0", redis_password_env="KT_REDIS_PW")
    check = check_redis(env)
    assert check.status == FAILED
    assert "NOAUTH" in check.detail and "$KT_REDIS_PW is not set" in check.detail
    assert check.fix.startswith("export KT_REDIS_PW=")


def test_redis_password_the_server_does_not_expect(
    redis_open_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_REDIS_PW", REDIS_PW)
    env = env_of(
        redis_url=f"redis://127.0.0.1:{redis_open_port}/0", redis_password_env="KT_REDIS_PW"
    )
    check = check_redis(env)
    assert check.status == FAILED
    assert "no password" in check.detail and "requirepass" in check.fix
    assert_no_secret(repr(check))


def test_redis_without_auth_is_ok_when_none_is_needed(
    redis_open_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KT_REDIS_PW", raising=False)
    env = env_of(
        redis_url=f"redis://127.0.0.1:{redis_open_port}/0", redis_password_env="KT_REDIS_PW"
    )
    check = check_redis(env)
    assert check.status == OK and "no password" in check.detail


def test_redis_closed_port_fails_fast() -> None:
    t0 = time.monotonic()
    check = check_redis(env_of(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert check.status == FAILED and "refused" in check.detail.lower()
    assert time.monotonic() - t0 < 2


def test_redis_password_in_the_url_is_redacted(redis_port: int) -> None:
    """params refuse such a URL; the check stays safe when built without validation."""
    url = f"redis://:{REDIS_PW}@127.0.0.1:{redis_port}/0"
    with pytest.raises(ValueError, match="redis_password_env"):
        env_of(redis_url=url)
    check = check_redis(unchecked_env(redis_url=url, redis_password_env=None))
    assert check.status == OK, check
    assert_no_secret(repr(check))
    assert REDIS_PW not in redact_url(url)
    wrong = "kt-wrong-" + secrets.token_hex(8)
    bad = check_redis(unchecked_env(redis_url=f"redis://:{wrong}@127.0.0.1:{redis_port}/0"))
    assert bad.status == FAILED and "WRONGPASS" in bad.detail and "redis_url" in bad.detail
    assert wrong not in repr(bad)


# --------------------------------------------------------------------------- PostgreSQL


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


def test_postgres_select_1_with_the_dsn_from_env(
    postgres_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_PG_DSN", _dsn(postgres_port, PG_PW))
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == OK, check
    assert "SELECT 1 ok" in check.detail and "PostgreSQL" in check.detail
    assert f"kt@127.0.0.1:{postgres_port}/postgres" in check.detail
    assert_no_secret(repr(check))


def test_postgres_wrong_password_fails_without_printing_it(
    postgres_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "kt-wrong-" + secrets.token_hex(8)
    monkeypatch.setenv("KT_PG_DSN", _dsn(postgres_port, wrong))
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == FAILED and check.required
    assert "password authentication failed" in check.detail
    assert "KT_PG_DSN" in check.fix
    assert wrong not in repr(check)
    assert_no_secret(repr(check))


def test_postgres_unknown_database(postgres_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_PG_DSN", _dsn(postgres_port, PG_PW, db="kubernaut_missing"))
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == FAILED and "does not exist" in check.detail
    assert_no_secret(repr(check))


def test_postgres_missing_env_var_and_bad_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KT_PG_DSN", raising=False)
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == FAILED and "$KT_PG_DSN is not set" in check.detail
    assert check.fix.startswith("export KT_PG_DSN=")
    monkeypatch.setenv("KT_PG_DSN", f"host=127.0.0.1 password={PG_PW} bogus")
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == FAILED and "not a valid" in check.detail
    assert_no_secret(repr(check))


def test_postgres_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_PG_DSN", _dsn(free_port(), PG_PW))
    check = check_postgres(env_of(postgres_dsn_env="KT_PG_DSN"))
    assert check.status == FAILED and "refused" in check.detail.lower()
    assert_no_secret(repr(check))


# --------------------------------------------------------------------------- fake HTTP APIs


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


def test_llm_ollama_model_present_and_untagged_means_latest() -> None:
    with FakeAPI({"/api/tags": (200, OLLAMA_TAGS)}) as api:
        check = check_llm(env_of(llm_url=api.url, llm_model="granite3.1-dense:8b"))
        assert check.status == OK and "Ollama API" in check.detail, check
        assert check_llm(env_of(llm_url=api.url, llm_model="llama3")).status == OK


def test_llm_ollama_model_missing_says_ollama_pull() -> None:
    with FakeAPI({"/api/tags": (200, OLLAMA_TAGS)}) as api:
        check = check_llm(env_of(llm_url=api.url, llm_model="granite3.1-dense:2b"))
    assert check.status == FAILED and check.required
    assert "ollama pull granite3.1-dense:2b" in check.fix
    assert "llama3:latest" in check.detail  # the available ones are listed


def test_llm_openai_compatible_models() -> None:
    with FakeAPI({"/v1/models": (200, OPENAI_MODELS)}) as api:
        check = check_llm(env_of(llm_url=api.url, llm_model="granite3.1-dense:8b"))
        assert check.status == OK and "OpenAI-compatible" in check.detail, check
        assert (
            check_llm(env_of(llm_url=api.url + "/v1", llm_model="granite3.1-dense:8b")).status == OK
        )
        missing = check_llm(env_of(llm_url=api.url, llm_model="gpt-x"))
    assert missing.status == FAILED and "gpt-x" in missing.detail and "ollama" not in missing.fix


def test_llm_neither_api_answers() -> None:
    with FakeAPI({"/health": (200, {"status": "ok"})}) as api:
        check = check_llm(env_of(llm_url=api.url, llm_model="m"))
    assert check.status == FAILED and "no Ollama or OpenAI-compatible API" in check.detail
    closed = check_llm(env_of(llm_url=f"http://127.0.0.1:{free_port()}", llm_model="m"))
    assert closed.status == FAILED and "ConnectError" in closed.detail


def test_llm_silent_server_ends_within_the_timeout() -> None:
    """A server that accepts and never answers: the check ends on its own time budget."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        t0 = time.monotonic()
        check = check_llm(env_of(llm_url=f"http://127.0.0.1:{sock.getsockname()[1]}"), 0.5)
    assert check.status == FAILED and "Timeout" in check.detail
    assert time.monotonic() - t0 < 1.5


def test_llm_without_a_model_lists_them() -> None:
    with FakeAPI({"/api/tags": (200, OLLAMA_TAGS)}) as api:
        check = check_llm(env_of(llm_url=api.url))
    assert check.status == OK and "2 models" in check.detail


def test_target_checks_the_health_url_for_real() -> None:
    with FakeAPI({"/health": (200, {"status": "ok"})}) as api:
        check = check_target(Params(), health_url=api.url + "/health")
    assert check.status == OK and "HTTP 200" in check.detail
    down = check_target(Params(), health_url=f"http://127.0.0.1:{free_port()}/health")
    assert down.status == FAILED and down.required
    assert check_target(Params()).detail.startswith("embedded")  # no run yet: nothing to probe


# --------------------------------------------------------------------------- Kubernetes


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


def test_kubernetes_sends_the_token_and_never_prints_it(tmp_path: Path) -> None:
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        path = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        check = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert "v1.30.0" in check.detail and "test-workloads present" in check.detail
    assert "kind-kubetest" in check.detail
    assert [p for p, _ in api.seen] == ["/version", "/api/v1/namespaces/test-workloads"]
    assert all(auth == f"Bearer {KUBE_TOKEN}" for _, auth in api.seen)
    assert_no_secret(repr(check))


def test_kubernetes_missing_namespace_and_rejected_token(tmp_path: Path) -> None:
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        good = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        missing = check_kubernetes(kube_params(good, ["test-workloads", "prod-like"]))
        bad = kubeconfig(tmp_path, api.url, {"token": "kt-bad-" + secrets.token_hex(8)})
        rejected = check_kubernetes(kube_params(bad))
    assert missing.status == FAILED and "prod-like not found" in missing.detail
    assert missing.fix == "kubectl create namespace prod-like"
    assert rejected.status == FAILED and "401" in rejected.detail and "token" in rejected.fix
    assert "kt-bad-" not in repr(rejected)


def test_kubernetes_exec_plugin_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "print(json.dumps({'status': {'token': os.environ['KT_TOKEN']}}))\n"
    )
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        path = kubeconfig(
            tmp_path,
            api.url,
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "env": [{"name": "KT_TOKEN", "value": KUBE_TOKEN}],
                }
            },
        )
        check = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert_no_secret(repr(check))


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as kind makes."""
    if shutil.which("openssl") is None:
        missing_server("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    leaf = "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    (d / "srv.ext").write_text(leaf + "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "cli.ext").write_text(leaf + "extendedKeyUsage=clientAuth\n")
    steps = [
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=kubetest-ca"],
        ["req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "srv.csr", *ca, "-out", "srv.crt", "-extfile", "srv.ext"],
        ["req", *ec, "-keyout", "cli.key", "-out", "cli.csr", "-subj", "/CN=kubernetes-admin"],
        ["x509", "-req", "-in", "cli.csr", *ca, "-out", "cli.crt", "-extfile", "cli.ext"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(["openssl", *step], cwd=d, check=True, capture_output=True, timeout=30)


def test_kubernetes_tls_with_inline_ca_and_client_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kind's kubeconfig: *-data fields, written to temp files for ssl and deleted after."""
    import base64

    make_pki(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.crt")
    server_tls.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    server_tls.verify_mode = ssl.CERT_REQUIRED

    def b64(name: str) -> str:
        return base64.b64encode((tmp_path / name).read_bytes()).decode()

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with FakeAPI(KUBE_ROUTES, tls=server_tls) as api:
        path = kubeconfig(tmp_path, api.url, {"client-certificate-data": b64("cli.crt"),
                                              "client-key-data": b64("cli.key")})  # fmt: skip
        cfg = yaml.safe_load(path.read_text())
        cfg["clusters"][0]["cluster"]["certificate-authority-data"] = b64("ca.crt")
        path.write_text(yaml.safe_dump(cfg))
        check = check_kubernetes(kube_params(path))
        cfg["clusters"][0]["cluster"].pop("certificate-authority-data")
        path.write_text(yaml.safe_dump(cfg))
        untrusted = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert api.peers and dict(x[0] for x in api.peers[0]["subject"])["commonName"] == (
        "kubernetes-admin"
    )
    assert list(scratch.iterdir()) == []  # the key and certificates did not outlive the check
    assert untrusted.status == FAILED and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail


def test_kubernetes_not_configured_and_broken(tmp_path: Path, no_kubeconfig: None) -> None:
    none = check_kubernetes(Params())
    assert none.status == NOT_CONFIGURED and not none.required
    gone = check_kubernetes(kube_params(tmp_path / "nope"))
    assert gone.status == FAILED and "does not exist" in gone.detail
    (tmp_path / "broken").write_text("apiVersion: v1\nkind: Config\n")
    broken = check_kubernetes(kube_params(tmp_path / "broken"))
    assert broken.status == FAILED and "current-context" in broken.detail
    closed = kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}", {"token": KUBE_TOKEN})
    down = check_kubernetes(kube_params(closed))
    assert down.status == FAILED and "ConnectError" in down.detail
    assert_no_secret(repr(down))


# --------------------------------------------------------------------------- all together


def test_nothing_configured_is_not_required(no_kubeconfig: None) -> None:
    checks = collect(Params())
    assert [c.name for c in checks] == ["target", "llm", "redis", "postgresql", "kubernetes"]
    assert [c.status for c in checks] == [OK] + [NOT_CONFIGURED] * 4
    assert not any(c.blocking for c in checks)
    assert list(checks_table(checks).columns) == ["check", "status", "required", "detail", "fix"]


def test_redact_scrubs_plain_and_url_quoted_secrets() -> None:
    secret = "p@ss/w0rd!"
    text = f"a {secret} b p%40ss%2Fw0rd%21 c"
    assert redact(text, [secret]) == "a *** b *** c"
    assert redact("x", ["abc"]) == "x"


def test_environment_notebook_result_has_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_port: int, postgres_port: int
) -> None:
    """The whole environment test on the embedded target, every dependency configured."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KT_REDIS_PW", REDIS_PW)
    monkeypatch.setenv("KT_PG_DSN", _dsn(postgres_port, PG_PW))
    with FakeAPI({"/api/tags": (200, OLLAMA_TAGS), **KUBE_ROUTES}) as api:
        kube = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        ctx, result = run_environment(tmp_path, {
            "target": {"url": "embedded", "embedded": {"workers": 2, "service_ms": 5}},
            "environment": {
                "llm_url": api.url,
                "llm_model": "granite3.1-dense:8b",
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "redis_password_env": "KT_REDIS_PW",
                "postgres_dsn_env": "KT_PG_DSN",
                "kubeconfig": str(kube),
            },
        })  # fmt: skip
    statuses = dict(zip(result.table["check"], result.table["status"], strict=True))
    assert statuses == dict.fromkeys(["target", "llm", "redis", "postgresql", "kubernetes"], OK)
    assert ctx.health_url in result.checks[0].detail  # the running target, probed for real
    assert result.required_failed == [] and result.verdict.startswith("READY")
    saved = json.loads(ctx.result_path.read_text())
    assert saved["test"] == "ENV" and "requirements" not in saved
    assert {"title", "started", "finished", "complete", "checks"} <= saved.keys()
    assert len(saved["checks"]) == 5
    for text in written(ctx, result):
        assert_no_secret(text)


def test_environment_result_scrubs_a_failing_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_port: int
) -> None:
    """A wrong password planted in the env: failed, and the value is nowhere."""
    wrong = "kt-planted-" + secrets.token_hex(8)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KT_REDIS_PW", wrong)
    with FakeAPI({"/health": (200, {})}) as api:
        ctx, result = run_environment(tmp_path, {
            "target": {"url": api.url + "/webhook/prometheus"},
            "environment": {
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "redis_password_env": "KT_REDIS_PW",
            },
        })  # fmt: skip
    assert result.required_failed == ["redis"]
    for text in written(ctx, result):
        assert wrong not in text


def test_cli_check_exits_1_on_a_required_failure(tmp_path: Path) -> None:
    out = cli_check(tmp_path, {"target": {"url": f"http://127.0.0.1:{free_port()}/x"}})
    assert out.returncode == 1, out
    assert out.stdout.count("status") == 1  # one table
    assert "failed" in out.stdout and "not configured" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert "target" in out.stderr  # names the failed required check


def test_cli_check_exits_0_when_only_unconfigured(tmp_path: Path) -> None:
    out = cli_check(tmp_path, {"target": {"url": "embedded"}, "environment": {}})
    assert out.returncode == 0, out
    assert out.stdout.count("not configured") == 4


def test_check_dataclass_blocking() -> None:
    assert Check("x", FAILED, True, "").blocking
    assert not Check("x", FAILED, False, "").blocking
    assert not Check("x", OK, True, "").blocking


# --------------------------------------------------------------------------- A4's action plan


def _kubernaut_a4(**over: object) -> Params:
    """params/kubernaut.yaml's A4 against a real (non-embedded) gateway URL."""
    shipped = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "params/kubernaut.yaml").read_text()
    )
    return parse_params({"target": {"url": "http://127.0.0.1:9", "api": "kubernaut"},
                         "a4_actions": {**shipped["a4_actions"], **over}})  # fmt: skip


def test_the_shipped_kubernaut_params_cannot_judge_br_pa_011_and_check_says_so() -> None:
    from kubetest.checks import WARNING, check_a4_actions

    [row] = check_a4_actions(_kubernaut_a4())
    assert (row.name, row.status, row.required) == ("a4_actions", WARNING, False)
    assert row.detail == ("18 of 27 actions will run (9 destructive held back by the guard); "
                          "BR-PA-011 needs 25: A4 will be INCONCLUSIVE")  # fmt: skip
    assert "a4_actions.allow_destructive: true" in row.fix
    assert "a4_actions.namespaces" in row.fix and "a4_actions.min_actions: 18" in row.fix


def test_opting_in_or_lowering_the_count_makes_br_pa_011_judgeable() -> None:
    from kubetest.checks import check_a4_actions

    [opted] = check_a4_actions(_kubernaut_a4(allow_destructive=True))
    assert opted.status == OK and opted.detail.startswith("27 of 27 actions will run")
    [lowered] = check_a4_actions(_kubernaut_a4(min_actions=18))
    assert lowered.status == OK
    assert "needs 18 (a4_actions.min_actions 18, lowered from BR-PA-011's 25)" in lowered.detail
    assert check_a4_actions(parse_params({})) == []  # no A4, no row


def test_a_lowered_count_is_named_in_the_a4_verdict() -> None:
    import pandas as pd

    from kubetest.workbook.a4_actions import judge

    frame = pd.DataFrame({"action": [f"a{i}" for i in range(18)] + ["drain_node"],
                          "outcome": ["accepted"] * 18 + ["skipped"],
                          "error": [""] * 18 + ["destructive: set a4_actions.allow_destructive"],
                          "verified": ["executed"] * 18 + [""]})  # fmt: skip
    assert judge(frame, "kubernetes").status == "INCONCLUSIVE"
    req = judge(frame, "kubernetes", min_actions=18)
    assert req.status == "PASS" and req.details["min_actions"] == 18
    assert req.threshold.startswith("≥ 18 actions (a4_actions.min_actions, lowered from "
                                    "BR-PA-011's 25)")  # fmt: skip


def test_cli_check_warns_about_a4_and_wants_a_kubeconfig_for_verify_kubernetes(
    fake_gateway: Callable[..., FakeGateway],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_kubeconfig: None,
) -> None:

    from kubetest.cli import main

    gw = fake_gateway()
    path = write_params(tmp_path, {
        "target": {"url": gw.url, "api": "kubernaut", "health_url": gw.health_url,
                   "metrics_url": gw.metrics_url},
        "environment": {},
        "a4_actions": {"actions": "kubernaut", "verify": "kubernetes"},
    })  # fmt: skip
    rc = main(["check", "--params", str(path)])
    out = capsys.readouterr()
    assert rc == 1
    rows = {ln.split()[0]: ln for ln in out.out.splitlines()[2:]}
    assert rows["a4_actions"].split()[1:3] == ["warning", "no"]
    assert rows["kubernetes"].split()[1:3] == ["failed", "yes"]
    assert "history" not in rows["kubernetes"]  # A4 verifies through Kubernetes here
    assert "A4 (verify: kubernetes)" in rows["kubernetes"]
    err = out.err.splitlines()
    assert "kubetest check: warning: a4_actions: 18 of 27 actions will run" in err[0]
    assert "kubetest check: required check failed: kubernetes" in err


def test_the_kubeconfig_hint_fits_the_plan(no_kubeconfig: None) -> None:
    history = check_kubernetes(parse_params({"environment": {}, "a4_actions": {}}))
    assert history.status == NOT_CONFIGURED and "action history" in history.fix
    none = check_kubernetes(parse_params({"environment": {}}))
    assert none.status == NOT_CONFIGURED and "history" not in none.fix
