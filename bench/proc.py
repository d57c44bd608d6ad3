"""Run one generator process and measure its CPU: ``/proc/<pid>/stat`` samples while it runs
(utime + stime of that process, all its threads), and its total rusage from ``wait4``
(which also counts the descendants it reaped). With ``tree=True`` every sample also reads
each live descendant (``/proc/<pid>/task/*/children``), one figure per pid, so that a
generator running its load in child processes (the engine's Dask workers) is measured
whole, or worker by worker (``Measured.utilisation(..., pids=...)``).

CPU per 1,000 requests is reported two ways:

* ``steady``: utilisation over the steady part of the run (samples inside a window that
  skips start-up and shutdown) divided by the request rate - what a long run costs;
* ``total``: the whole process (imports, start-up, summary) divided by the requests sent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (seconds), or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # after "pid (comm) ": state=0 ... utime=11 stime=12 (fields 14 and 15 of proc(5))
    return (int(fields[11]) + int(fields[12])) / _TICK


#: What every measured run also watches: the target server's pid and the two cores
#: (set by the benchmark when it starts a target; see ``watch``).
_WATCH: dict[str, int | None] = {"target_pid": None, "target_core": None, "gen_core": None}


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children of any of its threads, recursively)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                k = int(kid)
                if k not in out:
                    out.append(k)
                    todo.append(k)
    return out


def watch(*, target_pid: int | None, target_core: int | None, gen_core: int | None) -> None:
    _WATCH.update(target_pid=target_pid, target_core=target_core, gen_core=gen_core)


def core_busy_s() -> dict[int, float]:
    """Busy seconds per core since boot (``/proc/stat``: user, nice, system, irq, softirq -
    the ticks a process's utime + stime are also charged with)."""
    out: dict[int, float] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in vals[:7]]
            out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6]) / _TICK
    return out


@dataclass
class Measured:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.monotonic() at spawn
    ended: float  # time.monotonic() at exit
    cpu_total_s: float  # rusage utime + stime of the whole process (wait4)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, cpu s)
    timed_out: bool = False
    core_busy: dict[int, float] = field(default_factory=dict)  # busy s per core during the run
    target_cpu_s: float | None = None  # CPU the watched target server used meanwhile
    # tree=True: (monotonic, {pid: cpu s}) for the process and each live descendant
    tree_samples: list[tuple[float, dict[int, float]]] = field(default_factory=list)

    def foreign_share(self, core: int | None) -> float | None:
        """Share of ``core`` used by anything but this process while it ran (another
        program on a shared machine disturbs the measurement when this is not ~0)."""
        if core is None or core not in self.core_busy or self.ended <= self.started:
            return None
        other = self.core_busy[core] - self.cpu_total_s
        return max(0.0, other) / (self.ended - self.started)

    def utilisation(
        self, t_from: float, t_to: float, pids: list[int] | None = None
    ) -> float | None:
        """CPU seconds per wall second between the first sample >= t_from and the last <= t_to:
        of the process itself; with ``tree=True`` sampling, of the process and its descendants
        (the pids alive at both ends of the window), or of ``pids`` only."""
        if self.tree_samples:
            inside_t = [s for s in self.tree_samples if t_from <= s[0] <= t_to]
            if len(inside_t) < 2 or inside_t[-1][0] - inside_t[0][0] < 0.5:
                return None
            (t0, a), (t1, b) = inside_t[0], inside_t[-1]
            keep = [p for p in (pids if pids is not None else a) if p in a and p in b]
            if pids is not None and len(keep) < len(pids):
                return None  # a process asked for was not there all along
            return sum(b[p] - a[p] for p in keep) / (t1 - t0)
        if pids is not None:
            return None
        inside = [s for s in self.samples if t_from <= s[0] <= t_to]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)

    def tree_cpu_s(self) -> float | None:
        """The most CPU the process and its live descendants had used at any sample (a lower
        bound of the tree's total when descendants exit unreaped)."""
        if not self.tree_samples:
            return None
        return max(sum(d.values()) for _, d in self.tree_samples)


def run_measured(
    command: list[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    preexec_fn=None,
    interval_s: float = 0.25,
    tree: bool = False,
) -> Measured:
    """Run ``command`` to completion (killed after ``timeout_s``), sampling its CPU (with
    ``tree``, also that of each of its descendants)."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.time_ns()}"
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        target_pid = _WATCH["target_pid"]
        target0 = proc_cpu_s(target_pid) if target_pid else None
        busy0 = core_busy_s()
        started = time.monotonic()
        proc = subprocess.Popen(
            command, stdout=out, stderr=err, env=env, cwd=cwd, preexec_fn=preexec_fn
        )
        samples: list[tuple[float, float]] = []
        tree_samples: list[tuple[float, dict[int, float]]] = []
        timed_out = False
        rusage = None
        status = 0
        try:
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                cpu = proc_cpu_s(proc.pid)
                now = time.monotonic()
                if cpu is not None:
                    samples.append((now, cpu))
                    if tree:
                        per = {proc.pid: cpu}
                        for kid in descendants(proc.pid):
                            kc = proc_cpu_s(kid)
                            if kc is not None:
                                per[kid] = kc
                        tree_samples.append((now, per))
                if now - started > timeout_s and not timed_out:
                    timed_out = True
                    proc.send_signal(signal.SIGTERM)
                elif timed_out and now - started > timeout_s + 10:
                    proc.kill()
                time.sleep(interval_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        ended = time.monotonic()
        busy1 = core_busy_s()
        target1 = proc_cpu_s(target_pid) if target_pid else None
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    for suffix in (".out", ".err"):
        with contextlib.suppress(OSError):
            os.unlink(f"{out_path}{suffix}")
    cpu_total = rusage.ru_utime + rusage.ru_stime if rusage is not None else float("nan")
    return Measured(
        command=command,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        started=started,
        ended=ended,
        cpu_total_s=cpu_total,
        samples=samples,
        timed_out=timed_out,
        core_busy={k: busy1[k] - busy0[k] for k in busy1 if k in busy0},
        target_cpu_s=target1 - target0 if target0 is not None and target1 is not None else None,
        tree_samples=tree_samples,
    )


def machine(m: Measured, *, spread: bool = False) -> dict[str, float | None]:
    """How busy the machine was around a measured run (shares of one core, 0..1):
    the generator core's use by anything else, the target's own use of its core, and the
    target core's use by anything else (this orchestrator's polling is ~0.01).

    ``spread``: the generator was not pinned (it ran on every core, e.g. Dask workers), so
    per-core shares mean nothing; ``machine_other`` is then what all cores together spent
    beyond the generator's process tree and the target (in shares of one core)."""
    wall = max(m.ended - m.started, 1e-9)
    gen, tgt = _WATCH["gen_core"], _WATCH["target_core"]
    target_share = m.target_cpu_s / wall if m.target_cpu_s is not None else None
    if spread:
        gen_cpu = max(m.cpu_total_s, m.tree_cpu_s() or 0.0)
        busy = sum(m.core_busy.values())
        other = max(0.0, busy - gen_cpu - (m.target_cpu_s or 0.0)) / wall if busy else None
        return {"target_cpu": target_share, "machine_other": other}
    tgt_other = None
    if tgt is not None and tgt in m.core_busy:
        tgt_other = max(0.0, m.core_busy[tgt] - (m.target_cpu_s or 0.0)) / wall
    return {
        "gen_core_other": m.foreign_share(gen),
        "target_cpu": target_share,
        "target_core_other": tgt_other,
    }


def cpu_per_1k(
    m: Measured,
    *,
    requests: int,
    rate_per_s: float,
    t_from: float,
    t_to: float,
    pids: list[int] | None = None,
) -> dict[str, float | None]:
    """``steady`` and ``total`` CPU seconds per 1,000 requests (see the module docstring);
    ``pids``: the steady figure of those processes only (``tree=True`` sampling)."""
    util = m.utilisation(t_from, t_to, pids)
    steady = util / rate_per_s * 1000 if util is not None and rate_per_s > 0 else None
    total = m.cpu_total_s / requests * 1000 if requests > 0 else None
    return {"steady": steady, "total": total, "utilisation": util}
