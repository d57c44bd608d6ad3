"""Progress while a run goes: a tqdm bar in notebooks, one live line on a terminal, a plain
line every ``PLAIN_EVERY_S`` otherwise (a log file, CI, ``nohup``), or nothing when asked.

An engineer watching a ten-minute test wants to know early that it is going wrong:
elapsed time, requests sent, success rate so far and the *current* p95 (a rolling window
of recent answers, so a degradation shows at once instead of being averaged away).
The display never touches the measurement: it reads counters a few times a second.

Under ``kubetest run`` the notebooks run in a kernel whose output nobody sees until the
test ends; the session names a file in ``$KUBETEST_PROGRESS_FILE`` and echoes what is
appended to it, so a half-hour test still shows a line every ``SESSION_EVERY_S`` seconds
on the terminal (``session_note``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TextIO

import numpy as np

#: Seconds between display refreshes.
REFRESH_S = 0.5
#: The "current p95" looks at answers completed in the last WINDOW_S seconds.
WINDOW_S = 5.0
#: Where ``kubetest run`` listens for progress lines from its notebooks (a file path).
PROGRESS_FILE_ENV = "KUBETEST_PROGRESS_FILE"
#: A long test sends the session's terminal a line at most this often.
SESSION_EVERY_S = 15.0
#: Without a terminal (stderr piped to a file or CI log) a plain line this often.
PLAIN_EVERY_S = 15.0


def session_note(line: str) -> None:
    """One line for the terminal running ``kubetest run``; nothing when no session listens."""
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as fh:
        fh.write(" ".join(line.split()) + "\n")


class Throttle:
    """True at most once per ``every_s``, the first time ``every_s`` after it was made."""

    def __init__(
        self, every_s: float = SESSION_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s, self._clock = every_s, clock
        self._next = clock() + every_s

    def __call__(self) -> bool:
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True


@dataclass(slots=True)
class Snapshot:
    elapsed_s: float
    planned_s: float
    sent: int
    completed: int
    accepted: int
    not_sent: int  # late / dropped by the generator
    in_flight: int
    p95_recent_s: float | None

    @property
    def success_rate(self) -> float | None:
        return self.accepted / self.completed if self.completed else None


class RecentLatencies:
    """A ring buffer of recent (done time, latency) pairs for the rolling p95."""

    def __init__(self, size: int = 8192) -> None:
        self._done = np.full(size, -np.inf)
        self._lat = np.zeros(size)
        self._i = 0
        self._size = size

    def add(self, done_s: float, latency_s: float) -> None:
        j = self._i % self._size
        self._done[j] = done_s
        self._lat[j] = latency_s
        self._i += 1

    def extend(self, pairs: Iterable[tuple[float, float]]) -> None:
        for done_s, latency_s in pairs:
            self.add(done_s, latency_s)

    def p95(self, now_s: float, window_s: float = WINDOW_S) -> float | None:
        recent = self._lat[self._done >= now_s - window_s]
        return float(np.percentile(recent, 95)) if recent.size else None


class Display(Protocol):
    def update(self, snap: Snapshot) -> None: ...
    def close(self) -> None: ...


def _fmt(snap: Snapshot) -> str:
    rate = f"{snap.success_rate * 100:.1f}%" if snap.success_rate is not None else "-"
    p95 = f"{snap.p95_recent_s * 1000:.0f} ms" if snap.p95_recent_s is not None else "-"
    extra = f" not-sent {snap.not_sent}" if snap.not_sent else ""
    return (
        f"sent {snap.sent} in-flight {snap.in_flight} ok {rate} p95(last {WINDOW_S:.0f}s) {p95}"
        + extra
    )


class NullDisplay:
    def update(self, snap: Snapshot) -> None:
        pass

    def close(self) -> None:
        pass


class LineDisplay:
    """One status line rewritten in place on a terminal (``\\r`` + erase to end of line)."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._drawn = False

    def update(self, snap: Snapshot) -> None:
        planned = f"/{snap.planned_s:.0f}s" if snap.planned_s else "s"
        line = f"{self._label} {snap.elapsed_s:5.1f}{planned} {_fmt(snap)}"
        self._stream.write("\r" + line + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


class PlainDisplay:
    """One plain line every ``every_s`` (no ``\\r``, no escape codes): progress a log file or
    a CI console can show, where a line redrawn in place would be noise or nothing."""

    def __init__(
        self, label: str, stream: TextIO | None = None, every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._label, self._stream = label, stream or sys.stderr
        self._due = Throttle(PLAIN_EVERY_S if every_s is None else every_s, clock)

    def update(self, snap: Snapshot) -> None:
        if self._due():
            planned = f"/{snap.planned_s:.0f}" if snap.planned_s else ""
            self._stream.write(f"{self._label} {snap.elapsed_s:.0f}{planned} s: {_fmt(snap)}\n")
            self._stream.flush()

    def close(self) -> None:
        pass


class TqdmDisplay:
    """A tqdm notebook bar over the planned seconds (needs ipywidgets; see ``make_display``)."""

    def __init__(self, label: str, planned_s: float) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from tqdm.notebook import tqdm

            self._bar = tqdm(
                total=round(planned_s, 1) or None,
                desc=label,
                leave=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}{postfix}]",
            )

    def update(self, snap: Snapshot) -> None:
        self._bar.n = round(min(snap.elapsed_s, self._bar.total or snap.elapsed_s), 1)
        self._bar.set_postfix_str(_fmt(snap), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class NotebookLineDisplay:
    """One output line updated in place (IPython display id): without ipywidgets a tqdm bar
    would append a new stderr output every refresh, bloating an executed notebook."""

    def __init__(self, label: str) -> None:
        from IPython.display import display

        self._label = label
        self._handle = display({"text/plain": f"{label} starting"}, raw=True, display_id=True)

    def update(self, snap: Snapshot) -> None:
        planned = f"/{snap.planned_s:.0f}s" if snap.planned_s else "s"
        if self._handle is not None:
            line = f"{self._label} {snap.elapsed_s:.1f}{planned} {_fmt(snap)}"
            self._handle.update({"text/plain": line}, raw=True)

    def close(self) -> None:
        pass


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where a terminal line would not
    redraw."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class SessionDisplay:
    """The load's status line, every ``SESSION_EVERY_S``, to the listening session."""

    def __init__(self, label: str, inner: Display) -> None:
        self._label, self._inner, self._due = label, inner, Throttle()
        self._last: Snapshot | None = None  # not yet sent

    def update(self, snap: Snapshot) -> None:
        self._inner.update(snap)
        self._last = snap
        if self._due():
            self._send()

    def _send(self) -> None:
        if self._last is not None:
            snap, self._last = self._last, None
            planned = f"/{snap.planned_s:.0f}" if snap.planned_s else ""
            session_note(f"{self._label} {snap.elapsed_s:.0f}{planned} s: {_fmt(snap)}")

    def close(self) -> None:
        self._send()  # the last state seen, so even a short load leaves one line
        self._inner.close()


def make_display(progress: bool | None, label: str, planned_s: float) -> Display:
    """``progress``: True/False force it on/off; None = a live display in a notebook or when
    stderr is a terminal (and ``TERM`` is not ``dumb``), else a plain line every
    ``PLAIN_EVERY_S``. A listening session gets lines too."""
    display = _local_display(progress, label, planned_s)
    if progress is not False and os.environ.get(PROGRESS_FILE_ENV):
        return SessionDisplay(label, display)
    return display


def _local_display(progress: bool | None, label: str, planned_s: float) -> Display:
    notebook = in_notebook()
    tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    if progress is False:
        return NullDisplay()
    if progress is None and not (notebook or tty):
        return PlainDisplay(label)
    if notebook:
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook's bar needs it)
        except ImportError:
            return NotebookLineDisplay(label)
        return TqdmDisplay(label, planned_s)
    return LineDisplay(label)
