"""Secrets: which names and keys hold them, and the one place that scrubs them from text.

Params never hold secret values (only the *names* of env vars); these helpers are the
safety net for variables kubetest does not know about — a suite's log, a debug bundle —
the guard that keeps a secret from being typed into a params file, the report's view of
the params (``redact_params``), and the debug bundle's ``Scrubber``. Every rule lives
here, so a caller never keeps its own list of secret names or its own minimum length.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from kubetest.ansi import strip_ansi

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


# -- params as the report shows them ----------------------------------------------------------

#: A params key whose name holds one of these has its value shown as ``***`` in the report
#: (lower case: params keys are). Not ``SECRET_NAME_PARTS``: that list judges env var names.
SECRET_KEY_HINTS = ("password", "token", "secret", "dsn", "kubeconfig")


def redact_params(obj: Any, key: str = "") -> Any:
    """Params as shown in the report: values of secret-looking keys become ``***``.

    Keys that only *name* an env var (``..._env``) are kept: they are not secrets.
    """
    if isinstance(obj, dict):
        return {k: redact_params(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_params(v, key) for v in obj]
    if (
        obj is not None
        and any(h in key.lower() for h in SECRET_KEY_HINTS)
        and not key.endswith("_env")
    ):
        return REDACTED
    return obj


# -- credentials inside URLs and kubeconfigs -----------------------------------------------

#: ``scheme://user:password@`` anywhere in a text (its password is replaced).
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"']*:)[^\s@/\"']+(?=@)")
#: Keys of a kubeconfig (users[].user, auth-provider config) that hold credentials.
KUBECONFIG_SECRET_KEYS = frozenset(
    {"token", "password", "client-key-data", "id-token", "refresh-token", "access-token",
     "client-secret", "secret"}
)  # fmt: skip


def redact_url(url: str) -> str:
    """A URL without its password (``redis://:pw@h:6379/0`` → ``redis://:***@h:6379/0``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # host[:port] as written (IPv6 brackets kept)
    netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_url_or_keep(value: str) -> str:
    """``redact_url`` where ``value`` parses as a URL; else ``value`` (``URL_PASSWORD`` still
    applies to it in ``Scrubber.text``)."""
    try:
        return redact_url(value)
    except ValueError:  # not a URL after all (or a malformed one): the regex still applies
        return value


def url_passwords(value: Any) -> list[str]:
    """Passwords of every URL in a JSON-like value (params: ``target.url`` may carry one)."""
    if isinstance(value, str):
        if "://" in value:
            with contextlib.suppress(ValueError):
                return [urlsplit(value).password or ""]
        return []
    if isinstance(value, dict):
        return [p for v in value.values() for p in url_passwords(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in url_passwords(v)]
    return []


def kubeconfig_secrets(doc: Any) -> list[str]:
    """Tokens, passwords and keys of a parsed kubeconfig (``KUBECONFIG_SECRET_KEYS``)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in KUBECONFIG_SECRET_KEYS and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    return found


# -- the scrubber ------------------------------------------------------------------------


class Scrubber:
    """Scrubs every text of a set of known secret values, URL passwords and terminal
    escapes (``kubetest debug-info``: every text that goes into the bundle passes here)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, text: str) -> str:
        return URL_PASSWORD.sub(rf"\g<head>{REDACTED}", redact(strip_ansi(text), self.secrets))

    def data(self, value: Any) -> Any:
        """Scrub every string of a JSON-like value *before* it is serialized (escaping in
        JSON or YAML would otherwise hide a secret with a quote or backslash from ``text``)."""
        if isinstance(value, str):
            return self.text(redact_url_or_keep(value) if "://" in value else value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def json(self, value: Any) -> str:
        return self.text(json.dumps(self.data(value), indent=2, ensure_ascii=False, default=str))
