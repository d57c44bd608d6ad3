"""What ``kubetest run`` tells a notebook running beside the others (A3 with
``a3_availability.during_load``): which tests ran alongside it, and when their load ended.

One small JSON file in the session folder, written by the session and read by A3's kernel:
notebooks share nothing but files. It is rewritten when the session starts A3, so a
resumed session never reads an earlier attempt's; without it A3 runs on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetest.files import write_json
from kubetest.notebook_run import Beside, Stop

FILE = "alongside.json"


@dataclass(frozen=True)
class Alongside:
    """The tests run beside A3, when they started and (once done) when they ended."""

    tests: tuple[str, ...]
    started_epoch: float
    ended_epoch: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_epoch is not None


def begin(session_dir: Path, tests: list[str]) -> None:
    """The session starts A3 beside ``tests`` (an empty list: A3 runs alone)."""
    write_json(Path(session_dir) / FILE, {"tests": tests, "started_epoch": time.time()})


def end(session_dir: Path) -> None:
    """The tests beside A3 are done: from now A3 is under no load of theirs."""
    path = Path(session_dir) / FILE
    if path.is_file():
        write_json(path, {**json.loads(path.read_text()), "ended_epoch": time.time()})


def clear(session_dir: Path) -> None:
    """No A3 beside anything this attempt (a stale file would say otherwise)."""
    (Path(session_dir) / FILE).unlink(missing_ok=True)


def read(session_dir: Path) -> Alongside | None:
    """The session's word, or None when A3 was not started beside other tests."""
    try:
        raw = json.loads((Path(session_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    ended = raw.get("ended_epoch")
    return Alongside(
        tuple(raw.get("tests") or ()),
        float(raw["started_epoch"]),
        None if ended is None else float(ended),
    )


#: The Phase A tests whose load A3 runs beside (ENV and EXT send none).
LOAD_TESTS = ("A1", "A2", "A4")
KEY = "A3"


class BesideA3:
    """The session's side of ``during_load``: A3's notebook starts with the first Phase A
    load test still to run (``Beside``: its own kernel and thread), the others run as
    usual, and before Phase B (or the end) the session marks their load ended and waits
    for A3, so no probe ever lands in B1's or B2's capacity measurement."""

    def __init__(self, session_dir: Path, pending: list[str], start: Callable[[], Beside]):
        self.session_dir, self._start = Path(session_dir), start
        self.load = [k for k in pending if k in LOAD_TESTS]
        self.beside: Beside | None = None
        clear(session_dir)

    @classmethod
    def plan(cls, params: Any, pending: list[str], session_dir: Path,
             start: Callable[[], Beside]) -> BesideA3 | None:  # fmt: skip
        """A plan when A3 asks ``during_load`` and still has to run, else None."""
        a3 = getattr(params, "a3_availability", None)
        if a3 is None or not a3.during_load or KEY not in pending:
            return None
        return cls(session_dir, pending, start)

    def starts_at(self, key: str) -> bool:
        """A3 starts with the first load test (or at its own turn when none is left)."""
        return self.beside is None and (key in self.load or key == KEY)

    def start(self) -> None:
        begin(self.session_dir, self.load)
        self.beside = self._start().start()

    def due(self, key: str) -> bool:
        """A3 must be finished before ``key`` runs (Phase B, or the end: ``key`` "")."""
        return self.beside is not None and key not in (*LOAD_TESTS, KEY, "ENV", "EXT")

    def finish(self, stop: Stop) -> None:
        """Mark the load ended and wait for A3 (its top-up, if any, runs now)."""
        end(self.session_dir)
        beside, self.beside = self.beside, None
        if beside is not None:
            beside.join(stop)

    def stop(self) -> bool:
        """Ctrl-C, SIGTERM or a failure: A3's kernel stops with the session."""
        beside, self.beside = self.beside, None
        return beside is not None and beside.stop()
