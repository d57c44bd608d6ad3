"""Run one generator process and measure its CPU: ``/proc/<pid>/stat`` samples while it runs
(utime + stime of that process, all its threads), and its total rusage from ``wait4``.

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

    def utilisation(self, t_from: float, t_to: float) -> float | None:
        """CPU seconds per wall second between the first sample >= t_from and the last <= t_to."""
        inside = [s for s in self.samples if t_from <= s[0] <= t_to]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)


def run_measured(
    command: list[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    preexec_fn=None,
    interval_s: float = 0.25,
) -> Measured:
    """Run ``command`` to completion (killed after ``timeout_s``), sampling its CPU."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.time_ns()}"
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            command, stdout=out, stderr=err, env=env, cwd=cwd, preexec_fn=preexec_fn
        )
        samples: list[tuple[float, float]] = []
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
    )


def cpu_per_1k(
    m: Measured, *, requests: int, rate_per_s: float, t_from: float, t_to: float
) -> dict[str, float | None]:
    """``steady`` and ``total`` CPU seconds per 1,000 requests (see the module docstring)."""
    util = m.utilisation(t_from, t_to)
    steady = util / rate_per_s * 1000 if util is not None and rate_per_s > 0 else None
    total = m.cpu_total_s / requests * 1000 if requests > 0 else None
    return {"steady": steady, "total": total, "utilisation": util}
