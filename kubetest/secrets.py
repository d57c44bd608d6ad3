"""Which environment variables hold secrets, judged by name: one rule for every caller.

Params never hold secret values (only the *names* of env vars); these helpers are the
safety net for variables kubetest does not know about — a suite's log, a debug bundle —
and the guard that keeps a secret from being typed into a params file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import quote

REDACTED = "***"
#: Shorter secrets are not scrubbed from free text (they would mangle it); details are
#: built from credential-free parts anyway, so this only limits the safety net.
MIN_SECRET_LEN = 4
#: An env var whose name holds one of these is treated as secret.
SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "DSN", "CREDENTIAL", "AUTH")
#: Values of secret-named env vars this short or this common are not scrubbed from free
#: text (``SOME_KEY_ENABLED=true`` must not turn every "true" into ***).
MIN_SAFETY_NET_LEN = 6
NOT_SECRET_VALUES = frozenset({"enabled", "disabled", "default", "unset", "none", "null"})


def secret_named(name: str) -> bool:
    """An env var name that says it holds a credential."""
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def env_safety_net(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-named env vars worth scrubbing from any text kubetest writes."""
    return [
        value
        for name, value in environ.items()
        if secret_named(name)
        and len(value) >= MIN_SAFETY_NET_LEN
        and value.lower() not in NOT_SECRET_VALUES
    ]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret value in ``text`` (longest first, so parts do not leak)."""
    for secret in sorted(
        {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True
    ):
        text = text.replace(secret, REDACTED)
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, REDACTED)
    return text


def scrub_then_cut(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """``text`` without the known secrets (``secrets`` and the environment's secret-named
    vars), then cut to ``limit`` characters.

    Scrubbing first matters: a secret cut in half by the limit no longer matches, and its
    first characters would be kept in results and the report.
    """
    clean = redact(text, [*secrets, *env_safety_net(os.environ)])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
