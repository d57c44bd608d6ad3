"""The rows for the services the target depends on: the LLM server (Ollama or an
OpenAI-compatible API) and its model, Redis (PING, with AUTH) and PostgreSQL (SELECT 1)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from kubetest import control
from kubetest.checks import base
from kubetest.checks.base import TIMEOUT_S, Check, failed, ok
from kubetest.params import Environment
from kubetest.secrets import redact_url


def _unset(name: str, key: str, fix: str) -> Check:
    """The row of a service whose ``environment.<key>`` is not set: not checked."""
    return base.not_configured(name, f"environment.{key} is not set", fix)


# --------------------------------------------------------------------------- LLM


def _llm_endpoints(url: str) -> list[tuple[str, str]]:
    """(API name, models URL) for Ollama and OpenAI-compatible servers at ``url``."""
    base = url.rstrip("/")
    if base.endswith("/v1"):
        return [("OpenAI-compatible", base + "/models"), ("Ollama", base[:-3] + "/api/tags")]
    return [("Ollama", base + "/api/tags"), ("OpenAI-compatible", base + "/v1/models")]


def _model_names(api: str, body: Any) -> list[str] | None:
    """Model names from an Ollama ``/api/tags`` or OpenAI ``/v1/models`` body (None: not it)."""
    if not isinstance(body, dict):
        return None
    key, name = ("models", "name") if api == "Ollama" else ("data", "id")
    items = body.get(key)
    if not isinstance(items, list):
        return None
    return [str(m.get(name) or m.get("model") or "") for m in items if isinstance(m, dict)]


def _has_model(model: str, names: list[str]) -> bool:
    """Ollama lists ``name:tag``; a model asked for without a tag means ``:latest``."""
    wanted = {model, model if ":" in model else model + ":latest"}
    return any(n in wanted for n in names)


def check_llm(env: Environment | None, timeout_s: float = TIMEOUT_S) -> Check:
    """The LLM server answers its model list, and the configured model is in it."""
    url = env.llm_url if env else None
    if not url:
        return _unset("llm", "llm_url", "set environment.llm_url (and llm_model) to check the LLM")
    shown = redact_url(url)
    tried: list[str] = []
    deadline = base.Deadline(timeout_s)
    for api, models_url in _llm_endpoints(url):
        try:
            resp = control.get(models_url, timeout_s=deadline.left(), proxy="env")
        except httpx.HTTPError as exc:
            tried.append(f"{redact_url(models_url)}: {base.one_line(exc)}")
            if isinstance(exc, httpx.TransportError):
                break  # same host and port: the other API cannot answer either
            continue
        try:
            names = _model_names(api, resp.json()) if resp.is_success else None
        except ValueError:
            names = None
        if names is None:
            tried.append(f"{redact_url(models_url)}: HTTP {resp.status_code}")
            continue
        return _llm_verdict(env, api, shown, names)  # type: ignore[arg-type]
    return failed(
        "llm",
        f"{shown}: no Ollama or OpenAI-compatible API answered (" + "; ".join(tried) + ")",
        "start the LLM server (ollama serve) or fix environment.llm_url",
    )


def _llm_verdict(env: Environment, api: str, shown: str, names: list[str]) -> Check:
    listed = ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")
    model = env.llm_model
    if not model:
        return ok(
            "llm",
            f"{shown}: {api} API, {len(names)} models: {listed or 'none'} "
            "(environment.llm_model not set: model not checked)",
        )
    if _has_model(model, names):
        return ok("llm", f"{shown}: {api} API, model {model} present")
    pull = f"ollama pull {model}" if api == "Ollama" else f"load {model} into the server"
    return failed(
        "llm",
        f"{shown}: {api} API answers but model {model} is missing (available: {listed or 'none'})",
        f"{pull}, or set environment.llm_model to an available model",
    )


# --------------------------------------------------------------------------- Redis


def check_redis(env: Environment | None, timeout_s: float = TIMEOUT_S) -> Check:
    """Redis answers PING with PONG, authenticating with the password from the named env var."""
    import redis
    from redis.backoff import NoBackoff
    from redis.connection import parse_url
    from redis.retry import Retry

    url = env.redis_url if env else None
    if not url:
        return _unset(
            "redis", "redis_url", "set environment.redis_url (e.g. redis://localhost:6379/0)"
        )
    var = env.redis_password_env  # type: ignore[union-attr]
    password = os.environ.get(var) if var else None
    try:
        kwargs = parse_url(url)
    except ValueError as exc:
        return failed(
            "redis",
            f"environment.redis_url is not a Redis URL: {exc}",
            "use redis://host:6379/0 (rediss:// for TLS)",
        )
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    if password:
        kwargs["password"] = password  # the env var wins over a password in the URL
    source = f"${var}" if password else ("redis_url" if kwargs.get("password") else None)
    pool = redis.ConnectionPool(
        **kwargs,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    client = redis.Redis(connection_pool=pool)
    try:
        pong = client.execute_command("PING")
        version = _redis_version(client)
    except redis.AuthenticationError as exc:
        return _redis_auth_failure(where, var, source, str(exc))
    except redis.ResponseError as exc:
        return failed("redis", f"{where}: {base.one_line(exc)}", "check the server's ACL for PING")
    except redis.RedisError as exc:
        return failed(
            "redis", f"{where}: {base.one_line(exc)}", "start Redis or fix environment.redis_url"
        )
    finally:
        client.close()
        pool.disconnect()
    if pong not in (True, b"PONG", "PONG"):
        return failed(
            "redis",
            f"{where}: PING answered {pong!r}, not PONG",
            "environment.redis_url does not point at a Redis server",
        )
    auth = f"password from {source}" if source else "no password"
    return ok("redis", f"{where}: PONG ({auth}){version}")


def _redis_version(client: Any) -> str:
    """The server version, when the ACL lets us read INFO (an extra, not a requirement)."""
    import redis

    try:
        return f", redis {client.info('server').get('redis_version', '?')}"
    except redis.RedisError:
        return ""


def _redis_auth_failure(where: str, var: str | None, source: str | None, msg: str) -> Check:
    """Name the cause: no password, a wrong one, or one the server does not expect.

    ``source`` says where the password came from (``$VAR`` or ``redis_url``), None if nowhere.
    """
    low = msg.lower()
    if "without any password configured" in low:
        return failed(
            "redis",
            f"{where}: the server has no password but one is set in {source} "
            "(the guide's Redis requires AUTH)",
            f"configure requirepass on the server, or remove the password from {source}",
        )
    if source is None and ("required" in low or "noauth" in low):
        name = var or "REDIS_PASSWORD"
        return failed(
            "redis",
            f"{where}: NOAUTH: the server requires a password and ${name} is not set",
            f"export {name}=<the server's requirepass> (environment.redis_password_env"
            " names the variable)",
        )
    return failed(
        "redis",
        f"{where}: WRONGPASS: invalid password (from {source})",
        f"set {source} to the server's requirepass (or check the ACL user)",
    )


# --------------------------------------------------------------------------- PostgreSQL


def check_postgres(env: Environment | None, timeout_s: float = TIMEOUT_S) -> Check:
    """PostgreSQL accepts the DSN from the named env var and answers ``SELECT 1``."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    var = env.postgres_dsn_env if env else None
    if not var:
        return _unset(
            "postgresql",
            "postgres_dsn_env",
            "name an env var holding the DSN in environment.postgres_dsn_env",
        )
    dsn = os.environ.get(var, "")
    if not dsn:
        return failed(
            "postgresql",
            f"${var} is not set",
            f"export {var}=postgresql://user:password@host:5432/dbname",
        )
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:  # its message quotes the DSN: do not show it
        return failed(
            "postgresql",
            f"${var} is not a valid PostgreSQL DSN",
            "use postgresql://user:password@host:5432/dbname",
        )
    where = (
        f"{info.get('user', '')}@{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        f"/{info.get('dbname', '')}"
    )
    secrets = [dsn, str(info.get("password") or "")]
    try:
        with psycopg.connect(
            dsn, connect_timeout=max(2, round(timeout_s)), autocommit=True
        ) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")  # an int: no injection
            one = conn.execute("SELECT 1").fetchone()
            version = conn.info.server_version
    except psycopg.Error as exc:
        return base.scrub(_postgres_failure(where, var, str(exc)), secrets)
    if not one or one[0] != 1:
        return failed("postgresql", f"{where}: SELECT 1 answered {one!r}", "see the server log")
    major, minor = divmod(version, 10000)
    return ok("postgresql", f"{where}: SELECT 1 ok, PostgreSQL {major}.{minor}")


def _postgres_failure(where: str, var: str, msg: str) -> Check:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    reason = (lines[0] if lines else "connection failed").removeprefix("connection failed: ")
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        fix = f"fix the user or password in {var}"
    elif "does not exist" in low:
        fix = f"create the database/role, or fix {var}"
    elif "refused" in low or "timeout" in low or "could not translate" in low:
        fix = f"start PostgreSQL or fix the host/port in {var}"
    else:
        fix = "see the server log"
    return failed("postgresql", f"{where}: {reason}", fix)
