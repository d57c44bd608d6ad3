"""Environment readiness (the guide's Step 1 and its debug info): is everything the service
under test depends on there, and if not, what to do about it.

Each check returns ok / failed / not configured with the reason and the fix, and never
raises: a readiness table that stops at the first surprise tells the engineer nothing about
the rest. Each check is bounded by a short timeout and they run side by side.

This module runs them all (``collect``, ``run_checks``) and lays them out as a table; the
checks live by concern: ``base`` (the ``Check`` row, time budget, secret scrubbing),
``target`` (health, TLS, the token probe and the preflights), ``services`` (LLM, Redis,
PostgreSQL) and ``kube`` (the cluster, kubetest's RBAC rights, A4's actions).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kubetest import __version__
from kubetest.checks.base import (
    FAILED,
    NOT_CONFIGURED,
    OK,
    TIMEOUT_S,
    WARNING,
    Check,
    Deadline,
    env_secrets,
    failed,
    one_line,
    scrub,
)
from kubetest.checks.kube import (
    KubeAccess,
    check_a4_actions,
    check_kubernetes,
    check_rbac,
    find_kubeconfig,
    load_kube_access,
)
from kubetest.checks.services import check_llm, check_postgres, check_redis
from kubetest.checks.target import (
    check_auth,
    check_target,
    is_auth_failure,
    is_tls_failure,
    preflight_auth,
    preflight_tls,
    webhook_url_for,
)
from kubetest.errors import AuthError
from kubetest.params import Environment, Params, load_params
from kubetest.secrets import REDACTED, redact, redact_url

__all__ = [
    "FAILED",
    "NOT_CONFIGURED",
    "OK",
    "REDACTED",
    "TIMEOUT_S",
    "WARNING",
    "AuthError",
    "Check",
    "Deadline",
    "KubeAccess",
    "as_records",
    "check_a4_actions",
    "check_auth",
    "check_kubernetes",
    "check_llm",
    "check_postgres",
    "check_rbac",
    "check_redis",
    "check_target",
    "checks_table",
    "collect",
    "debug_info",
    "env_secrets",
    "find_kubeconfig",
    "is_auth_failure",
    "is_tls_failure",
    "load_kube_access",
    "preflight_auth",
    "preflight_tls",
    "redact",
    "redact_url",
    "run_checks",
    "table_text",
    "webhook_url_for",
]


def _rows(result: Check | list[Check]) -> list[Check]:
    return result if isinstance(result, list) else [result]


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> Check | list[Check]:
    """A check never raises: an unexpected error is that check's failure, not the table's."""
    try:
        return fn()
    except Exception as exc:
        return failed(name, f"check crashed: {one_line(exc)}", "report this as a kubetest bug")


def collect(
    params: Params,
    *,
    health_url: str | None = None,
    timeout_s: float = TIMEOUT_S,
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
    return [scrub(c, secrets) for c in checks]


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
