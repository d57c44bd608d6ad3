"""Which environment variables hold secrets, judged by name: one rule for every caller.

Params never hold secret values (only the *names* of env vars); these helpers are the
safety net for variables kubetest does not know about — a suite's log, a debug bundle —
and the guard that keeps a secret from being typed into a params file.
"""

from __future__ import annotations

from collections.abc import Mapping

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
