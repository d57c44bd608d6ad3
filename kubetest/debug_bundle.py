"""``kubetest debug-info``: one archive to attach to a bug report, with no secret in it.

A bug report is only as good as what comes with it: the platform and package versions
(most "it fails here" reports are an old library), the environment checks (most are a
service that is not there), the params, the session's logs and how each notebook failed.
Collecting that by hand takes a dozen commands and leaks a password sooner or later, so
this module writes it in one go and scrubs every text it writes (``secrets.Scrubber``) of:

* the secret values the params point at (``checks.env_secrets``), plus kubeconfig
  credentials, plus the value of every environment variable whose *name* looks secret
  (a safety net for the variables kubetest does not know about);
* any ``scheme://user:password@host`` password (URLs in params, logs, tracebacks).

What is left out, and why, is written to ``MANIFEST.txt`` inside the archive: records
(large, and raw per-request data), the HTML report and the executed notebooks themselves
(only their errors are kept).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubetest import __version__
from kubetest.ansi import ANSI, strip_ansi  # noqa: F401  (re-exported: tests, callers)
from kubetest.checks import as_records, collect, debug_info, env_secrets, find_kubeconfig
from kubetest.errors import KubetestError, ParamsError
from kubetest.params import Params, parse_params
from kubetest.secrets import (
    SECRET_NAME_PARTS,
    Scrubber,
    env_safety_net,
    kubeconfig_secrets,
    redact_url_or_keep,
    secret_named,
    url_passwords,
)

#: Environment checks touch the network the params configure: keep them short here.
CHECK_TIMEOUT_S = 3.0
#: Logs can grow to gigabytes in a day-long run; the end is where the failure is.
LOG_TAIL_LINES = 2000
LOG_TAIL_BYTES = 4 * 1024 * 1024
TRACEBACK_LINES = 20

#: Env vars worth showing in a bug report (names, and values when not secret).
RELEVANT_ENV_PREFIXES = (
    "LLM_", "OLLAMA_", "OPENAI_", "REDIS_", "POSTGRES", "PG", "KUBE", "DASK_", "PYTHON",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_", "REQUESTS_CA_BUNDLE",
    "VIRTUAL_ENV",
)  # fmt: skip

#: Why the parts of a session folder the bundle leaves out are left out (MANIFEST.txt).
LEFT_OUT_WHY = {
    "records": "raw per-request records: large, and not needed to diagnose a failure",
    "report.html": "the rendered report: large; summary.json and results/ hold its numbers",
    "html": "the notebooks rendered as HTML: large; their errors are in notebook-errors.txt",
    "FINAL_TEST_REPORT.md": "the report as Markdown: summary.json holds its numbers",
    "notebooks": "executed notebooks: large and full of rendered outputs; "
    "their errors are in session/notebook-errors.txt",
}


# --------------------------------------------------------------------------- secrets to scrub


def _kubeconfig_secrets(params: Params | None) -> list[str]:
    """Tokens, passwords and keys of the kubeconfig the checks would use (a log or an error
    message may quote one)."""
    path, _ = find_kubeconfig(params.environment if params else None)
    if path is None:
        return []
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    return kubeconfig_secrets(doc)


def _params_env_names(params: Params | None) -> set[str]:
    """Env var names the params say hold secrets: their values are never printed."""
    if params is None:
        return set()
    env = params.environment
    names = {params.target.auth_token_env, params.target.embedded.auth_token_env}
    if env:
        names |= {env.redis_password_env, env.postgres_dsn_env}
    return {n for n in names if n}


# --------------------------------------------------------------------------- pieces


@dataclass
class _Params:
    """The params the bundle describes, as far as they could be read."""

    source: str | None = None  # the file they came from
    raw: Any = None  # the YAML as written (None: unreadable)
    raw_text: str | None = None  # when the YAML itself is not valid
    params: Params | None = None  # validated (None: refused, see ``error``)
    error: str | None = None


def _read_params(path: Path) -> _Params:
    """Read params without failing the bundle: a refused file is itself debug information."""
    found = _Params(source=str(path))
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        found.error = f"cannot read {path}: {exc.strerror}"
        return found
    try:
        found.raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        found.raw_text, found.error = text, f"{path} is not valid YAML: {exc}"
        return found
    try:
        found.params = parse_params(found.raw, source=str(path), base_dir=path.resolve().parent)
    except ParamsError as exc:
        found.error = str(exc)
    return found


def _guard(what: str, fn: Callable[[], Any], notes: list[str]) -> Any:
    """A bundle is most needed when things are broken: one failing part must not stop it."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - recorded in the manifest instead
        notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
        return None


def _os_release() -> str | None:
    with contextlib.suppress(OSError, AttributeError):
        return platform.freedesktop_os_release().get("PRETTY_NAME")
    mac = platform.mac_ver()[0]
    return f"macOS {mac}" if mac else None


def _memory_total_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def _distributions() -> dict[str, str]:
    """Every installed distribution: "works for me" is usually a different version."""
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(str(name), str(dist.version))
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _environment_variables(environ: dict[str, str], secret_names: set[str]) -> dict[str, str]:
    """Relevant env vars: secret ones only as "set", the others with URL passwords masked."""
    shown: dict[str, str] = {}
    for name in sorted(environ):
        if not (name in secret_names or name.upper().startswith(RELEVANT_ENV_PREFIXES)):
            continue
        value = environ[name]
        if name in secret_names or secret_named(name):
            shown[name] = "set" if value else "set (empty)"
        else:
            shown[name] = redact_url_or_keep(value) if "://" in value else value
    return shown


def _platform(found: _Params | None, environ: dict[str, str], notes: list[str]) -> dict[str, Any]:
    params = found.params if found else None
    uname = platform.uname()
    affinity = getattr(os, "sched_getaffinity", None)
    doc: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "kubetest": __version__,
        "debug_info": _guard("checks.debug_info", lambda: debug_info(params), notes)
        if params
        else None,
        "platform": platform.platform(),
        "uname": {
            "system": uname.system,
            "node": uname.node,
            "release": uname.release,
            "version": uname.version,
            "machine": uname.machine,
        },
        "os_release": _os_release(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity(0)) if affinity else None,
        "memory_total_bytes": _memory_total_bytes(),
        "python": {
            "version": sys.version,
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "distributions": _guard("listing installed distributions", _distributions, notes),
        "environment_variables": _environment_variables(environ, _params_env_names(params)),
    }
    return doc


def tail_text(path: Path, lines: int = LOG_TAIL_LINES) -> tuple[str, int | None]:
    """The last ``lines`` lines of a file (reading at most ``LOG_TAIL_BYTES`` from its end),
    and how many lines it has when known (None: only its end was read)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size > LOG_TAIL_BYTES:
            fh.seek(size - LOG_TAIL_BYTES)
            data = fh.read()
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""  # drop a cut line
            total = None
        else:
            data = fh.read()
            total = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    kept = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else ""), total


def notebook_errors(notebooks: Iterable[Path], lines: int = TRACEBACK_LINES) -> str:
    """For each executed notebook: its error (name, value, last traceback lines, no ANSI
    codes) or "no error". The notebooks themselves are too large to attach."""
    parts: list[str] = []
    for path in sorted(notebooks):
        try:
            nb = json.loads(path.read_text(errors="replace"))
        except (OSError, ValueError) as exc:
            parts.append(f"{path.name}: could not be read ({type(exc).__name__}: {exc})\n")
            continue
        errors = [
            (index, out)
            for index, cell in enumerate(nb.get("cells") or [])
            if isinstance(cell, dict)
            for out in cell.get("outputs") or []
            if isinstance(out, dict) and out.get("output_type") == "error"
        ]
        if not errors:
            parts.append(f"{path.name}: no error\n")
            continue
        for index, out in errors:
            head = f"{path.name}: cell {index}: {out.get('ename', '?')}: {out.get('evalue', '')}"
            trace = strip_ansi("\n".join(str(t) for t in out.get("traceback") or []))
            tail = trace.splitlines()[-lines:]
            parts.append("\n".join([strip_ansi(head), *(f"    {t}" for t in tail)]) + "\n")
    return "\n".join(parts) if parts else "no executed notebooks in this session\n"


def is_session_dir(path: Path) -> bool:
    """A folder ``kubetest run`` wrote (even one interrupted before any result)."""
    return path.is_dir() and any(
        (path / name).exists() for name in ("state.json", "params.yaml", "summary.json", "results")
    )


# --------------------------------------------------------------------------- bundle


@dataclass
class _Bundle:
    """Members in the order they are written, and what the manifest says about them."""

    scrub: Scrubber
    members: dict[str, str] = field(default_factory=dict)
    described: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    included: set[Path] = field(default_factory=set)  # session files the bundle draws on

    def add(self, name: str, text: str, what: str, source: Path | None = None) -> None:
        self.members[name] = self.scrub.text(text)
        self.described.append(f"{name}: {what}")
        if source is not None:
            self.included.add(source)


def default_output(session_dir: Path | None, when: datetime | None = None) -> Path:
    """``kubetest-debug-<session>.tar.gz`` next to the session folder (not inside it: the
    session stays what the run wrote, and bundling it again never picks up an old bundle),
    or ``kubetest-debug-<UTC timestamp>.tar.gz`` in the current folder."""
    if session_dir is not None:
        session_dir = session_dir.resolve()
        return session_dir.parent / f"kubetest-debug-{session_dir.name}.tar.gz"
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path.cwd() / f"kubetest-debug-{stamp}.tar.gz"


def write_debug_bundle(
    session_dir: Path | None,
    *,
    params_path: Path | None = None,
    output: Path | None = None,
    run_checks: bool = True,
    check_timeout_s: float = CHECK_TIMEOUT_S,
) -> Path:
    """Write the debug archive and return its path.

    Params come from ``params_path`` when given, else from the session's ``params.yaml``;
    without either the bundle holds the platform and packages only (and says so).
    ``run_checks=False`` (``--no-checks``) leaves out the checks, which touch the network.
    """
    if session_dir is not None and not is_session_dir(session_dir):
        raise KubetestError(
            f"{session_dir} is not a session folder (no state.json, params.yaml, summary.json "
            "or results/): pass a folder under outputs/ that kubetest run wrote"
        )
    if params_path is not None and not params_path.is_file():
        raise ParamsError(f"params file {str(params_path)!r} not found: pass an existing YAML file")
    environ = dict(os.environ)

    sources: list[_Params] = []
    if params_path is not None:
        sources.append(_read_params(params_path))
    if session_dir is not None and _own_file(session_dir, session_dir / "params.yaml"):
        sources.append(_read_params(session_dir / "params.yaml"))
    found = sources[0] if sources else None
    params = found.params if found else None

    secrets = env_safety_net(environ)
    for src in sources:  # every params file read: the explicit one and the session's
        secrets += url_passwords(src.raw)
        if src.params is not None:
            secrets += env_secrets(src.params)
            secrets += [environ.get(n, "") for n in _params_env_names(src.params)]
    notes: list[str] = []
    secrets += _guard("reading the kubeconfig", lambda: _kubeconfig_secrets(params), notes) or []
    bundle = _Bundle(Scrubber(secrets), notes=notes)

    platform_doc = _platform(found, environ, bundle.notes)
    bundle.add(
        "platform.json",
        bundle.scrub.json(platform_doc),
        "platform, Python, kubetest and every installed package's version, the params' "
        "target and environment (URL passwords masked), relevant environment variables "
        '(secret ones only as "set")',
    )
    _add_params(bundle, found, sources)
    _add_checks(bundle, params, run_checks, check_timeout_s)
    if session_dir is not None:
        _add_session(bundle, session_dir)
    else:
        bundle.left_out["session/"] = "no SESSION given: no logs, state or notebook errors"
    bundle.add("MANIFEST.txt", _manifest(bundle, session_dir, found, secrets), "this file")

    target = output if output is not None else default_output(session_dir)
    if target.is_dir():
        target = target / default_output(session_dir).name
    _write_archive(target, bundle.members)
    return target


def _add_params(bundle: _Bundle, found: _Params | None, sources: list[_Params]) -> None:
    if found is None:
        bundle.left_out["params.yaml"] = "no SESSION and no --params: platform and packages only"
        return
    if found.raw_text is not None:  # not YAML: scrubbed as text
        text = found.raw_text
    else:
        text = yaml.safe_dump(bundle.scrub.data(found.raw), sort_keys=False, allow_unicode=True)
    bundle.add(
        "params.yaml",
        text,
        f"the params from {found.source}, secrets redacted",
        Path(found.source) if found.source else None,
    )
    if found.error:
        bundle.notes.append(f"params refused: {found.error}")
    if len(sources) > 1:
        bundle.notes.append(
            f"params from --params {found.source}; the session's own params.yaml was "
            "used only to find secrets to scrub"
        )


def _add_checks(bundle: _Bundle, params: Params | None, run: bool, timeout_s: float) -> None:
    if params is None:
        bundle.left_out["checks.json"] = "no valid params: nothing to check"
        return
    if not run:
        bundle.left_out["checks.json"] = "--no-checks: the environment checks were not run"
        return
    checks = _guard(
        "the environment checks",
        lambda: as_records(collect(params, timeout_s=timeout_s)),
        bundle.notes,
    )
    if checks is None:
        bundle.left_out["checks.json"] = "the environment checks crashed (see notes)"
        return
    doc = {"timeout_s": timeout_s, "checks": checks}
    bundle.add(
        "checks.json",
        bundle.scrub.json(doc),
        f"the environment checks (kubetest check), run now with a {timeout_s:g} s timeout",
    )


def _symlinked(session: Path, path: Path) -> bool:
    """``path``, or a folder between ``session`` and it, is a symlink: the bundle never
    follows one (it could point anywhere: ~/.kube, /etc, another user's files)."""
    rel = path.relative_to(session)
    return any((session / Path(*rel.parts[: i + 1])).is_symlink() for i in range(len(rel.parts)))


def _own_file(session: Path, path: Path) -> bool:
    """A regular file of the session itself, reached without a symlink."""
    return not _symlinked(session, path) and path.is_file()


def _add_session(bundle: _Bundle, session: Path) -> None:
    for name in ("state.json", "summary.json"):
        path = session / name
        if _own_file(session, path):
            bundle.add(
                f"session/{name}", _json_text(bundle.scrub, path), f"the session's {name}", path
            )
        else:
            bundle.left_out[f"session/{name}"] = "not in the session folder"
    for path in sorted((session / "results").glob("*.json")):
        if _own_file(session, path):
            bundle.add(f"session/results/{path.name}", _json_text(bundle.scrub, path),
                       "a test's result (what the report is built from)", path)  # fmt: skip
    # logs, and the JUnit XML of the service's own suites (which test failed, and how)
    for path in sorted([*session.rglob("*.log"), *session.glob("suites/*.xml")]):
        rel = path.relative_to(session)
        if not _own_file(session, path) or rel.parts[0] == "records":
            continue
        try:
            text, total = tail_text(path)
        except OSError as exc:
            bundle.notes.append(f"{rel}: cannot be read: {exc.strerror}")
            continue
        kept = text.count("\n")
        whole = total is not None and kept >= total
        how = "whole" if whole else f"last {kept} lines" + (f" of {total}" if total else "")
        kind = "JUnit XML" if path.suffix == ".xml" else "log"
        bundle.add(f"session/{rel.as_posix()}", text, f"{kind} ({how}, ANSI codes stripped)", path)
    notebooks = [
        p for p in sorted((session / "notebooks").glob("*.ipynb")) if _own_file(session, p)
    ]
    bundle.add(
        "session/notebook-errors.txt",
        notebook_errors(notebooks),
        f"each executed notebook's error, last {TRACEBACK_LINES} traceback lines "
        f"({len(notebooks)} notebooks)",
    )
    _note_left_out(bundle, session)


def _note_left_out(bundle: _Bundle, session: Path) -> None:
    """Every file of the session not in the bundle, grouped by top-level entry, with why."""
    groups: dict[str, list[int]] = {}
    for path in sorted(session.rglob("*")):
        if path.is_symlink():
            rel = path.relative_to(session).as_posix()
            if not _symlinked(session, path.parent):  # the link itself, not what lies beyond
                bundle.left_out[f"session/{rel}"] = "a symlink: not followed"
            continue
        if _own_file(session, path) and path not in bundle.included:
            top = path.relative_to(session).parts[0]
            groups.setdefault(top, []).append(path.stat().st_size)
    for top, sizes in sorted(groups.items()):
        name = top + ("/" if (session / top).is_dir() else "")
        what = f"{len(sizes)} file{'s' if len(sizes) > 1 else ''}, {_size(sum(sizes))}"
        why = LEFT_OUT_WHY.get(top, "not needed to diagnose a failure")
        bundle.left_out[f"session/{name}"] = f"{what}: {why}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _json_text(scrub: Scrubber, path: Path) -> str:
    text = path.read_text(errors="replace")
    try:
        return scrub.json(json.loads(text))
    except ValueError:  # half-written by a killed run: still worth a look, as text
        return text


def _manifest(
    bundle: _Bundle, session: Path | None, found: _Params | None, secrets: list[str]
) -> str:
    lines = [
        f"kubetest {__version__} debug bundle, written {datetime.now(UTC).isoformat()}",
        f"session: {session.resolve() if session else 'none (no SESSION given)'}",
        f"params:  {found.source if found else 'none (no SESSION params and no --params)'}",
        "",
        "Contents:",
        *(f"  {d}" for d in bundle.described),
        "  MANIFEST.txt: this file",
        "",
        "Left out:",
        *(f"  {name}: {why}" for name, why in bundle.left_out.items()),
        "",
        "Secrets: every text above was scrubbed (replaced by ***) of the values of the env",
        "vars the params name (token, Redis password, PostgreSQL DSN and its password), of",
        "the kubeconfig's credentials, of every env var whose name contains",
        "  " + ", ".join(SECRET_NAME_PARTS) + ",",
        "and of the password of every URL that carries one (user:password@ after scheme://).",
        f"{len({s for s in secrets if s})} secret values were known. Check before attaching.",
    ]
    if found is None:
        lines += ["", "No params: this bundle holds the platform and package versions only."]
    if bundle.notes:
        lines += ["", "Notes:", *(f"  {n}" for n in bundle.notes)]
    return "\n".join(lines) + "\n"


def _write_archive(target: Path, members: dict[str, str]) -> None:
    """Write to a temporary file and rename: a failure never leaves half an archive."""
    prefix = target.name.removesuffix(".tar.gz").removesuffix(".tgz")
    now = time.time()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kubetest-debug-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for name, text in members.items():
                    data = text.encode("utf-8")
                    info = tarfile.TarInfo(f"{prefix}/{name}")
                    info.size, info.mtime, info.mode = len(data), now, 0o644
                    tar.addfile(info, io.BytesIO(data))
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise KubetestError(
            f"cannot write {target}: {exc.strerror or exc}; pass --output somewhere writable"
        ) from None
