"""Errors a user can act on: the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class KubetestError(Exception):
    """A failure with a one-line message that says what is wrong and how to fix it."""

    exit_code = 1


class ParamsError(KubetestError):
    """A params file (or CLI argument) was refused before anything ran."""

    exit_code = 2
