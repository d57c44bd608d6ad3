"""The papermill adapter: run one notebook in its own kernel, and stop it on request.

``execute_notebook`` runs papermill with the kernel on Unix sockets and its log in the
session folder; ``execute_stoppable`` runs it in a thread watched from the main one, so a
stop request (``Stop``, set by the session's SIGINT/SIGTERM handler) interrupts, then kills,
the kernel's process group. The session and the report both run notebooks through here,
which is why it is neither of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stop:
    """What SIGINT/SIGTERM asked of the run: the loop reads ``requested``; a notebook watcher
    (``execute_stoppable``) reads ``event`` and ``signals`` to stop its kernel."""

    event: threading.Event = field(default_factory=threading.Event)
    signals: int = 0
    watching: bool = False  # a notebook runs in its thread: its watcher owns the stop

    @property
    def requested(self) -> bool:
        return self.event.is_set()


#: Loggers of papermill, nbclient (traitlets) and asyncio that report a stopped kernel's
#: death at length; silenced for the thread of a notebook the run stopped on purpose.
NOISY_LOGGERS = ("papermill", "traitlets", "nbclient", "jupyter_client", "asyncio")
#: After a stop request: the kernel gets SIGINT (its load stops cleanly and keeps its
#: records), a second SIGINT (in-flight requests cancelled) after FORCE_AFTER_S, and
#: SIGKILL after KILL_AFTER_S: the run goes on ~1.3 s after the signal at most.
FORCE_AFTER_S = 0.5
KILL_AFTER_S = 1.0
#: How long the run waits for papermill to notice a killed kernel before it goes on.
KILLED_WAIT_S = 0.3


class _SilencedThreads(logging.Filter):
    """Drops records logged from the threads of notebooks the run stopped on purpose."""

    idents: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.idents


def _silence(thread: threading.Thread) -> None:
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _SilencedThreads) for f in logger.filters):
            logger.addFilter(_SilencedThreads())
    if thread.ident is not None:
        _SilencedThreads.idents.add(thread.ident)


@dataclass
class KernelSlot:
    """The kernel manager of the notebook being run, so a stop can signal its process
    group (the kernel and anything it started) from the main thread."""

    km: Any = None

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the kernel's process group; False when it is already gone."""
        provisioner = getattr(self.km, "provisioner", None)
        pgid = getattr(provisioner, "pgid", None)
        if not pgid or pgid == os.getpgrp():  # never our own group
            return False
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def forget(self) -> None:
        """Remove the files papermill leaves of a killed kernel: its connection file and IPC
        socket files. (Its client's ZeroMQ sockets stay: closing them under papermill's
        threads prints tracebacks; ``kubetest run`` exits without waiting on them.)"""
        for name in ("cleanup_connection_file", "cleanup_ipc_files"):
            with contextlib.suppress(Exception):
                getattr(self.km, name)()


def execute_notebook(
    src: Path,
    dst: Path,
    parameters: dict[str, Any],
    cwd: Path,
    slot: KernelSlot | None = None,
    tag: str = "",
) -> None:
    """papermill with the kernel on Unix sockets (IPC), not plain-text loopback TCP, and the
    kernel process's own log in ``cwd/kernel.log`` (the notebook's output is in the notebook).
    ``slot`` receives the kernel manager, for a stop from another thread; ``tag`` names the
    IPC sockets apart, so two kernels started at once never pick the same ones."""
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(cwd / f".kernel{tag}"))
            super().__init__(**kwargs)
            if slot is not None:
                slot.km = self

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            with (cwd / "kernel.log").open("ab") as log:
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
                await super().start_kernel(**kw)

    papermill.execute_notebook(
        str(src), str(dst), parameters=parameters, kernel_name="python3",
        progress_bar=False, cwd=str(cwd), log_output=False,
        kernel_manager_class=IPCKernelManager,
    )  # fmt: skip


def execute_stoppable(
    src: Path, dst: Path, parameters: dict[str, Any], cwd: Path, stop: Stop
) -> None:
    """``execute_notebook`` in a thread, watched from this one: a stop request interrupts,
    then kills, the kernel, and raises KeyboardInterrupt here within ~2 s, with no
    traceback from papermill, nbclient or the kernel. Without ``stop`` support (not the
    main thread), it simply runs."""
    if threading.current_thread() is not threading.main_thread():
        execute_notebook(src, dst, parameters, cwd)
        return
    slot, box = KernelSlot(), {}

    def work() -> None:
        try:
            execute_notebook(src, dst, parameters, cwd, slot)
        except BaseException as exc:  # handed to the watching thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="kubetest-notebook", daemon=True)
    cwd_before = os.getcwd()  # papermill's chdir may be left behind with its thread
    stop.watching = True
    try:
        thread.start()
        while thread.is_alive() and not stop.requested:
            thread.join(0.1)
        if stop.requested:
            _silence(thread)
            _stop_kernel(slot, thread, stop)
            raise KeyboardInterrupt
    finally:
        stop.watching = False
        os.chdir(cwd_before)
    if "error" in box:
        raise box["error"]


def _stop_kernel(slot: KernelSlot, thread: threading.Thread, stop: Stop) -> None:
    """SIGINT, a second SIGINT, then SIGKILL to the kernel's group (sooner when the user
    signals again), waiting for the notebook between each; the kernel never outlives it."""
    t0 = time.monotonic()
    steps = ((signal.SIGINT, FORCE_AFTER_S), (signal.SIGINT, KILL_AFTER_S))
    for sig, until in steps:
        slot.signal(sig)
        seen = stop.signals
        while thread.is_alive() and time.monotonic() - t0 < until and stop.signals == seen:
            thread.join(0.05)
        if not thread.is_alive():
            break
    if thread.is_alive():
        slot.signal(signal.SIGKILL)
        thread.join(KILLED_WAIT_S)
    slot.signal(signal.SIGKILL)  # a kernel that ended its cell but not itself
    slot.forget()  # what papermill, still noticing the death or done with it, left open


class Beside:
    """One notebook run in its own kernel and thread beside the session's main loop (A3
    with ``during_load``): ``join`` waits for it and re-raises its error; ``stop`` (from
    the main thread, on Ctrl-C or SIGTERM) interrupts, then kills, its kernel."""

    def __init__(self, src: Path, dst: Path, parameters: dict[str, Any], cwd: Path) -> None:
        self.slot, self._box, self._cwd = KernelSlot(), {}, os.getcwd()
        args = (src, dst, parameters, cwd, self.slot, "-beside")
        self._thread = threading.Thread(
            target=self._work, args=args, name="kubetest-beside", daemon=True
        )

    def _work(self, *args: Any) -> None:
        try:
            execute_notebook(*args)
        except BaseException as exc:  # handed to the joining thread
            self._box["error"] = exc

    def start(self) -> Beside:
        self._thread.start()
        return self

    def join(self, stop: Stop) -> None:
        """Wait for the notebook; a stop request stops it and raises KeyboardInterrupt."""
        while self._thread.is_alive() and not stop.requested:
            self._thread.join(0.1)
        os.chdir(self._cwd)  # papermill's chdir, undone in whichever order its threads ended
        if stop.requested:
            self.stop()
            raise KeyboardInterrupt
        if "error" in self._box:
            raise self._box["error"]

    def stop(self) -> bool:
        """Stop the kernel if it still runs; True when it had to be stopped."""
        if not self._thread.is_alive():
            return False
        _silence(self._thread)
        _stop_kernel(self.slot, self._thread, Stop())
        return True
