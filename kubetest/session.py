"""A run: papermill over the selected notebooks, the embedded target's lifetime, summary.

Data flows one way: params → each test notebook (load → records → results/<test>.json)
→ summary.json → report. Notebooks share nothing but files in the session folder, so a
failed or interrupted notebook never takes the others' results with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubetest.alongside import KEY as BESIDE_KEY
from kubetest.alongside import BesideA3
from kubetest.errors import KubetestError, SessionExistsError
from kubetest.files import REPO_ROOT, TARGET_FILE, new_session_name, target_endpoints, write_json
from kubetest.notebook_run import Beside, Stop, execute_stoppable
from kubetest.params import TESTS, Params, load_params
from kubetest.secrets import scrub_then_cut
from kubetest.summary import write_summary
from kubetest.workloads import export_kubeconfig

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

#: Test key -> notebook file (in run order). Phase A first, then Phase B.
NOTEBOOKS: dict[str, str] = {
    "ENV": "environment.ipynb",
    "EXT": "external_suites.ipynb",
    "A1": "a1_response_time.ipynb",
    "A2": "a2_concurrent.ipynb",
    "A3": "a3_availability.ipynb",
    "A4": "a4_actions.ipynb",
    "B1": "b1_capacity.ipynb",
    "B2": "b2_concurrency.ipynb",
}
PHASE_A = ("ENV", "EXT", "A1", "A2", "A3", "A4")
#: The file that marks a folder as a kubetest session (written when a run starts).
STATE_FILE = "state.json"
#: How often the session looks for progress lines from the running notebook.
TAIL_S = 0.5


@dataclass
class SessionResult:
    session_dir: Path
    summary: dict[str, Any]
    report: Path | None
    failures: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


class NotebookStates:
    """``state.json``: each test's state (pending / running / done / failed / interrupted /
    not run) and the attempt that produced it, rewritten atomically as the run goes, so a
    resumed session and its report can say which test ran in which attempt."""

    def __init__(self, session_dir: Path, selected: list[str], resume: bool,
                 only: list[str] | None = None, params: str | None = None) -> None:  # fmt: skip
        self.path = session_dir / STATE_FILE
        old = json.loads(self.path.read_text()) if resume and self.path.exists() else {}
        self.attempt = int(old.get("attempt", 0)) + 1
        self.only = only  # --resume runs the same subset (None: the whole plan)
        self.params = params  # the params file's name (``kubetest sessions``' profile)
        self.tests: dict[str, dict[str, Any]] = old.get("tests", {})
        for key in selected:
            if self.tests.get(key, {}).get("state") != "done":
                self.tests[key] = {"state": "pending"}
        self.save()

    def set(self, key: str, state: str, **extra: Any) -> None:
        stamp = datetime.now(UTC).isoformat()
        entry = {**self.tests.get(key, {}), "state": state, "attempt": self.attempt, **extra}
        entry["started" if state == "running" else "updated"] = stamp
        self.tests[key] = entry
        self.save()

    def save(self) -> None:
        write_json(self.path, {"attempt": self.attempt, "only": self.only, "tests": self.tests,
                               "params": self.params})  # fmt: skip


class ProgressTail(threading.Thread):
    """Echoes the lines the running notebook appends to ``progress.log`` (see
    ``kubetest.engine.progress.session_note``), prefixed with the test, while it runs."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        super().__init__(name="kubetest-progress-tail", daemon=True)
        self.path, self.echo, self.test = path, echo, ""
        self._stop_event = threading.Event()
        self.path.touch()
        self._offset = self.path.stat().st_size  # a resumed session's old lines stay quiet

    def run(self) -> None:
        while not self._stop_event.wait(TAIL_S):
            self.drain()

    def drain(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        done = chunk.rfind(b"\n") + 1  # whole lines only; a half-written one waits
        self._offset += done
        for line in chunk[:done].decode("utf-8", "replace").splitlines():
            named = line.split(": ", 1)[0] in TESTS  # a test beside the current one
            if line.strip():
                self.echo(f"  {self.test}: {line}" if self.test and not named else f"  {line}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2 * TAIL_S)
        self.drain()


@contextlib.contextmanager
def _progress_channel(session_dir: Path, echo: Callable[[str], None]) -> Iterator[ProgressTail]:
    """Point the kernels at ``progress.log`` (an env var they inherit) and tail it."""
    from kubetest.engine.progress import PROGRESS_FILE_ENV

    tail = ProgressTail(session_dir / "progress.log", echo)
    previous = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = str(tail.path)
    tail.start()
    try:
        yield tail
    finally:
        tail.stop()
        if previous is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = previous


def parse_only(only: str | None) -> list[str] | None:
    """``--only A1,B1`` → ["A1", "B1"]; unknown names are refused with the known ones."""
    if not only:
        return None
    keys = [k.strip().upper() for k in only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TESTS]
    if unknown:
        raise KubetestError(
            f"--only: unknown test {', '.join(unknown)}; choose from {','.join(TESTS)}"
        )
    return keys


@contextlib.contextmanager
def _stop_signals(stop: Stop) -> Iterator[Stop]:
    """SIGINT and SIGTERM stop the whole run, with the same cleanup (target, pool, summary).

    While a notebook runs, the handler only records the request: the watcher stops the
    kernel (a kernel runs in its own session, so a terminal's Ctrl-C never reaches it).
    Elsewhere the first signal raises KeyboardInterrupt; later ones only count, so the
    cleanup that follows is not cut short.
    """

    def handler(signum: int, frame: Any) -> None:
        stop.signals += 1
        first = not stop.requested
        stop.event.set()
        if first and not stop.watching:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread; the caller owns them
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _phase_a_failed(session_dir: Path, failures: dict[str, str]) -> bool:
    """A Phase A notebook failed, or one of its requirements was judged FAIL."""
    from kubetest.summary import read_results

    if any(k in PHASE_A for k in failures):
        return True
    return any(
        req.status == "FAIL"
        for key, result in read_results(session_dir).items()
        if key in PHASE_A
        for req in result.requirements
    )


@contextlib.contextmanager
def _session_lock(session_dir: Path) -> Iterator[None]:
    """Refuse a second run into the same session folder while the first is alive."""
    lock = session_dir / ".lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            pass  # stale lock from a killed run
        else:
            raise KubetestError(
                f"session {session_dir} is in use by process {pid}: pass another --session"
            )
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def _exported_kubeconfig(endpoints: dict[str, str]) -> Iterator[None]:
    """The embedded target's kubeconfig path in the environment the kernels inherit."""
    from kubetest.workloads import EMBEDDED_KUBECONFIG_ENV

    previous = os.environ.get(EMBEDDED_KUBECONFIG_ENV)
    export_kubeconfig(endpoints)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(EMBEDDED_KUBECONFIG_ENV, None)
        else:
            os.environ[EMBEDDED_KUBECONFIG_ENV] = previous


@contextlib.contextmanager
def _workload_pool(
    params: Params, session_dir: Path, resume: bool, echo: Callable[[str], None]
) -> Iterator[Any]:
    """The session's workload pool (``alerts.workloads``): made or found before the first
    test, written to ``pool.json`` for the notebooks, and deleted when the run ends, by
    Ctrl-C or SIGTERM too. ``--resume`` reuses the interrupted run's token (and whatever
    of its pool is still there)."""
    from kubetest.alerts import new_run_token
    from kubetest.workloads import Pool, pool_from_params, release_pool

    if params.alerts.workloads is None:
        yield None
        return
    previous = Pool.load(session_dir) if resume else None
    run = previous.run if previous is not None and previous.run else new_run_token()
    pool = pool_from_params(params, run, reuse=resume, echo=echo)
    assert pool is not None
    pool.save(session_dir)
    try:
        yield pool
    finally:
        gone = release_pool(params, pool, echo)
        if gone is not None:  # recorded beside the results, not only on stderr
            pool.deleted = len(gone)
            pool.save(session_dir)


def _embedded_target(params: Params, log_path: Path) -> Any:
    from kubetest.target.embedded import EmbeddedTarget
    from kubetest.target.model import TargetConfig

    return EmbeddedTarget(TargetConfig.from_params(params.target.embedded), log_path=log_path)


def run_session(
    params_path: str | Path,
    *,
    only: list[str] | None = None,
    session: str | None = None,
    outputs: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> SessionResult:
    """Run the selected tests of a params file into ``outputs/<session>/`` and report.

    ``resume`` continues an interrupted session (a lost SSH session, a closed laptop):
    tests whose result is complete are kept and skipped, the rest of the same ``--only``
    subset run again. A session folder is never replaced unless ``overwrite`` says so.
    """
    params_path = Path(params_path).resolve()
    params = load_params(params_path)  # refuse bad params before anything starts
    outputs = (outputs or Path.cwd() / "outputs").resolve()
    if resume and not session:
        raise KubetestError("--resume needs --session NAME: the session to continue")
    if resume and overwrite:
        raise KubetestError("--resume keeps a session, --overwrite replaces it: choose one")
    session_dir = outputs / (
        check_session_name(session) if session is not None else new_session_name()
    )
    _refuse_foreign(session_dir)
    if not resume and not overwrite:
        _refuse_existing(session_dir)
    if resume:
        only = _resumed_only(session_dir, only, echo)
    selected = [k for k in params.selected_tests() if only is None or k in only]
    if not selected:
        raise KubetestError(
            f"nothing to run: {params_path.name} has no section for {','.join(only or TESTS)}"
        )
    params_text = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    done: list[str] = []
    if resume:
        done = _resumable(session_dir, params_text, selected)
        echo(f"resuming {session_dir.name}: kept {', '.join(done) or 'nothing'}")
    try:
        session_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KubetestError(
            f"cannot create {session_dir}: {exc.strerror}; check --session and disk"
        ) from None

    failures: dict[str, str] = {}
    interrupted = False
    with contextlib.ExitStack() as scope:
        scope.enter_context(_session_lock(session_dir))
        if overwrite and _clear_session(session_dir):
            echo(f"overwriting {session_dir.name}: the earlier run's files are gone")
        (session_dir / "notebooks").mkdir(exist_ok=True)
        stop = scope.enter_context(_stop_signals(Stop()))
        progress = scope.enter_context(_progress_channel(session_dir, echo))
        # The params as run, for the report: they hold env var *names*, never secret values.
        (session_dir / "params.yaml").write_text(params_text)
        states = NotebookStates(session_dir, selected, resume, only, params_path.name)
        target = (
            _embedded_target(params, session_dir / "target.log")
            if params.target.is_embedded
            else None
        )
        current, t0 = "", time.monotonic()
        side: BesideA3 | None = None
        side_t0 = t0
        pool_scope = contextlib.ExitStack()
        try:
            if target is not None:
                target.start()
                target_url = target.webhook_url
                endpoints = target_endpoints(target)
                write_json(session_dir / TARGET_FILE, endpoints)
                pool_scope.enter_context(_exported_kubeconfig(endpoints))
                echo(f"embedded reference target on {target.base_url}")
            else:
                target_url = params.target.url
            pool_scope.enter_context(_workload_pool(params, session_dir, resume, echo))
            notebook_params = {"params_path": str(params_path), "session_dir": str(session_dir),
                               "target_url": target_url}  # fmt: skip
            side = BesideA3.plan(
                params, [k for k in selected if k not in done], session_dir,
                lambda: _beside(session_dir, notebook_params),
            )  # fmt: skip
            for key in [*selected, ""]:
                if key in done:
                    continue
                if stop.requested:  # a signal between two notebooks
                    raise KeyboardInterrupt
                if side is not None and side.due(key):
                    current, t0 = BESIDE_KEY, side_t0
                    _finish_beside(side, stop, states, failures, echo, t0)
                    current = ""
                if not key:
                    break
                if side is not None and side.starts_at(key):
                    side_t0 = time.monotonic()
                    states.set(BESIDE_KEY, "running", beside=side.load)
                    echo(f"{BESIDE_KEY}: running beside {', '.join(side.load) or 'nothing'}")
                    side.start()
                if side is not None and key == BESIDE_KEY:
                    continue
                nb = NOTEBOOKS_DIR / NOTEBOOKS[key]
                gate = key not in PHASE_A and not params.continue_on_phase_a_failure
                if gate and _phase_a_failed(session_dir, failures):
                    echo(f"{key}: not run: Phase A failed (continue_on_phase_a_failure: false)")
                    states.set(key, "not run", reason="Phase A failed")
                    continue
                current, t0 = key, time.monotonic()
                progress.test = key
                states.set(key, "running")
                echo(f"{key}: running {nb.name} ...")
                try:
                    execute_stoppable(
                        nb, session_dir / "notebooks" / nb.name, notebook_params, session_dir, stop
                    )
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # papermill raises its own error types per cell
                    if stop.requested:
                        raise KeyboardInterrupt from None
                    failures[key] = _one_line(exc)
                    states.set(key, "failed", error=failures[key])
                    echo(f"{key}: FAILED after {time.monotonic() - t0:.0f} s: {failures[key]}")
                    continue
                current = ""
                states.set(key, "done")
                echo(f"{key}: done in {time.monotonic() - t0:.0f} s")
        except KeyboardInterrupt:
            interrupted = True
            if current:
                failures[current] = f"interrupted after {time.monotonic() - t0:.0f} s"
                states.set(current, "interrupted")
        finally:
            if side is not None and side.stop():  # A3 beside: stopped with the session
                failures[BESIDE_KEY] = "interrupted"
                states.set(BESIDE_KEY, "interrupted")
            try:
                pool_scope.close()  # the pool goes before the target that may hold it
            finally:
                if target is not None:
                    target.stop()
        summary = write_summary(session_dir, complete=not interrupted, failures=failures)
        report = None
        if not interrupted:  # the report takes its own kernel: `kubetest report` builds it
            report, interrupted = _build_report(session_dir, echo, stop)
    return SessionResult(session_dir, summary, report, failures, interrupted)


def _beside(session_dir: Path, parameters: dict[str, Any]) -> Beside:
    nb = NOTEBOOKS_DIR / NOTEBOOKS[BESIDE_KEY]
    return Beside(nb, session_dir / "notebooks" / nb.name, parameters, session_dir)


def _finish_beside(
    side: BesideA3,
    stop: Stop,
    states: NotebookStates,
    failures: dict[str, str],
    echo: Callable[[str], None],
    t0: float,
) -> None:
    """Wait for A3 run beside Phase A and record how it ended (a stop propagates)."""
    try:
        side.finish(stop)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # papermill's per-cell errors, as for any notebook
        failures[BESIDE_KEY] = _one_line(exc)
        states.set(BESIDE_KEY, "failed", error=failures[BESIDE_KEY])
        echo(f"{BESIDE_KEY}: FAILED after {time.monotonic() - t0:.0f} s: {failures[BESIDE_KEY]}")
        return
    states.set(BESIDE_KEY, "done")
    echo(f"{BESIDE_KEY}: done in {time.monotonic() - t0:.0f} s (beside the Phase A load)")


def check_session_name(name: str) -> str:
    """``name`` when it is one plain folder name: a session lives *in* outputs/, so ``..``,
    a ``/`` or an absolute path (which would write and delete elsewhere) are refused."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
           or any(ord(c) < 32 for c in name) or Path(name).is_absolute())  # fmt: skip
    if bad:
        raise KubetestError(
            f"--session {name!r} is not a folder name: give one name (letters, digits, "
            "-_.), no '/', no '..'; it is created under outputs/ (or --outputs)"
        )
    return name


def _refuse_foreign(session_dir: Path) -> None:
    """A folder kubetest did not make (no ``state.json``, not empty) is never written into:
    a rerun clears ``results/``, which must only ever be kubetest's own."""
    if session_dir.is_symlink():
        raise KubetestError(f"{session_dir} is a symlink: pass another --session")
    if (session_dir.is_dir() and any(session_dir.iterdir())
            and not (session_dir / STATE_FILE).is_file()):  # fmt: skip
        raise KubetestError(
            f"{session_dir} exists and is not a kubetest session (no {STATE_FILE}): "
            "pass another --session"
        )


def shown_path(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when inside."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _refuse_existing(session_dir: Path) -> None:
    """A session folder is only ever continued (--resume) or replaced (--overwrite) on
    purpose: a plain rerun under the same name must not lose the first run's results."""
    if (session_dir / STATE_FILE).is_file():
        raise SessionExistsError(
            f"{shown_path(session_dir)} already holds a session; continue it with --resume, "
            "replace it with --overwrite, or pick another --session"
        )


def _clear_session(session_dir: Path) -> bool:
    """Empty a kubetest session (``state.json`` says it is one) for --overwrite, keeping its
    ``.lock``: symlinks inside are unlinked, their targets never touched. False: nothing
    was there to clear (or the folder is not kubetest's)."""
    if session_dir.is_symlink() or not (session_dir / STATE_FILE).is_file():
        return False
    for entry in session_dir.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    return True


def _resumed_only(
    session_dir: Path, only: list[str] | None, echo: Callable[[str], None]
) -> list[str] | None:
    """The ``--only`` subset a resumed run takes: the user's when given (said when it
    differs), else the interrupted run's, so a resume never quietly widens the run."""
    stored: list[str] | None = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        raw = json.loads((session_dir / STATE_FILE).read_text()).get("only")
        if isinstance(raw, list) and raw and all(k in TESTS for k in raw):
            stored = [str(k) for k in raw]
    if only is None:
        if stored:
            echo(f"resuming with --only {','.join(stored)}, as the interrupted run")
        return stored
    if only != stored:
        echo(
            f"resuming with --only {','.join(only)}; the interrupted run had "
            + (f"--only {','.join(stored)}" if stored else "the whole plan")
        )
    return only


def _resumable(session_dir: Path, params_text: str, selected: list[str]) -> list[str]:
    """Tests of ``session_dir`` already complete, after checking the params are the same."""
    from kubetest.summary import read_results

    recorded = session_dir / "params.yaml"
    if not recorded.exists():
        raise KubetestError(f"--resume: {session_dir} holds no earlier run to continue")
    if recorded.read_text() != params_text:
        raise KubetestError(
            f"--resume: the params differ from those {session_dir.name} ran with; "
            "resume with the same file or start a new --session"
        )
    results = read_results(session_dir)
    return [k for k in selected if k in results and results[k].complete is True]


def _build_report(
    session_dir: Path, echo: Callable[[str], None], stop: Stop
) -> tuple[Path | None, bool]:
    """The report, and whether a stop signal cut it short (the summary is written)."""
    from kubetest.report.html import build_report

    def execute(src: Path, dst: Path, parameters: dict[str, Any], cwd: Path) -> None:
        execute_stoppable(src, dst, parameters, cwd, stop)

    try:
        if stop.requested:
            raise KeyboardInterrupt
        return build_report(session_dir, execute=execute), False
    except KeyboardInterrupt:
        return None, True
    except Exception as exc:  # a report failure must not hide the summary already written
        echo(f"report: FAILED: {_one_line(exc)}")
        return None, False


def _one_line(exc: BaseException) -> str:
    if getattr(exc, "ename", None):  # papermill's PapermillExecutionError: the cell's error
        return scrub_then_cut(f"{exc.ename}: {exc.evalue}", 300)  # type: ignore[attr-defined]
    text = str(exc).strip().splitlines()
    # papermill's PapermillExecutionError ends with the exception line of the failed cell.
    tail = [ln for ln in text if ln.strip()][-1:] if text else []
    return scrub_then_cut(tail[0] if tail else type(exc).__name__, 300)
