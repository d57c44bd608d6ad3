"""Every exception kubetest defines, in one tree under ``KubetestError``.

Errors a user can act on: the CLI prints them as one line, without a traceback.
``InternalSignal`` marks the ones raised and caught inside kubetest. The only exceptions
defined elsewhere are ``control.ResponseTooLarge`` and ``control.DeadlineExceeded``, which
must stay httpx exceptions (see there).
"""

from __future__ import annotations

from typing import Any


class KubetestError(Exception):
    """A failure with a one-line message that says what is wrong and how to fix it."""

    exit_code = 1


class ParamsError(KubetestError):
    """A params file (or CLI argument) was refused before anything ran."""

    exit_code = 2


class InternalSignal(KubetestError):
    """Raised and caught inside kubetest to signal a condition (never shown to a user as
    such: the catcher turns it into a measurement or a reason)."""


# -- engine, session, report -------------------------------------------------------------


class RecordsWriteError(KubetestError):
    """The records cannot be written (disk full, read-only, gone): stop, say so in a line.
    Load that cannot be recorded measures nothing, so the run does not go on without it."""


class ResultError(KubetestError, ValueError):
    """A result (``results/<TEST>.json``) or summary that does not match its contract in
    ``kubetest.results``: the message names each field that does not."""


class BodyTooLarge(InternalSignal):
    """The answer's body passed the engine's cap (``engine.client.classify_exception``
    records it as the error class ``oversized``)."""


class HttpConnectError(InternalSignal):
    """The fast client (``engine.fastclient``) could not connect; the OS or TLS error is
    its ``__cause__`` (``classify_exception``: refused, dns, tls, connect)."""


class ServerDisconnected(InternalSignal):
    """The connection closed before a complete answer (the error class ``reset``)."""


class BadResponse(InternalSignal):
    """An answer that is not parseable HTTP/1.1 (the error class ``bad_response``)."""


class SessionExistsError(KubetestError):
    """A run without --resume or --overwrite into a folder that holds a session."""

    exit_code = 2


class PoolError(KubetestError):
    """The workload pool could not be made, found or removed (the message says why)."""


class TlsError(KubetestError):
    """The service's certificate was refused: one line naming the fix, before any load."""


class HistoryUnavailable(KubetestError):
    """There is no action history to reconcile with (the message says why; the integrity
    check reports it as ``unavailable``)."""


class SuiteFormatError(KubetestError, ValueError):
    """A suite's output is not in the format it was said to be in (still a ``ValueError``,
    as it was before it joined this tree)."""


# -- checks, target, params


class AuthError(KubetestError):
    """The service refused the bearer token (401/403): one line, before any load."""


class KubeconfigError(KubetestError):
    """A kubeconfig kubetest cannot use (no current context, an undefined cluster or user,
    a failing exec credential plugin): the ``kubernetes`` check row shows the message."""


class TargetConfigError(ParamsError, ValueError):
    """The embedded reference target's settings are inconsistent or name an unset token.

    A ``ValueError`` too: a pydantic validator that builds a ``TargetConfig`` (and any
    caller written against the plain ``ValueError`` it raised before) still sees one."""


class TargetStartError(KubetestError):
    """The embedded reference target did not come up (the message says why)."""


class StandInAnswer(KubetestError):
    """Internal to the reference target (``kubetest.target``): a refusal its stand-ins
    raise inside a request handler and turn into that request's HTTP answer. It never
    reaches the CLI; it derives from ``KubetestError`` only to keep the tree one tree."""


class UnmarshalError(StandInAnswer):
    """A body Go's ``encoding/json`` would not unmarshal into the Kubernaut gateway's
    structs (``target/profiles/alertmanager_body.py``): the gateway answers it 400."""


class PayloadError(StandInAnswer):
    """A refused webhook body: ``status`` is the HTTP code, the message names the field."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class KubeError(StandInAnswer):
    """A Kubernetes API refusal of the fake cluster: HTTP ``code``, ``reason`` and a
    ``Status`` body."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason,
        }  # fmt: skip
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


class NotComparableError(KubetestError):
    """Two sessions that cannot be compared: the message names each param that differs."""

    exit_code = 2
