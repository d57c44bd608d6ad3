"""`kubetest debug-info`: the archive for a bug report holds what it says, and no secret."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from kubetest.debug_bundle import LOG_TAIL_LINES, notebook_errors, write_debug_bundle
from kubetest.errors import KubetestError

pytestmark = pytest.mark.timeout(120)

RED, BOLD, RESET = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"


def _secret(prefix: str) -> tuple[str, str]:
    """A secret and its random core: the core must not appear in any encoding."""
    core = secrets.token_hex(10)
    return prefix + core, core


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Secrets in every place the params and the environment hold them."""
    found = {
        "token": _secret("kt-tok-"),
        # a quote and a backslash: JSON escaping must not hide it from the scrubber
        "redis": _secret('kt-red"is\\'),
        # characters a DSN URL must quote
        "pg": _secret("kt pg@/:"),
        "api_key": _secret("kt-key-"),  # a secret-named env var the params do not mention
        "url": _secret("kt-url-"),  # a URL password nothing knows about
        "target_url": _secret("kt-tgt-"),  # in target.url of the params
        "kube": _secret("kt-kube-"),  # in the kubeconfig
        "llm": _secret("kt-llm-"),  # in an LLM_ENDPOINT URL
    }
    dsn = f"postgresql://kt:{quote(found['pg'][0], safe='')}@127.0.0.1:9/kt"
    found["dsn"] = (dsn, found["pg"][1])
    monkeypatch.setenv("KT_TOKEN", found["token"][0])
    monkeypatch.setenv("KT_REDIS_PW", found["redis"][0])
    monkeypatch.setenv("KT_PG_DSN", dsn)
    monkeypatch.setenv("ACME_API_KEY", found["api_key"][0])
    monkeypatch.setenv("LLM_ENDPOINT", f"http://llm:{found['llm'][0]}@127.0.0.1:9/v1")
    monkeypatch.setenv("FEATURE_KEY_ENABLED", "true")  # must not mangle every "true"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kt",
            "contexts": [{"name": "kt", "context": {"cluster": "kt", "user": "kt"}}],
            "clusters": [{"name": "kt", "cluster": {"server": "https://127.0.0.1:9",
                                                    "insecure-skip-tls-verify": True}}],
            "users": [{"name": "kt", "user": {"token": found["kube"][0]}}],
        })
    )  # fmt: skip
    monkeypatch.setenv("KT_KUBECONFIG_PATH", str(kubeconfig))
    return found


def _params_doc(found: dict[str, tuple[str, str]]) -> dict:
    return {
        "target": {
            "url": f"http://bot:{found['target_url'][0]}@127.0.0.1:9/webhook/prometheus",
            "auth_token_env": "KT_TOKEN",
            "timeout_s": 2,
        },
        "environment": {
            "redis_url": "redis://127.0.0.1:9/0",
            "redis_password_env": "KT_REDIS_PW",
            "postgres_dsn_env": "KT_PG_DSN",
            "kubeconfig": os.environ["KT_KUBECONFIG_PATH"],
        },
        "a1_response_time": {"rate_per_min": 60, "duration_min": 0.05},
    }


def _notebook(error: dict | None) -> dict:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# A1"},
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [],
         "execution_count": 1},
    ]  # fmt: skip
    if error:
        cells.append({"cell_type": "code", "metadata": {}, "source": "send()",
                      "execution_count": 2, "outputs": [error]})  # fmt: skip
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def make_session(root: Path, found: dict[str, tuple[str, str]]) -> Path:
    """A session folder as `kubetest run` leaves it after A1 failed, secrets in its logs."""
    token, redis_pw, dsn = found["token"][0], found["redis"][0], found["dsn"][0]
    session = root / "outputs" / "s1"
    for sub in ("results", "notebooks", "records", "suites", "html"):
        (session / sub).mkdir(parents=True)
    (session / "params.yaml").write_text(yaml.safe_dump(_params_doc(found), sort_keys=False))
    failure = f'A1: HTTPStatusError: 401 with "Bearer {token}" and password {redis_pw}'
    (session / "state.json").write_text(
        json.dumps({"attempt": 1, "tests": {"A1": {"state": "failed", "error": failure}}}, indent=2)
    )
    (session / "summary.json").write_text(
        json.dumps(
            {"session": "s1", "complete": True, "failures": {"A1": failure}, "requirements": []}
        )
    )
    (session / "results" / "ENV.json").write_text(json.dumps({"test": "ENV", "dsn": dsn}))
    # the target's log: 2,500 lines, secrets near the end, ANSI colour
    lines = [f"line {i}: POST /webhook/prometheus 202" for i in range(2500)]
    lines[-3] = f"{RED}auth failed{RESET}: Authorization: Bearer {token}"
    lines[-2] = f"connecting to redis://admin:{found['url'][0]}@cache:6379/0 with {redis_pw}"
    lines[-1] = f"dsn={dsn} quoted={quote(found['pg'][0], safe='')} key={found['api_key'][0]}"
    (session / "target.log").write_text("\n".join(lines) + "\n")
    (session / "suites" / "x.stdout.log").write_text("suite x: 3 passed\n")
    (session / "suites" / "x.junit.xml").write_text(
        f'<testsuite><testcase name="t"><failure message="token {token}"/></testcase></testsuite>\n'
    )
    (session / "suites" / "x.stderr.log").write_text(
        f"kubeconfig token {found['kube'][0]}\nllm at {os.environ['LLM_ENDPOINT']}\n"
    )
    # the executed notebook: a 30-line coloured traceback, the secret split by a colour code
    tb = [f'{BOLD}  File "frame{i}.py", line {i}{RESET}' for i in range(30)]
    tb[-2] = f"{RED}    raise ConnectionError(f'token {token[:5]}{BOLD}{token[5:]}'){RESET}"
    tb[-1] = f"{RED}ConnectionError{RESET}: refused with password {redis_pw}"
    error = {"output_type": "error", "ename": "ConnectionError",
             "evalue": f"refused with password {redis_pw}", "traceback": tb}  # fmt: skip
    (session / "notebooks" / "a1_response_time.ipynb").write_text(json.dumps(_notebook(error)))
    (session / "notebooks" / "environment.ipynb").write_text(json.dumps(_notebook(None)))
    # what must stay out: records (with secrets in them), the report
    (session / "records" / "A1.csv").write_text(f"t,outcome,auth\n0.1,accepted,{token}\n")
    (session / "records" / "A1.log").write_text(f"{token}\n")
    (session / "report.html").write_text(f"<html>{token}</html>")
    (session / "html" / "a1_response_time.html").write_text("<html></html>")
    return session


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        members = {}
        for info in tar.getmembers():
            assert info.isfile(), info.name
            prefix, _, name = info.name.partition("/")
            assert prefix == path.name.removesuffix(".tar.gz")
            members[name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    return members


def assert_no_secret(members: dict[str, bytes], found: dict[str, tuple[str, str]]) -> None:
    for name, data in members.items():
        for what, (value, core) in found.items():
            forms = {value, quote(value, safe=""), quote(value), json.dumps(value)[1:-1], core}
            for form in forms:
                assert form.encode() not in data, f"{what} secret leaked into {name} as {form!r}"


def test_bundle_of_a_failed_session_holds_the_facts_and_no_secret(
    planted: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    session = make_session(tmp_path, planted)
    path = write_debug_bundle(session, params_path=None, output=None, check_timeout_s=2)

    # next to the session folder, not in it
    assert path == (tmp_path / "outputs" / "kubetest-debug-s1.tar.gz").resolve()
    members = read_archive(path)
    assert {
        "platform.json", "checks.json", "params.yaml", "MANIFEST.txt", "session/state.json",
        "session/summary.json", "session/results/ENV.json", "session/target.log",
        "session/suites/x.stdout.log", "session/suites/x.stderr.log",
        "session/suites/x.junit.xml", "session/notebook-errors.txt",
    } == set(members)  # fmt: skip
    assert b'<failure message="token ***"/>' in members["session/suites/x.junit.xml"]
    assert not [n for n in members if "records" in n or n.endswith((".html", ".ipynb", ".csv"))]
    assert_no_secret(members, planted)

    errors = members["session/notebook-errors.txt"].decode()
    assert "\x1b" not in errors
    assert "a1_response_time.ipynb: cell 2: ConnectionError: refused with password ***" in errors
    assert "environment.ipynb: no error" in errors
    assert "    ConnectionError: refused with password ***" in errors  # the last line
    assert "raise ConnectionError(f'token ***')" in errors  # split by a colour code: still found
    assert 'File "frame27.py", line 27' in errors  # within the last 20 lines
    assert 'File "frame9.py"' not in errors  # older than the last 20

    log = members["session/target.log"].decode()
    assert "\x1b" not in log
    assert len(log.splitlines()) == LOG_TAIL_LINES
    assert log.splitlines()[0] == "line 500: POST /webhook/prometheus 202"
    assert "Authorization: Bearer ***" in log and "redis://admin:***@cache:6379/0" in log

    platform = json.loads(members["platform.json"])
    env = platform["environment_variables"]
    assert env["KT_TOKEN"] == env["KT_REDIS_PW"] == env["KT_PG_DSN"] == "set"
    assert env["LLM_ENDPOINT"] == "http://llm:***@127.0.0.1:9/v1"
    assert "ACME_API_KEY" not in env  # not a relevant name: not listed at all
    assert platform["distributions"]["pydantic"] and platform["cpu_count"] >= 1
    assert platform["debug_info"]["target"]["url"].startswith("http://bot:***@127.0.0.1:9/")

    params = yaml.safe_load(members["params.yaml"])
    assert params["target"]["auth_token_env"] == "KT_TOKEN"  # names kept, values never there
    assert params["environment"]["postgres_dsn_env"] == "KT_PG_DSN"

    checks = {c["name"]: c for c in json.loads(members["checks.json"])["checks"]}
    assert set(checks) == {"target", "llm", "redis", "postgresql", "kubernetes"}
    assert checks["redis"]["status"] == checks["postgresql"]["status"] == "failed"

    summary = json.loads(members["session/summary.json"])
    assert summary["complete"] is True  # "true" survived FEATURE_KEY_ENABLED=true
    manifest = members["MANIFEST.txt"].decode()
    assert "session/records/: 2 files" in manifest and "session/report.html" in manifest
    assert "session/target.log: log (last 2000 lines of 2500" in manifest
    assert "session/suites/x.stdout.log: log (whole" in manifest


def test_checks_can_be_skipped_and_output_can_be_a_folder(
    planted: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    session = make_session(tmp_path, planted)
    out = tmp_path / "bundles"
    out.mkdir()
    path = write_debug_bundle(session, params_path=None, output=out, run_checks=False)
    assert path == out / "kubetest-debug-s1.tar.gz"
    members = read_archive(path)
    assert "checks.json" not in members
    assert "checks.json: --no-checks" in members["MANIFEST.txt"].decode()
    assert_no_secret(members, planted)


def test_a_session_with_refused_params_still_gets_a_bundle(
    planted: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    session = make_session(tmp_path, planted)
    doc = yaml.safe_load((session / "params.yaml").read_text())
    doc["target"]["no_such_key"] = 1
    (session / "params.yaml").write_text(yaml.safe_dump(doc))
    members = read_archive(write_debug_bundle(session, params_path=None, output=None))
    manifest = members["MANIFEST.txt"].decode()
    assert "params refused" in manifest and "no_such_key" in manifest
    assert "checks.json" not in members and "params.yaml" in members
    # no validated params: the secret-named env vars and URL passwords are still scrubbed
    assert_no_secret(members, {k: planted[k] for k in ("api_key", "url", "target_url", "llm")})


def test_not_a_session_folder_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(KubetestError, match="is not a session folder"):
        write_debug_bundle(tmp_path, params_path=None, output=None)


def test_notebook_errors_reads_broken_notebooks(tmp_path: Path) -> None:
    (tmp_path / "half.ipynb").write_text('{"cells": [')
    assert "half.ipynb: could not be read" in notebook_errors([tmp_path / "half.ipynb"])
    assert notebook_errors([]) == "no executed notebooks in this session\n"


# --------------------------------------------------------------------------- CLI


def kubetest(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "kubetest", *args], capture_output=True, text=True, timeout=90,
        cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_cli_bad_session_is_one_line(tmp_path: Path, where: str) -> None:
    folder = tmp_path / where
    if where == "empty":
        folder.mkdir()
    proc = kubetest("debug-info", str(folder), "--no-checks", cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubetest: error:"), proc.stderr
    assert "not a session folder" in lines[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.tar.gz"))


def test_cli_missing_params_is_one_line(tmp_path: Path) -> None:
    proc = kubetest("debug-info", "--params", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "not found" in proc.stderr


def test_cli_without_session_uses_params(
    planted: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    params = tmp_path / "my.yaml"
    params.write_text(yaml.safe_dump(_params_doc(planted)))
    proc = kubetest("debug-info", "--params", str(params), "--no-checks", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.parent == tmp_path and path.name.startswith("kubetest-debug-")
    members = read_archive(path)
    assert set(members) == {"platform.json", "params.yaml", "MANIFEST.txt"}
    assert "no SESSION given" in members["MANIFEST.txt"].decode()
    assert_no_secret(members, planted)


def test_cli_with_nothing_is_platform_only(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    proc = kubetest("debug-info", "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    members = read_archive(out)
    assert set(members) == {"platform.json", "MANIFEST.txt"}
    assert "platform and package versions only" in members["MANIFEST.txt"].decode()
    assert json.loads(members["platform.json"])["debug_info"] is None


# --------------------------------------------------------------------------- real session


@pytest.mark.timeout(240)
def test_bundle_of_a_real_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout `kubetest run` really writes (not just the hand-made one above)."""
    from kubetest.session import run_session

    token, core = _secret("kt-real-")
    monkeypatch.setenv("KT_REAL_TOKEN", token)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({
        "target": {"url": "embedded", "auth_token_env": "KT_REAL_TOKEN",
                   "embedded": {"workers": 4, "service_ms": 10, "service_dist": "exp"}},
        "a1_response_time": {"rate_per_min": 600, "duration_min": 0.05},
    }))  # fmt: skip
    result = run_session(
        params, only=["A1"], session="real", outputs=tmp_path / "out", echo=lambda line: None
    )
    path = write_debug_bundle(result.session_dir, params_path=None, output=None)
    members = read_archive(path)
    assert {"session/state.json", "session/summary.json", "session/target.log",
            "session/results/A1.json", "checks.json"} <= set(members)  # fmt: skip
    errors = members["session/notebook-errors.txt"].decode()
    assert "a1_response_time.ipynb: no error" in errors
    assert "session/records/" in members["MANIFEST.txt"].decode()
    assert_no_secret(members, {"token": (token, core)})


def test_symlinks_in_a_session_are_never_followed(tmp_path: Path) -> None:
    """A session's state.json, summary.json, params.yaml, results/ or suites/ that point
    outside it: the target's text is not in the archive, and MANIFEST.txt names each link."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    marker = "OUTSIDE-" + secrets.token_hex(8)
    for name in ("state.json", "summary.json"):
        (outside / name).write_text(json.dumps({"marker": marker}))
    (outside / "params.yaml").write_text(f"target: {{url: 'http://127.0.0.1:9/{marker}'}}\n")
    (outside / "dir" / "x.json").write_text(json.dumps({"marker": marker}))
    (outside / "dir" / "x.log").write_text(marker + "\n")
    (outside / "dir" / "x.xml").write_text(f"<testsuites name='{marker}'/>")
    session = tmp_path / "out" / "s"
    session.mkdir(parents=True)
    for name in ("state.json", "summary.json", "params.yaml"):
        (session / name).symlink_to(outside / name)
    (session / "results").symlink_to(outside / "dir")
    (session / "suites").symlink_to(outside / "dir")
    (session / "progress.log").write_text("own log line\n")
    path = write_debug_bundle(session, output=tmp_path / "b.tar.gz", run_checks=False)
    members = read_archive(path)
    for name, data in members.items():
        assert marker.encode() not in data, f"a symlink's target leaked into {name}"
    assert b"own log line" in members["session/progress.log"]
    manifest = members["MANIFEST.txt"].decode()
    for name in ("state.json", "summary.json", "params.yaml", "results", "suites"):
        assert f"session/{name}: a symlink: not followed" in manifest, name
