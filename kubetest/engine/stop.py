"""How a load run is stopped: stop signals a shard polls, and SIGINT/SIGTERM routed to them.

A shard only asks ``stop.is_set()`` (and ``is_forced()``); ``StopToken`` serves one process,
``StopFile`` several on one machine, and ``engine.cluster`` relays Dask Events to a token.
The first SIGINT/SIGTERM asks for a graceful stop, the second cancels in-flight requests.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


class StopToken:
    """In-process stop: ``set()`` asks for a graceful stop, ``force()`` for an immediate one."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._force = threading.Event()

    def set(self) -> None:
        self._stop.set()

    def force(self) -> None:
        self._force.set()
        self._stop.set()

    def is_set(self) -> bool:
        return self._stop.is_set()

    def is_forced(self) -> bool:
        return self._force.is_set()


@dataclass(frozen=True)
class StopFile:
    """Cross-process stop (picklable): the run stops when ``path`` exists; forced when
    ``path`` + ``.force`` exists. Only valid on the machine that owns the path."""

    path: str

    def set(self) -> None:
        Path(self.path).touch()

    def force(self) -> None:
        Path(self.path + ".force").touch()
        self.set()

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def is_forced(self) -> bool:
        return os.path.exists(self.path + ".force")


class Stopper:
    """First signal: graceful stop. Second: cancel in-flight requests now."""

    def __init__(self, token: StopToken) -> None:
        self.token = token
        self.count = 0

    def __call__(self, *_: object) -> None:
        self.count += 1
        if self.count == 1:
            self.token.set()
            sys.stderr.write(
                "\nkubetest: stopping - in-flight requests get a short grace "
                "(interrupt again to cancel them now)\n"
            )
        else:
            self.token.force()


@contextmanager
def routed_signals(handler: Callable[..., None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``handler`` for the run (main thread only); restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
