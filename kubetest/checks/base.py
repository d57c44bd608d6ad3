"""What every check shares: the ``Check`` row and its statuses, the time budget of a
check that makes several calls, and the scrubbing that keeps secrets out of every text.

Secrets (the Redis password, the PostgreSQL DSN, bearer tokens) are read from the env vars
the params name and never appear in a detail, a fix, a table or a result file: details are
built from parsed, credential-free parts, and every text is scrubbed of the known secret
values as a safety net for library error messages.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from kubetest.params import Environment, Params
from kubetest.secrets import redact

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


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAILED, True, detail, fix)


def not_configured(name: str, detail: str, fix: str) -> Check:
    return Check(name, NOT_CONFIGURED, False, detail, fix)


# --------------------------------------------------------------------------- secrets


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


def scrub(check: Check, secrets: Iterable[str]) -> Check:
    secrets = list(secrets)
    return replace(check, detail=redact(check.detail, secrets), fix=redact(check.fix, secrets))


class Deadline:
    """One time budget for a check that makes several calls (it must still end in time)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.05, self.end - time.monotonic())


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
