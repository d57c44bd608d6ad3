"""Every exception kubetest defines, in one tree under ``KubetestError``.

Errors a user can act on: the CLI prints them as one line, without a traceback.
``InternalSignal`` marks the ones raised and caught inside kubetest. The only exceptions
defined elsewhere are ``control.ResponseTooLarge`` and ``control.DeadlineExceeded``, which
must stay httpx exceptions (see there).
"""

from __future__ import annotations


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


class BodyTooLarge(InternalSignal):
    """The answer's body passed the engine's cap (``engine.client.classify_exception``
    records it as the error class ``oversized``)."""


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
