"""HTTPS to the service under test: ``target.tls`` turned into what each client takes.

Every client that talks to the service (the aiohttp load engine, the httpx control-plane
calls: checks, probes, metrics, action history, integrity) asks ``verify(tls)`` for its
``ssl=`` / ``verify=`` value, so one setting covers them all:

* nothing set: ``True``, each library's default verification;
* ``ca_file``: a context trusting that CA (PEM) besides the system's, so a private CA
  works without losing public ones (a Prometheus behind a public certificate);
* ``insecure``: a context that verifies nothing, announced once per process on stderr.

The load plan travels to Dask workers, so it carries ``TlsSettings`` (picklable, with
the CA's PEM text rather than its path: a remote worker needs no copy of the file) and
the context is built where the session is made. A failed handshake becomes one line
naming the fix (``tls_problem``), never a traceback.
"""

from __future__ import annotations

import re
import ssl
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from kubetest.errors import TlsError


class Tls(Protocol):
    """What ``settings`` reads of params' ``target.tls`` (``kubetest.params.Tls``), named
    by shape so that params, which validates a CA file here, is not imported back."""

    @property
    def ca_file(self) -> str | Path | None: ...

    @property
    def insecure(self) -> bool: ...


PEM_MARK = "-----BEGIN CERTIFICATE-----"
#: The fix for an untrusted certificate (the common case: a private or self-signed CA).
UNTRUSTED_FIX = (
    "set target.tls.ca_file to the CA that signed it (PEM), "
    "or target.tls.insecure: true for a test setup"
)
HOSTNAME_FIX = (
    "put a host name the certificate names in target.url, "
    "or target.tls.insecure: true for a test setup"
)
EXPIRED_FIX = "renew the service's certificate, or target.tls.insecure: true for a test setup"
PLAIN_HTTP_FIX = "the port speaks plain HTTP: use http:// in the URL"
#: Every fix ``tls_problem`` gives (a failed check with one of these is a TLS failure).
FIXES = frozenset({UNTRUSTED_FIX, HOSTNAME_FIX, EXPIRED_FIX, PLAIN_HTTP_FIX})
INSECURE_WARNING = (
    "kubetest: warning: target.tls.insecure: true: the service's certificate is NOT "
    "verified (use it for a test setup only)"
)


@dataclass(frozen=True)
class TlsSettings:
    """``target.tls`` as a load plan carries it: picklable and hashable (contexts are
    cached per settings). ``ca_file`` is kept for messages only."""

    ca_pem: str | None = None
    ca_file: str | None = None
    insecure: bool = False

    @property
    def configured(self) -> bool:
        return self.insecure or bool(self.ca_pem)


def check_ca_file(path: Path) -> str:
    """The PEM text of a CA file, or ``ValueError`` with what is wrong and the fix."""
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist: give the CA certificate (PEM) that signed the "
            "service's certificate"
        )
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"{path} is not readable ({exc.strerror}): fix its permissions") from None
    if PEM_MARK not in text:
        raise ValueError(
            f"{path} is not a PEM certificate (no {PEM_MARK} line): convert it, e.g. "
            "openssl x509 -inform der -in ca.der -out ca.pem"
        )
    try:
        ssl.create_default_context().load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{path} holds no usable certificate ({exc}): export it again") from None
    return text


def settings(tls: Tls | TlsSettings | None) -> TlsSettings:
    """The settings of ``target.tls`` (its ``ca_file`` read now)."""
    if tls is None or isinstance(tls, TlsSettings):
        return tls or TlsSettings()
    if tls.ca_file is None:
        return TlsSettings(insecure=tls.insecure)
    path = Path(tls.ca_file)
    try:
        pem = check_ca_file(path)
    except ValueError as exc:  # validated with the params; it changed since
        raise TlsError(f"target.tls.ca_file: {exc}") from None
    return TlsSettings(ca_pem=pem, ca_file=str(path), insecure=tls.insecure)


_warned = threading.Event()


def _warn_insecure() -> None:
    if not _warned.is_set():
        _warned.set()
        print(INSECURE_WARNING, file=sys.stderr, flush=True)


@lru_cache(maxsize=8)
def _context(s: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if s.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif s.ca_pem:
        context.load_verify_locations(cadata=s.ca_pem)
    return context


def verify(tls: Tls | TlsSettings | None) -> ssl.SSLContext | bool:
    """What to pass as httpx's ``verify=`` or aiohttp's ``ssl=`` for ``target.tls``:
    ``True`` (the library's default) unless a CA file or ``insecure`` is set."""
    s = settings(tls)
    if not s.configured:
        return True
    if s.insecure:
        _warn_insecure()
    return _context(s)


# -- one line for a failed handshake -------------------------------------------------------

_VERIFY_FAILED = re.compile(
    r"certificate verify failed:\s*([^\n]{1,200}?)\.?\s*(?:\(_ssl\.c:\d+\)|['\"]\)|$)", re.M
)


@dataclass(frozen=True)
class TlsProblem:
    """What went wrong in the handshake and what to change, for one line."""

    what: str
    fix: str

    def line(self, url: str) -> str:
        return f"{url}: {self.what}: {self.fix}"


def _texts(error: BaseException | str) -> list[str]:
    """The messages of ``error`` and the exceptions it wraps (httpx/httpcore, aiohttp)."""
    if isinstance(error, str):
        return [error]
    out: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        out.append(f"{type(exc).__name__}: {exc}")
        stack += [exc.__cause__, exc.__context__, getattr(exc, "certificate_error", None)]
    return out


def tls_problem(error: BaseException | str) -> TlsProblem | None:
    """The TLS failure in ``error`` (an exception or an error sample's text) with its fix;
    ``None`` when it is not one."""
    texts = _texts(error)
    for text in texts:
        match = _VERIFY_FAILED.search(text)
        if match:
            reason = match.group(1).strip()
            low = reason.lower()
            if "mismatch" in low:
                fix = HOSTNAME_FIX
            elif "expired" in low or "not yet valid" in low:
                fix = EXPIRED_FIX
            else:
                fix = UNTRUSTED_FIX
            return TlsProblem(f"certificate verify failed ({reason})", fix)
    if any("WRONG_VERSION_NUMBER" in t or "wrong version number" in t for t in texts):
        return TlsProblem("TLS handshake failed (wrong version number)", PLAIN_HTTP_FIX)
    return None
