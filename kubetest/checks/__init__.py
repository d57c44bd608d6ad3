"""Environment readiness (the guide's Step 1 and its debug info): is everything the service
under test depends on there, and if not, what to do about it.

Each check returns ok / failed / not configured with the reason and the fix, and never
raises: a readiness table that stops at the first surprise tells the engineer nothing about
the rest. Each check is bounded by a short timeout and they run side by side.

Secrets (the Redis password, the PostgreSQL DSN, bearer tokens) are read from the env vars
the params name and never appear in a detail, a fix, a table or a result file: details are
built from parsed, credential-free parts, and every text is scrubbed of the known secret
values as a safety net for library error messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pandas as pd
import yaml

from kubetest import __version__, control, endpoints, rbac
from kubetest.endpoints import origin
from kubetest.errors import KubetestError
from kubetest.params import A4Actions, Environment, Params, load_params
from kubetest.secrets import REDACTED, redact
from kubetest.tls import FIXES as TLS_FIXES
from kubetest.tls import TlsError, tls_problem, verify

OK, FAILED, NOT_CONFIGURED = "ok", "failed", "not configured"
#: Not blocking, but the run will not judge what it was asked to (e.g. BR-PA-011).
WARNING = "warning"
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | failed | not configured
    required: bool
    detail: str
    fix: str = ""

    @property
    def blocking(self) -> bool:
        """A required check that failed: ``kubetest check`` exits 1."""
        return self.required and self.status == FAILED


def _ok(name: str, detail: str) -> Check:
    return Check(name, OK, True, detail)


def _failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAILED, True, detail, fix)


def _not_configured(name: str, detail: str, fix: str) -> Check:
    return Check(name, NOT_CONFIGURED, False, detail, fix)


# --------------------------------------------------------------------------- secrets


def redact_url(url: str) -> str:
    """A URL without its password (``redis://:pw@h:6379/0`` → ``redis://:***@h:6379/0``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # host[:port] as written (IPv6 brackets kept)
    netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def env_secrets(params: Params) -> list[str]:
    """The secret values the params point at (env vars), to scrub from every text."""
    env = params.environment or Environment()
    names = [env.redis_password_env, env.postgres_dsn_env, params.target.auth_token_env]
    values = [os.environ.get(n, "") for n in names if n]
    if env.postgres_dsn_env:
        values.append(_dsn_password(os.environ.get(env.postgres_dsn_env, "")))
    for url in (env.redis_url, env.llm_url):
        if url:
            with contextlib.suppress(ValueError):
                values.append(urlsplit(url).password or "")
    return [v for v in values if v]


def _scrub(check: Check, secrets: Iterable[str]) -> Check:
    secrets = list(secrets)
    return replace(check, detail=redact(check.detail, secrets), fix=redact(check.fix, secrets))


class Deadline:
    """One time budget for a check that makes several calls (it must still end in time)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.05, self.end - time.monotonic())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --------------------------------------------------------------------------- target


def check_target(
    params: Params, timeout_s: float = TIMEOUT_S, health_url: str | None = None,
    webhook_url: str | None = None,
) -> Check:
    """The target's health endpoint answers 2xx, and its webhook takes kubetest's token.

    ``health_url`` is the URL of the target actually under test (a notebook's context, with
    the embedded target it started); without it an embedded target is not running yet.
    ``webhook_url``: its webhook, when not on the health URL's origin (the embedded
    kubernaut target serves health on a port of its own).
    Once healthy, a service kubetest did not start (or one given a token) gets one
    deliberately invalid alert (``check_auth``): a 401/403 fails this check as
    "authentication failed", before any load phase wastes its minutes on it.
    """
    if health_url is None and params.target.is_embedded:
        return _ok("target", "embedded reference target: started for each run")
    url = health_url or endpoints.health_url(params.target)
    try:
        resp = control.get(url, timeout_s=timeout_s, verify=verify(params.target.tls),
                           proxy=params.target.proxy)  # fmt: skip
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            return _failed("target", f"{url}: {problem.what}", problem.fix)
        if isinstance(exc, control.ResponseTooLarge | control.DeadlineExceeded):
            return _failed("target", f"{url}: {control.error_class(exc)}: {_one_line(exc)}",
                           HOSTILE_FIX)  # fmt: skip
        return _failed("target", f"{url}: {_one_line(exc)}", _unreachable_fix(params, url))
    if not resp.is_success:
        return _unhealthy(params, url, resp)
    healthy = _ok("target", f"{url}: HTTP {resp.status_code}")
    var = params.target.auth_token_env
    if params.target.is_embedded and not var:
        return healthy
    auth = check_auth(params, timeout_s, webhook_url or webhook_url_for(params, health_url))
    if auth.status == FAILED and (is_auth_failure(auth) or is_tls_failure(auth)):
        return replace(auth, name="target")
    if var and auth.status == OK:
        return replace(healthy, detail=f"{healthy.detail}; {auth.detail}")
    return healthy


def _gateway_ports(params: Params) -> bool:
    """The health URL is the Kubernaut gateway's own port (``kubetest.endpoints``)."""
    t = params.target
    return t.api == "kubernaut" and not t.is_embedded and not t.health_url


#: The fix for a health URL that floods or trickles (``kubetest.control`` caps it).
HOSTILE_FIX = (
    "point target.health_url at the service's health endpoint (a short answer within "
    "target.timeout_s)"
)


def _unreachable_fix(params: Params, url: str) -> str:
    if _gateway_ports(params):
        return (f"the gateway serves {endpoints.GATEWAY_HEALTH_PATH} on its own port "
                f"{endpoints.GATEWAY_HEALTH_PORT} (metrics on {endpoints.GATEWAY_METRICS_PORT}): "
                "reach it too (kubectl -n <kubernaut namespace> port-forward svc/gateway-service "
                "8080 8081 9090) or set target.health_url")  # fmt: skip
    return "start the service or fix target.url / target.health_url"


def _unhealthy(params: Params, url: str, resp: httpx.Response) -> Check:
    """Not 2xx: the gateway's ``/readyz`` says which dependency is down in an RFC 7807
    ``detail`` (``writeReadinessUnavailable`` in ``pkg/gateway/server.go``; plain
    ``starting up`` from the bootstrap server, ``pkg/shared/health/server.go``; kubernaut
    at d5a4a870967312d98dbc302ac2ae3505087bfcb0)."""
    from kubetest.engine.client import problem_detail

    said = problem_detail(resp.content, secrets=env_secrets(params))
    detail = f"{url}: HTTP {resp.status_code}" + (f": {said}" if said else "")
    if resp.status_code == 404 and _gateway_ports(params):
        return _failed("target", detail, _unreachable_fix(params, url))
    if resp.status_code == 503 and params.target.api == "kubernaut":
        return _failed("target", detail + " (the gateway is not ready)",
                       "bring back what the detail names (the Kubernetes API, DataStorage, "
                       "the fleet backend) or wait for the informer cache to sync; see the "
                       "gateway's log")  # fmt: skip
    return _failed("target", detail, "the service answers but is not healthy: see its logs")


# --------------------------------------------------------------------------- auth

#: Token help for the README's "Pointing it at a real Kubernaut".
TOKEN_FIX = (
    "export {var}=$(kubectl create token <service-account> -n <namespace>) "
    "(a token the gateway's TokenReview accepts)"
)


def _probe_body() -> dict[str, Any]:
    """A webhook whose one alert lacks ``alertname``: a service that checks the token first
    answers 401/403 to a bad one and 400 to a good one, and creates nothing either way."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {"status": "firing", "labels": {"kubetest_probe": "auth"}, "annotations": {},
             "startsAt": now, "endsAt": "0001-01-01T00:00:00Z"}  # fmt: skip
    return {"version": "4", "status": "firing", "receiver": "kubetest-auth-probe",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "", "groupKey": "{}:{kubetest_probe=\"auth\"}",
            "truncatedAlerts": 0, "alerts": [alert]}  # fmt: skip


def webhook_url_for(params: Params, health_url: str | None = None) -> str | None:
    """The webhook under test: ``target.url``, or for an embedded target the profile's path
    on the origin of the health URL it runs at (``None``: not started yet)."""
    if not params.target.is_embedded:
        return params.target.url
    if health_url is None:
        return None
    from kubetest.params import API_PATHS

    return origin(health_url) + API_PATHS[params.target.api]


def check_auth(
    params: Params, timeout_s: float = TIMEOUT_S, webhook_url: str | None = None
) -> Check:
    """One deliberately invalid alert, with the bearer token when one is configured:
    401/403 is "authentication/authorization failed" (before any load wastes its minutes);
    for the Kubernaut gateway each says which of its two reviews refused, and the fix."""
    var = params.target.auth_token_env
    url = webhook_url or webhook_url_for(params)
    if url is None:
        how = f"token from ${var}" if var else "no token"
        return _ok("auth", f"embedded reference target ({how}): checked when it starts")
    headers = {"Content-Type": "application/json"}
    token = ""
    if var:
        token = os.environ.get(var, "")
        if not token:
            return _failed("auth", f"${var} (target.auth_token_env) is not set",
                           TOKEN_FIX.format(var=var))  # fmt: skip
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = control.post(
            url, json=_probe_body(), headers=headers, timeout_s=timeout_s,
            verify=verify(params.target.tls), proxy=params.target.proxy,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            return _failed("auth", f"{url}: {problem.what}", problem.fix)
        return _failed("auth", f"POST {url}: {_one_line(exc)}",
                       "start the service or fix target.url")  # fmt: skip
    from kubetest.engine.client import problem_detail

    code = resp.status_code
    said = problem_detail(resp.content, secrets=env_secrets(params))
    said = f" ({said})" if said else ""
    if code in (401, 403) and var and params.target.api == "kubernaut":
        return _gateway_refusal(params, url, code, said, var, token)
    if code in (401, 403):
        what = "rejected" if code == 401 else "not allowed"
        if var:
            return _failed(
                "auth",
                f"authentication failed: POST {url} answered {code}{said}: the token in "
                f"${var} was {what}",
                TOKEN_FIX.format(var=var) if code == 401
                else "grant the token's service account the gateway's RBAC role",
            )  # fmt: skip
        return _failed(
            "auth",
            f"authentication failed: POST {url} answered {code}{said}: the service wants a "
            "bearer token and target.auth_token_env is not set",
            "set target.auth_token_env to the name of an env var; "
            + TOKEN_FIX.format(var="KUBERNAUT_TOKEN"),
        )  # fmt: skip
    if code in (404, 405):
        return _failed(
            "auth",
            f"POST {url} answered {code}: no webhook there for target.api "
            f"{params.target.api}",
            "fix target.url or target.api (kubernaut: /api/v1/signals/prometheus, "
            "kubernaut-legacy: /alerts, webhook: /webhook/prometheus)",
        )
    if code >= 500:
        return _failed("auth", f"POST {url} answered {code}{said} to the token probe",
                       "see the service's logs")  # fmt: skip
    how = f"token from ${var} accepted" if var else "no token needed"
    return _ok("auth", f"POST {url}: {how} (HTTP {code} to a deliberately invalid alert)")


def _gateway_refusal(
    params: Params, url: str, code: int, said: str, var: str, token: str
) -> Check:
    """The Kubernaut gateway's 401 (its TokenReview did not authenticate the token) or 403
    (its SubjectAccessReview found no grant), explained with the fix; the gateway's side is
    in ``kubetest.rbac`` with its source files and commit."""
    info = rbac.token_info(token)
    who = info.subject if info else f"the token in ${var}"
    if code == 401:
        why = (f"the token in ${var} is not valid for the cluster's TokenReview"
               + (f" ({who}, expired {info.expires:%Y-%m-%d %H:%M} UTC)"
                  if info and info.expired else ""))  # fmt: skip
        return _failed("auth", f"authentication failed: POST {url} answered 401{said}: {why}",
                       rbac.token_fix(var, info))  # fmt: skip
    ns = params.remediation.namespace
    return _failed(
        "auth",
        f"authorization failed: POST {url} answered 403{said}: {who} is authenticated but "
        f"lacks the gateway's grant ({rbac.gateway_grant(ns)})",
        rbac.signal_source_fix(ns, info),
    )


def is_auth_failure(check: Check) -> bool:
    """A failed ``check_auth`` that is about the token (not reachability or the path)."""
    return check.status == FAILED and (
        check.detail.startswith(("authentication failed", "authorization failed"))
        or "auth_token_env" in check.detail
    )


def is_tls_failure(check: Check) -> bool:
    """A failed check whose cause is the service's certificate (its fix says what to set)."""
    return check.status == FAILED and check.fix in TLS_FIXES


class AuthError(KubetestError):
    """The service refused the bearer token (401/403): one line, before any load."""


def preflight_auth(params: Params, url: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise ``AuthError`` (one line) when the webhook at ``url`` refuses kubetest's token,
    or ``TlsError`` when its certificate is refused, so a load test fails in a second
    instead of measuring ten minutes of 401s or handshake failures. Other problems are left
    to the load itself (it records them as outcomes)."""
    if params.target.is_embedded and not params.target.auth_token_env:
        return
    check = _scrub(check_auth(params, timeout_s, webhook_url=url), env_secrets(params))
    if is_auth_failure(check):
        raise AuthError(f"{check.detail}; fix: {check.fix}")
    if is_tls_failure(check):
        raise TlsError(f"{check.detail}: {check.fix}")


def preflight_tls(params: Params, url: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise ``TlsError`` (one line) when an HTTPS ``url`` of the service refuses the
    handshake: a test that only probes (A3) fails now, not after its whole window."""
    if urlsplit(url).scheme != "https":
        return
    try:
        control.get(url, timeout_s=timeout_s, verify=verify(params.target.tls),
                    proxy=params.target.proxy)  # fmt: skip
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            raise TlsError(problem.line(url)) from None


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
        return _not_configured(
            "llm",
            "environment.llm_url is not set",
            "set environment.llm_url (and llm_model) to check the LLM",
        )
    shown = redact_url(url)
    tried: list[str] = []
    deadline = Deadline(timeout_s)
    for api, models_url in _llm_endpoints(url):
        try:
            resp = control.get(models_url, timeout_s=deadline.left(), proxy="env")
        except httpx.HTTPError as exc:
            tried.append(f"{redact_url(models_url)}: {_one_line(exc)}")
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
    return _failed(
        "llm",
        f"{shown}: no Ollama or OpenAI-compatible API answered (" + "; ".join(tried) + ")",
        "start the LLM server (ollama serve) or fix environment.llm_url",
    )


def _llm_verdict(env: Environment, api: str, shown: str, names: list[str]) -> Check:
    listed = ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")
    model = env.llm_model
    if not model:
        return _ok(
            "llm",
            f"{shown}: {api} API, {len(names)} models: {listed or 'none'} "
            "(environment.llm_model not set: model not checked)",
        )
    if _has_model(model, names):
        return _ok("llm", f"{shown}: {api} API, model {model} present")
    pull = f"ollama pull {model}" if api == "Ollama" else f"load {model} into the server"
    return _failed(
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
        return _not_configured(
            "redis",
            "environment.redis_url is not set",
            "set environment.redis_url (e.g. redis://localhost:6379/0)",
        )
    var = env.redis_password_env  # type: ignore[union-attr]
    password = os.environ.get(var) if var else None
    try:
        kwargs = parse_url(url)
    except ValueError as exc:
        return _failed(
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
        return _failed("redis", f"{where}: {_one_line(exc)}", "check the server's ACL for PING")
    except redis.RedisError as exc:
        return _failed(
            "redis", f"{where}: {_one_line(exc)}", "start Redis or fix environment.redis_url"
        )
    finally:
        client.close()
        pool.disconnect()
    if pong not in (True, b"PONG", "PONG"):
        return _failed(
            "redis",
            f"{where}: PING answered {pong!r}, not PONG",
            "environment.redis_url does not point at a Redis server",
        )
    auth = f"password from {source}" if source else "no password"
    return _ok("redis", f"{where}: PONG ({auth}){version}")


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
        return _failed(
            "redis",
            f"{where}: the server has no password but one is set in {source} "
            "(the guide's Redis requires AUTH)",
            f"configure requirepass on the server, or remove the password from {source}",
        )
    if source is None and ("required" in low or "noauth" in low):
        name = var or "REDIS_PASSWORD"
        return _failed(
            "redis",
            f"{where}: NOAUTH: the server requires a password and ${name} is not set",
            f"export {name}=<the server's requirepass> (environment.redis_password_env"
            " names the variable)",
        )
    return _failed(
        "redis",
        f"{where}: WRONGPASS: invalid password (from {source})",
        f"set {source} to the server's requirepass (or check the ACL user)",
    )


# --------------------------------------------------------------------------- PostgreSQL


def _dsn_password(dsn: str) -> str:
    """The password inside a libpq DSN (URL or key=value), to scrub it; "" if none."""
    if not dsn:
        return ""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return str(conninfo_to_dict(dsn).get("password") or "")
    except Exception:  # an unparsable DSN: fall back to the URL form
        with contextlib.suppress(ValueError):
            return urlsplit(dsn).password or ""
    return ""


def check_postgres(env: Environment | None, timeout_s: float = TIMEOUT_S) -> Check:
    """PostgreSQL accepts the DSN from the named env var and answers ``SELECT 1``."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    var = env.postgres_dsn_env if env else None
    if not var:
        return _not_configured(
            "postgresql",
            "environment.postgres_dsn_env is not set",
            "name an env var holding the DSN in environment.postgres_dsn_env",
        )
    dsn = os.environ.get(var, "")
    if not dsn:
        return _failed(
            "postgresql",
            f"${var} is not set",
            f"export {var}=postgresql://user:password@host:5432/dbname",
        )
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:  # its message quotes the DSN: do not show it
        return _failed(
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
        return _scrub(_postgres_failure(where, var, str(exc)), secrets)
    if not one or one[0] != 1:
        return _failed("postgresql", f"{where}: SELECT 1 answered {one!r}", "see the server log")
    major, minor = divmod(version, 10000)
    return _ok("postgresql", f"{where}: SELECT 1 ok, PostgreSQL {major}.{minor}")


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
    return _failed("postgresql", f"{where}: {reason}", fix)


# --------------------------------------------------------------------------- Kubernetes


@dataclass
class KubeAccess:
    """What a kubeconfig's current context says about reaching the API server."""

    path: Path
    context: str
    server: str
    namespace: str
    headers: dict[str, str] = field(default_factory=dict)
    ssl: ssl.SSLContext | bool = True
    secrets: list[str] = field(default_factory=list)


def find_kubeconfig(env: Environment | None) -> tuple[Path | None, str]:
    """The kubeconfig to use and where it came from: the param, $KUBECONFIG, ~/.kube/config.
    ``embedded``: the running embedded target's (``(None, "embedded")`` before it runs)."""
    if env and env.kubeconfig == "embedded":
        from kubetest.workloads import EMBEDDED_KUBECONFIG_ENV

        running = os.environ.get(EMBEDDED_KUBECONFIG_ENV)
        return (Path(running), "the embedded target") if running else (None, "embedded")
    if env and env.kubeconfig:
        return Path(env.kubeconfig).expanduser(), "environment.kubeconfig"
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return Path(entry).expanduser(), "$KUBECONFIG"
    default = Path.home() / ".kube" / "config"
    return (default, "~/.kube/config") if default.is_file() else (None, "")


def _named(items: Any, name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(kind) or {}
    raise ValueError(f"{kind} {name!r} is not defined in the kubeconfig")


def _write_temp(tmp: Path, name: str, b64: str) -> Path:
    """Inline ``*-data`` (base64 PEM) as a 0600 file, for ``ssl`` which only loads files."""
    import base64

    path = tmp / name
    path.write_bytes(base64.b64decode(b64))
    path.chmod(0o600)
    return path


def _pem(section: dict[str, Any], key: str, base: Path, tmp: Path) -> Path | None:
    """``key`` (a path, relative to the kubeconfig) or ``key-data`` (inline base64)."""
    if section.get(f"{key}-data"):
        return _write_temp(tmp, key, section[f"{key}-data"])
    if section.get(key):
        return (base / Path(section[key]).expanduser()).resolve()
    return None


def _exec_credential(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run a client-go exec credential plugin (EKS, GKE, OIDC helpers) and read its status."""
    command = [spec["command"], *[str(a) for a in spec.get("args") or []]]
    env = os.environ | {e["name"]: str(e["value"]) for e in spec.get("env") or []}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    out = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"exec credential plugin {spec['command']!r} exited {out.returncode}")
    return json.loads(out.stdout).get("status") or {}


def load_kube_access(path: Path, tmp: Path, timeout_s: float = TIMEOUT_S) -> KubeAccess:
    """Parse a kubeconfig's current context into a server URL, TLS settings and auth header."""
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ValueError("not a kubeconfig (top level is not a mapping)")
    name = cfg.get("current-context")
    if not name:
        raise ValueError("no current-context: run kubectl config use-context <name>")
    ctx = _named(cfg.get("contexts"), name, "context")
    cluster = _named(cfg.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(cfg.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ValueError(f"cluster {ctx.get('cluster')!r} has no server URL")
    access = KubeAccess(path, name, server, ctx.get("namespace") or "default")
    base = path.parent
    if user.get("exec"):
        status = _exec_credential(user["exec"], timeout_s)
        user = user | {"token": status.get("token")}
        for key, pem in (
            ("client-certificate-data", "clientCertificateData"),
            ("client-key-data", "clientKeyData"),
        ):
            if status.get(pem):
                import base64

                user[key] = base64.b64encode(status[pem].encode()).decode()
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    if token:
        access.headers["Authorization"] = f"Bearer {token}"
        access.secrets.append(token)
    elif user.get("username") and user.get("password"):
        import base64

        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        access.headers["Authorization"] = f"Basic {basic}"
        access.secrets += [user["password"], basic]
    if server.startswith("https://"):
        access.ssl = _tls_context(cluster, user, base, tmp)
    return access


def _tls_context(
    cluster: dict[str, Any], user: dict[str, Any], base: Path, tmp: Path
) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority", base, tmp)
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _pem(user, "client-certificate", base, tmp)
    key = _pem(user, "client-key", base, tmp)
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _kube_namespaces(params: Params) -> list[str]:
    """The namespaces A4 may act in (its allow-list; the guide's test-workloads by default)."""
    return list((params.a4_actions or A4Actions()).namespaces)


def check_kubernetes(params: Params, timeout_s: float = TIMEOUT_S) -> Check:
    """The kubeconfig's cluster answers ``/version`` and A4's namespaces exist."""
    path, source = find_kubeconfig(params.environment)
    if path is None and source == "embedded":
        return _ok("kubernetes", "environment.kubeconfig is 'embedded': the embedded target's "
                   "own cluster, started for each run")  # fmt: skip
    if path is None:
        return _no_kubeconfig(params)
    if not path.is_file():
        return _failed(
            "kubernetes",
            f"kubeconfig {path} ({source}) does not exist",
            "fix environment.kubeconfig",
        )
    secrets: list[str] = []
    deadline = Deadline(timeout_s)
    with tempfile.TemporaryDirectory(prefix="kubetest-kube-") as tmp:
        try:
            access = load_kube_access(path, Path(tmp), deadline.left())
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            yaml.YAMLError,
            ssl.SSLError,
            subprocess.SubprocessError,
        ) as exc:
            return _failed(
                "kubernetes",
                f"kubeconfig {path}: {_one_line(exc)}",
                "fix the kubeconfig (kubectl config view)",
            )
        secrets = access.secrets
        check = _probe_cluster(access, _kube_namespaces(params), deadline)
    return _scrub(check, secrets)


def _no_kubeconfig(params: Params) -> Check:
    """No cluster to check: a failure when A4 verifies through it, else optional (and the
    hint names what the cluster would be used for with these params)."""
    where = "no kubeconfig (environment.kubeconfig, $KUBECONFIG, ~/.kube/config)"
    a4 = params.a4_actions
    if a4 is not None and a4.verify == "kubernetes":
        return _failed("kubernetes", where,
                       "set environment.kubeconfig: A4 (verify: kubernetes) counts an action "
                       "only when its RemediationRequest, read through it, is Completed")
    if a4 is not None and a4.verify == "history":
        use = "A4 verifies actions through the service's action history"
    elif params.target.api == "kubernaut":
        use = "it lets A1 follow RemediationRequests to time to remediation"
    else:
        use = "nothing in this plan needs it"
    return _not_configured("kubernetes", where,
                           f"set environment.kubeconfig to check the cluster (optional: {use})")


def check_a4_actions(params: Params) -> list[Check]:
    """Whether A4 can judge BR-PA-011 as configured: enough actions must get past the
    destructive guard (``kubernaut``'s 27 leave 18 without ``allow_destructive``), or the
    verdict is INCONCLUSIVE after the whole run. No row without an A4 section."""
    from kubetest.actions import BR_MIN_ACTIONS, planned_actions

    section = params.a4_actions
    if section is None:
        return []
    run, skipped = planned_actions(params, section)
    held = [a for a, why in skipped.items() if why.startswith("destructive")]
    unknown = [a for a, why in skipped.items() if why == "unknown action"]
    need = section.min_actions
    lowered = (f" (a4_actions.min_actions {need}, lowered from BR-PA-011's {BR_MIN_ACTIONS})"
               if need < BR_MIN_ACTIONS else "")  # fmt: skip
    what = f"{len(run)} of {len(run) + len(skipped)} actions will run"
    if held:
        what += f" ({len(held)} destructive held back by the guard)"
    if unknown:
        what += f" ({len(unknown)} unknown: {', '.join(unknown[:3])})"
    if len(run) >= need:
        return [_ok("a4_actions", f"{what}; BR-PA-011 needs {need}{lowered}")]
    if held:
        fix = (f"opt in: a4_actions.allow_destructive: true with a4_actions.namespaces "
               f"listing only test namespaces; or judge the safe ones: a4_actions.min_actions: "
               f"{len(run)} (a lowered count, named as such in the verdict)")  # fmt: skip
    else:
        fix = (f"list at least {need} actions in a4_actions.actions (or actions: all), or "
               f"a4_actions.min_actions: {len(run)}")  # fmt: skip
    return [Check("a4_actions", WARNING, False,
                  f"{what}; BR-PA-011 needs {need}{lowered}: A4 will be INCONCLUSIVE", fix)]


def _probe_cluster(access: KubeAccess, namespaces: list[str], deadline: Deadline) -> Check:
    where = f"context {access.context} → {access.server}"
    try:
        with control.client(
            base_url=access.server,
            headers=access.headers,
            verify=access.ssl,
            timeout_s=deadline.left(),
            proxy="env",
        ) as client:
            resp = client.get("/version", timeout=deadline.left())
            if resp.status_code != 200:
                return _failed(
                    "kubernetes",
                    f"{where}: /version answered HTTP {resp.status_code}",
                    _kube_fix(resp.status_code),
                )
            version = str(resp.json().get("gitVersion", "?"))
            missing, other = [], []
            for ns in namespaces:
                r = client.get(f"/api/v1/namespaces/{quote(ns, safe='')}", timeout=deadline.left())
                if r.status_code == 404:
                    missing.append(ns)
                elif r.status_code != 200:
                    other.append((ns, r.status_code))
    except (httpx.HTTPError, ValueError, ssl.SSLError) as exc:
        return _failed(
            "kubernetes",
            f"{where}: {_one_line(exc)}",
            "start the cluster (kind create cluster) or fix the kubeconfig",
        )
    where += f" (Kubernetes {version})"
    if other:
        ns, code = other[0]
        return _failed("kubernetes", f"{where}: namespace {ns}: HTTP {code}", _kube_fix(code))
    if missing:
        return _failed(
            "kubernetes",
            f"{where}: namespace {', '.join(missing)} not found",
            "; ".join(f"kubectl create namespace {ns}" for ns in missing),
        )
    return _ok("kubernetes", f"{where}: namespace {', '.join(namespaces)} present")


def _kube_fix(status: int) -> str:
    if status == 401:
        return "the credentials were rejected: refresh the token or client certificate"
    if status == 403:
        return "the user may not read namespaces: grant get on namespaces (RBAC)"
    return "see the API server's logs"


# --------------------------------------------------------------------------- RBAC


def check_rbac(params: Params, timeout_s: float = TIMEOUT_S) -> list[Check]:
    """kubetest's own rights in the cluster (``kubernaut`` profile with
    ``environment.kubeconfig``), asked with SelfSubjectAccessReviews: one row per denied
    permission or missing namespace, else one ``ok`` row; ``[]`` when not applicable."""
    env = params.environment
    kubeconfig = env.kubeconfig if env else None
    if params.target.api != "kubernaut" or not kubeconfig:
        return []
    needs = rbac.required_permissions(params)
    rows = [_not_configured("rbac", why, "set remediation.namespace to check it before the run")
            for why in needs.unknown]  # fmt: skip
    path, source = find_kubeconfig(env)
    if path is None:  # embedded, and the target is not running (kubetest check alone)
        return [_not_configured("rbac", "environment.kubeconfig is 'embedded': the embedded "
                                "target's own cluster, checked when a run starts it", ""),
                *rows]  # fmt: skip
    if not path.is_file():  # the kubernetes row says so already
        return [_failed("rbac", f"kubeconfig {path} does not exist", "fix environment.kubeconfig"),
                *rows]  # fmt: skip
    return _review_all(path, needs, Deadline(timeout_s)) + rows


def _review_all(path: Path, needs: rbac.Needs, deadline: Deadline) -> list[Check]:
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    try:
        api_client = config.new_client_from_config(config_file=str(path))
    except Exception as exc:
        return [_failed("rbac", f"kubeconfig {path}: {_one_line(exc)}",
                        "fix the kubeconfig (kubectl config view)")]  # fmt: skip
    rows: list[Check] = []
    allowed: list[rbac.Permission] = []
    try:
        missing = set()
        for ns, (param, fix) in needs.namespaces.items():
            if rbac.namespace_exists(api_client, ns, deadline.left()) is False:
                missing.add(ns)
                rows.append(_failed("rbac", f"namespace {ns} ({param}) does not exist", fix))
        for perm in needs.permissions:
            if perm.namespace in missing:
                continue
            answer = rbac.review(api_client, perm, deadline.left())
            if answer.allowed:
                allowed.append(perm)
                continue
            reason = f" ({answer.reason})" if answer.reason else ""
            rows.append(_failed(
                "rbac",
                f"denied: {perm.verb} {perm.qualified} {perm.where}{reason}: {perm.why}",
                perm.fix(),
            ))  # fmt: skip
    except ApiException as exc:
        said = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        rows.append(_failed("rbac", f"SelfSubjectAccessReview failed: {said}",
                            _kube_fix(exc.status or 0)))  # fmt: skip
    except Exception as exc:
        rows.append(_failed("rbac", f"SelfSubjectAccessReview failed: {_one_line(exc)}",
                            "start the cluster or fix the kubeconfig"))  # fmt: skip
    finally:
        api_client.close()
    if not rows:
        rows.append(_ok("rbac", f"{len(allowed)} permissions allowed: " + _grouped(allowed)))
    return [_scrub(r, _client_secrets(api_client)) for r in rows]


def _client_secrets(api_client: Any) -> list[str]:
    """The credentials the kubernetes client loaded (a library message must not show them)."""
    cfg = api_client.configuration
    keys = [str(v).removeprefix("Bearer ") for v in (cfg.api_key or {}).values()]
    return [s for s in (*keys, cfg.password or "") if s]


def _grouped(perms: list[rbac.Permission]) -> str:
    """``deployments.apps get/list in namespace x; ...`` (verbs of one resource together)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in perms:
        groups.setdefault((p.qualified, p.where), []).append(p.verb)
    return "; ".join(f"{res} {'/'.join(verbs)} {where}" for (res, where), verbs in groups.items())


# --------------------------------------------------------------------------- all checks


def _rows(result: Check | list[Check]) -> list[Check]:
    return result if isinstance(result, list) else [result]


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> Check | list[Check]:
    """A check never raises: an unexpected error is that check's failure, not the table's."""
    try:
        return fn()
    except Exception as exc:
        return _failed(name, f"check crashed: {_one_line(exc)}", "report this as a kubetest bug")


def collect(
    params: Params, *, health_url: str | None = None, timeout_s: float = TIMEOUT_S,
    webhook_url: str | None = None,
) -> list[Check]:
    """Every check, run side by side (so the whole table takes one timeout), secrets scrubbed."""
    env = params.environment
    jobs: dict[str, Callable[[], Check | list[Check]]] = {
        "target": lambda: check_target(params, timeout_s, health_url, webhook_url),
        "llm": lambda: check_llm(env, timeout_s),
        "redis": lambda: check_redis(env, timeout_s),
        "postgresql": lambda: check_postgres(env, timeout_s),
        "kubernetes": lambda: check_kubernetes(params, timeout_s),
        "rbac": lambda: check_rbac(params, timeout_s),
        "a4_actions": lambda: check_a4_actions(params),
    }
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="check") as pool:
        futures = [pool.submit(_guarded, name, fn) for name, fn in jobs.items()]
        checks = [c for f in futures for c in _rows(f.result())]
    secrets = env_secrets(params)
    return [_scrub(c, secrets) for c in checks]


def checks_table(checks: list[Check]) -> pd.DataFrame:
    rows = [
        {
            "check": c.name,
            "status": c.status,
            "required": "yes" if c.required else "no",
            "detail": c.detail,
            "fix": c.fix,
        }
        for c in checks
    ]
    return pd.DataFrame(rows, columns=["check", "status", "required", "detail", "fix"])


def table_text(table: pd.DataFrame) -> str:
    """The table as left-aligned plain text (pandas right-aligns, which is hard to read here)."""
    rows = [list(table.columns), *table.astype(str).values.tolist()]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(table.columns))]
    lines = ["  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def debug_info(params: Params) -> dict[str, Any]:
    """The guide's "debug information collection", minus secrets: what to attach to a bug."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("httpx", "aiohttp", "pandas", "papermill", "redis", "psycopg"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    env = (params.environment or Environment()).model_dump()
    for key in ("redis_url", "llm_url"):
        if env.get(key):
            env[key] = redact_url(env[key])
    kubeconfig, source = find_kubeconfig(params.environment)
    return {
        "date": datetime.now(UTC).isoformat(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "kubetest": __version__,
        "packages": packages,
        "target": {"url": params.target.url, "api": params.target.api},
        "environment": env,
        "kubeconfig": f"{kubeconfig} ({source})" if kubeconfig else None,
    }


def run_checks(params_path: str | Path, health_url: str | None = None) -> tuple[pd.DataFrame, bool]:
    """All checks of a params file as a table, and whether a required one failed."""
    checks = collect(load_params(params_path), health_url=health_url)
    return checks_table(checks), any(c.blocking for c in checks)


def as_records(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
