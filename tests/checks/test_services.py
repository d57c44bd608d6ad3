"""Redis, PostgreSQL, the LLM and the target checked against real servers on loopback.

Redis and PostgreSQL are Debian's own servers (``make test`` installs them through
``scripts/system-deps.sh``); the LLM API is a small fake answering the endpoints the
check reads. Every planted secret must stay out of every row."""

from __future__ import annotations

import secrets
import socket
import time

import pytest
from check_support import (
    OLLAMA_TAGS,
    OPENAI_MODELS,
    PG_PW,
    REDIS_PW,
    FakeAPI,
    _dsn,
    assert_no_secret,
    env_of,
    free_port,
    unchecked_env,
)

from kubetest.checks import (
    FAILED,
    OK,
    check_llm,
    check_postgres,
    check_redis,
    check_target,
    redact_url,
)
from kubetest.params import Params

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- Redis


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
