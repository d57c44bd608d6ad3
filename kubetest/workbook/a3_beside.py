"""A3 beside the rest of Phase A (``a3_availability.during_load``): availability under
the load the plan sends anyway.

``kubetest run`` starts A3's notebook with A1 (``kubetest.alongside``) and says when A1,
A2 and A4 are done. The probes run from the start until that load ends and the window
(``duration_min``) is full: when the load ends first, the background load tops the window
up; when it lasts longer, the window stretches to cover it (the budget grows with it).
Either way the result says which load A3 was under and for how long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from kubetest import alongside

T = TypeVar("T")
#: How often A3 looks for the session's "load ended".
POLL_S = 0.2
#: The probes stop at the latest this many windows in, should the load never end.
CAP_WINDOWS = 4.0
#: A top-up shorter than this is not worth a load: the probes just run to the window's end.
MIN_TOP_UP_S = 2.0


@dataclass(frozen=True)
class Span:
    """Which load the window was under: the tests beside A3 for ``load_s``, then the
    background load for ``top_up_s`` (0: none needed)."""

    tests: tuple[str, ...]
    load_s: float
    top_up_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tests": list(self.tests)}

    def words(self, rate_per_min: float | None) -> str:
        """The "judged on" clause: under which load, for how long."""
        out = f"beside {', '.join(self.tests) or 'no test'} (their load for {self.load_s:.0f} s)"
        if self.top_up_s and rate_per_min:
            out += f", then a background load of {rate_per_min:g}/min for {self.top_up_s:.0f} s"
        return out


def _load_ended(session_dir: Path) -> bool:
    side = alongside.read(session_dir)
    return side is None or side.ended or not side.tests


def probe_beside(
    session_dir: Path,
    probing: Callable[..., pd.DataFrame],
    window_s: float,
    top_up: Callable[[float], T] | None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[pd.DataFrame, T | None, Span]:
    """Probe (in a thread) until the load beside ends and ``window_s`` is full, topping
    up with ``top_up(seconds)`` (in this thread: the engine stops cleanly on Ctrl-C only
    from the main thread) when the load ended first."""
    side = alongside.read(session_dir)
    tests = side.tests if side is not None else ()
    stop, box = threading.Event(), {}

    def probe_thread() -> None:
        try:
            box["probes"] = probing(window_s * CAP_WINDOWS, stop=stop)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t0 = clock()
    thread = threading.Thread(target=probe_thread, name="kubetest-a3-probes", daemon=True)
    thread.start()
    outcome: T | None = None
    try:
        while thread.is_alive() and not _load_ended(session_dir):
            thread.join(POLL_S)
        load_s = clock() - t0
        left = window_s - load_s
        if thread.is_alive() and left >= MIN_TOP_UP_S and top_up is not None:
            outcome = top_up(left)
        while thread.is_alive() and clock() - t0 < window_s:
            thread.join(min(POLL_S, max(0.0, window_s - (clock() - t0))))
    finally:
        stop.set()
        thread.join(10)
    if "error" in box:
        raise box["error"]
    top_up_s = max(0.0, clock() - t0 - load_s) if outcome is not None else 0.0
    return box["probes"], outcome, Span(tests, round(load_s, 1), round(top_up_s, 1))


def span_window_s(probes: pd.DataFrame, interval_s: float, window_s: float) -> float:
    """The window actually probed: one interval past the last probe sent (``window_s``
    when no probe was sent)."""
    if probes.empty:
        return window_s
    return max(float(probes["t_s"].max()) + interval_s, 0.0)
