"""Terminal colour codes: kept out of what other programs print for kubetest, and stripped
from whatever of theirs kubetest shows (report.html renders them as raw ``[31m`` noise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: ESC sequences: CSI (colours, cursor), OSC (titles, links), and two-byte escapes.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
#: The same CSI codes after a JUnit writer escaped ESC, which XML 1.0 forbids (pytest
#: writes ``#x1B[31m``).
ESCAPED_CSI = re.compile(r"#x1[Bb]\[[0-?]*[ -/]*[@-~]")

#: Variables that make tools colour their output even when it goes to a file (the
#: notebook kernel sets ``FORCE_COLOR=1``): not passed on to a child process.
FORCE_COLOUR_VARS = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")


def strip_ansi(text: str) -> str:
    """Tracebacks and coloured logs are unreadable (and un-scrubbable) with escape codes."""
    return ESCAPED_CSI.sub("", ANSI.sub("", text))


def without_colour(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a child whose output is read, not watched: no forced colour, and
    ``NO_COLOR=1`` (https://no-color.org), which most colouring tools honour."""
    env = {k: v for k, v in environ.items() if k not in FORCE_COLOUR_VARS}
    env["NO_COLOR"] = "1"
    return env
