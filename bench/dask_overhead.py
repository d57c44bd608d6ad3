"""Why two Dask workers hold less than two plain processes on a small machine.

``python -m bench.dask_overhead [--rate 6000] [--repeats 5] [--duration 8]`` starts nginx
on 127.0.0.1 (pinned to the first core) and runs, interleaved, ``repeats`` times each:

* ``dask``: ``bench.engine_trial --workers 2`` (two shards on the engine's local Dask
  cluster, ``rate`` in all);
* ``plain``: two ``bench.engine_trial`` processes side by side, ``rate / 2`` each.

Both send the same open-loop schedule with the same engine code; only the process that
hosts each shard differs. For every shard it reports the schedule lag p99 (the engine's
"held" test: < 10 ms), and, from ``/proc/<pid>/task/<tid>/schedstat`` over the steady
part of the load, the shard thread's CPU time and its time waiting on the CPU run queue,
per second of load. Writes ``bench/results/dask-overhead-<UTC>.json`` and prints a table.
Loopback only, bounded in time (about 25 s per pair).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.servers import Nginx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HELD_LAG_S = 0.010


def _schedstat(pid: int) -> dict[int, tuple[int, int]]:
    """tid -> (ns on CPU, ns waiting on the run queue) for every thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            run_ns, wait_ns, _ = (int(v) for v in (task / "schedstat").read_text().split())
        except (OSError, ValueError):
            continue
        out[int(task.name)] = (run_ns, wait_ns)
    return out


class Sampler(threading.Thread):
    """Samples the schedstat of every Python descendant of this process every 0.25 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, dict[int, dict[int, tuple[int, int]]]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            pids = [int(p) for p in _children_tree(os.getpid())]
            self.samples.append((time.monotonic(), {p: _schedstat(p) for p in pids}))

    def window(self, pid: int, t0: float, t1: float) -> dict[str, float] | None:
        """The busiest thread of ``pid`` between ``t0`` and ``t1`` (monotonic): CPU and
        run-queue wait, each in seconds per second."""
        inside = [(t, s[pid]) for t, s in self.samples if pid in s and t0 <= t <= t1]
        if len(inside) < 2:
            return None
        (ta, a), (tb, b) = inside[0], inside[-1]
        busiest = max(b, key=lambda tid: b[tid][0] - a.get(tid, (0, 0))[0])
        run = (b[busiest][0] - a.get(busiest, (0, 0))[0]) / 1e9 / (tb - ta)
        wait = (b[busiest][1] - a.get(busiest, (0, 0))[1]) / 1e9 / (tb - ta)
        return {"cpu_per_s": run, "runqueue_wait_per_s": wait}


def _children_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids: list[int] = []
        for task in Path(f"/proc/{p}/task").glob("*"):  # children are per spawning thread
            try:
                kids += [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
        out += kids
        todo += kids
    return out


def _trial(
    url: str, rate: float, duration: float, workers: int, tmp: Path, tag: str
) -> tuple[subprocess.Popen[bytes], Path]:
    result = tmp / f"{tag}.json"
    cmd = [sys.executable, "-m", "bench.engine_trial", "--url", url, "--rate", f"{rate:g}",
           "--duration", f"{duration:g}", "--timeout", "5", "--max-in-flight", "1000",
           "--result", str(result)]  # fmt: skip
    cmd += ["--workers", str(workers)] if workers > 1 else []
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / f"{tag}.err").open("wb")
    )
    return proc, result


def _shards(
    doc: dict[str, Any], pids: list[int], sampler: Sampler, duration: float
) -> list[dict[str, Any]]:
    s = doc["summary"]
    start = doc["start_monotonic"]
    per = s.get("per_worker") or [s]
    out = []
    for w, pid in zip(per, pids, strict=False):
        cpu = sampler.window(pid, start + 1.0, start + duration - 0.5) or {}
        out.append({"lag_p99_s": w.get("schedule_lag_p99"), "loop_busy": w.get("loop_busy"),
                    "achieved_per_s": w.get("achieved_rate_per_s"), **cpu})  # fmt: skip
    return out


def run_pair(url: str, rate: float, duration: float, tmp: Path) -> dict[str, Any]:
    """One ``dask`` run and one ``plain`` run, back to back."""
    out: dict[str, Any] = {}
    for kind in ("dask", "plain"):
        sampler = Sampler()
        sampler.start()
        if kind == "dask":
            runs = [_trial(url, rate, duration, 2, tmp, "dask")]
        else:
            runs = [_trial(url, rate / 2, duration, 1, tmp, f"plain{i}") for i in (0, 1)]
        for proc, _ in runs:
            proc.wait(timeout=duration + 120)
        sampler.stop.set()
        sampler.join()
        shards: list[dict[str, Any]] = []
        for proc, path in runs:
            doc = json.loads(path.read_text())
            pids = doc.get("worker_pids") or [proc.pid]
            shards += _shards(doc, pids, sampler, duration)
        lag = max((sh["lag_p99_s"] or 0.0) for sh in shards)
        out[kind] = {"shards": shards, "worst_lag_p99_s": lag, "held": lag < HELD_LAG_S}
        time.sleep(1.0)
    return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if isinstance(v, int | float)]
    return statistics.fmean(vals) if vals else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def report(doc: dict[str, Any]) -> str:
    lines = [f"rate {doc['rate']:g}/s in all, {doc['duration_s']:g} s, {doc['repeats']} pairs",
             "| config | held | worst lag p99 (median, range) | shard CPU (s/s) | "
             "run-queue wait (s/s) |", "|---|---:|---|---:|---:|"]  # fmt: skip
    for kind in ("dask", "plain"):
        runs = [p[kind] for p in doc["pairs"]]
        lags = sorted(r["worst_lag_p99_s"] * 1e3 for r in runs)
        shards = [sh for r in runs for sh in r["shards"]]
        cpu, wait = (
            _mean([s.get("cpu_per_s") for s in shards]),
            _mean([s.get("runqueue_wait_per_s") for s in shards]),
        )
        lines.append(
            f"| {kind} | {sum(r['held'] for r in runs)}/{len(runs)} | "
            f"{statistics.median(lags):.1f} ms ({lags[0]:.1f}–{lags[-1]:.1f}) | "
            f"{_fmt(cpu)} | {_fmt(wait)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dask_overhead", description=__doc__)
    p.add_argument("--rate", type=float, default=6000.0, help="requests per second, in all")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0)
    ns = p.parse_args(argv)
    if not Path("/proc/self/task").is_dir():
        print("bench.dask_overhead needs Linux /proc (schedstat)", file=sys.stderr)
        return 2
    doc: dict[str, Any] = {"rate": ns.rate, "duration_s": ns.duration, "repeats": ns.repeats,
                           "cores": os.cpu_count(), "pairs": []}  # fmt: skip
    with Nginx(core=0) as ng, tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        for i in range(ns.repeats):
            pair = run_pair(ng.url, ns.rate, ns.duration, Path(tmp))
            doc["pairs"].append(pair)
            d, q = (pair[k]["worst_lag_p99_s"] * 1e3 for k in ("dask", "plain"))
            print(f"pair {i + 1}: worst lag p99 dask {d:.1f} ms, plain {q:.1f} ms", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"dask-overhead-{stamp}.json").write_text(json.dumps(doc, indent=2))
    print(report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
