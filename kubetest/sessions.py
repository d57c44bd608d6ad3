"""Session folders as a user finds them: the list (``kubetest sessions``), and the one
session notebooks opened by hand in JupyterLab share.

Notebooks run by ``kubetest run`` are told their session; notebooks opened by hand are
not, so they share one: the folder named by ``KUBETEST_SESSION`` (a path, or a name under
the outputs folder), else the newest ``lab_*`` folder there, else a new ``lab_<time>``.
Then A1, B1 and the report opened one after the other describe one session.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kubetest.errors import KubetestError
from kubetest.files import new_session_name, write_json
from kubetest.summary import write_summary

#: Where notebooks run by hand write their session folders, when set.
OUTPUTS_ENV = "KUBETEST_OUTPUTS"
#: The session notebooks opened by hand share, when set (a path, or a name under outputs).
SESSION_ENV = "KUBETEST_SESSION"
LAB_PREFIX = "lab_"
STATE_FILE = "state.json"


def outputs_root(cwd: Path | None = None) -> tuple[Path, str]:
    """The outputs folder of a notebook run by hand, and why that one: the user's, never
    the installed package's. ``KUBETEST_OUTPUTS``, else the project's ``outputs/`` (the
    nearest folder up from ``cwd`` that holds ``params/``), else ``./outputs``."""
    env = os.environ.get(OUTPUTS_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve(), f"from {OUTPUTS_ENV}"
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir():
            return folder / "outputs", f"the project's: {folder} holds params/"
    return here / "outputs", f"no params/ folder above {here}; set {OUTPUTS_ENV} to choose"


def newest_lab_session(root: Path) -> Path | None:
    """The newest ``lab_*`` folder under ``root`` (names sort by their UTC timestamp)."""
    found = [p for p in root.glob(f"{LAB_PREFIX}*") if p.is_dir() and not p.is_symlink()]
    return max(found, key=lambda p: p.name) if found else None


def hand_session(cwd: Path | None = None) -> tuple[Path, str]:
    """The session a notebook opened by hand writes into, and why that one."""
    root, why = outputs_root(cwd)
    named = os.environ.get(SESSION_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        path = path if path.is_absolute() or len(path.parts) > 1 else root / path
        return path.resolve(), f"from {SESSION_ENV}"
    newest = newest_lab_session(root)
    if newest is not None:
        return newest, (
            f"shared: the newest {LAB_PREFIX}* session in {root}; set {SESSION_ENV} "
            "to choose another"
        )
    return root / new_session_name(LAB_PREFIX.rstrip("_")), why


def mark_lab_session(session: Path, params_path: Path, params_text: str) -> None:
    """Make a folder notebooks opened by hand write into a session like a run's: its
    ``state.json`` (kubetest's mark; ``kubetest sessions`` lists it) and the params
    it ran with, for ``kubetest compare``. The first notebook's params are kept."""
    foreign = session.is_dir() and any(session.iterdir()) and not (session / STATE_FILE).exists()
    if foreign or session.is_symlink():
        raise KubetestError(
            f"{session} exists and is not a kubetest session (no {STATE_FILE}): set "
            f"{SESSION_ENV} to another folder"
        )
    session.mkdir(parents=True, exist_ok=True)
    if not (session / STATE_FILE).exists():
        state = {"attempt": 1, "only": None, "tests": {}, "params": params_path.name, "lab": True}
        write_json(session / STATE_FILE, state)
    if not (session / "params.yaml").exists():
        (session / "params.yaml").write_text(params_text)


def report_session(session_dir: str | Path = "") -> Path:
    """The session ``report.ipynb`` renders: the one given (a run), or, opened by hand, the
    shared one, whose ``summary.json`` is brought up to date with its results first."""
    if session_dir:
        return Path(session_dir)
    session, why = hand_session()
    if not (session / "results").is_dir():
        raise KubetestError(
            f"no session to report on ({session} holds no results/): run a test notebook "
            f"first, or set {SESSION_ENV} to a session folder"
        )
    print(f"reporting on {session} ({why})", flush=True)
    summary = session / "summary.json"
    results = list((session / "results").glob("*.json"))
    newest = max((p.stat().st_mtime for p in results), default=0.0)
    if not summary.exists() or summary.stat().st_mtime < newest:
        write_summary(session, complete=True)
    return session


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _started(session: Path) -> datetime | None:
    stamps = []
    for path in (session / "results").glob("*.json"):
        with_time = _read_json(path).get("started")
        try:
            stamps.append(datetime.fromisoformat(str(with_time)))
        except ValueError:
            continue
    if stamps:
        return min(stamps)
    state = session / STATE_FILE
    return datetime.fromtimestamp(state.stat().st_mtime, UTC) if state.exists() else None


def _profile(session: Path, state: dict[str, Any]) -> str:
    api = ""
    if (session / "params.yaml").is_file():
        try:
            params = yaml.safe_load((session / "params.yaml").read_text()) or {}
            api = str((params.get("target") or {}).get("api") or "")
        except yaml.YAMLError:
            api = ""
    name = str(state.get("params") or "")
    if name and api:
        return f"{name} ({api})"
    return name or api or "—"


def list_sessions(outputs: Path) -> pd.DataFrame:
    """Every session under ``outputs`` (a folder holding ``state.json``), newest first:
    when it ran, its profile (params file and API), decision, validity, tests."""
    rows = []
    for session in sorted(Path(outputs).glob("*/")):
        state_path = session / STATE_FILE
        if not state_path.is_file() or session.is_symlink():
            continue
        state = _read_json(state_path)
        summary = _read_json(session / "summary.json")
        started = _started(session)
        rows.append(
            {
                "session": session.name,
                "time": started.strftime("%Y-%m-%d %H:%M UTC") if started else "—",
                "profile": _profile(session, state),
                "decision": summary.get("decision", "—") if summary else "— (no summary)",
                "validity": (summary.get("validity") or {}).get("status", "—"),
                "complete": summary.get("complete", "—") if summary else "—",
                "tests": ",".join(summary.get("tests_run") or [])
                or ",".join(p.stem for p in sorted((session / "results").glob("*.json"))),
                "_sort": started.timestamp() if started else 0.0,
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "session",
            "time",
            "profile",
            "decision",
            "validity",
            "complete",
            "tests",
            "_sort",
        ],
    )
    return frame.sort_values("_sort", ascending=False).drop(columns="_sort").reset_index(drop=True)


def sessions_text(frame: pd.DataFrame) -> str:
    """The list as plain columns for a terminal."""
    if frame.empty:
        return "no sessions (folders holding state.json) here"
    return frame.to_string(index=False)
