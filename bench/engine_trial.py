"""One engine trial in its own process (so its CPU is its own, and it can be pinned):
``python -m bench.engine_trial --url URL --rate R --duration D --result FILE [...]``.

Runs ``kubetest.engine.run_load`` with an open-loop constant schedule and writes to FILE:
the engine's summary, the clock readings that place the run on the system's monotonic
clock (for the parent's CPU sampling window), the rusage of the run itself, and latency
percentiles recomputed from the per-request records (a cross-check of the engine's HDR
summary). ``--profile FILE`` runs the load under cProfile (diagnosis only: it slows it).

``--workers N`` (N > 1) runs the load as N shards on the engine's local Dask cluster
(``run_load(..., workers=N)``). The cluster is started before the load, so the FILE also
names the worker processes' pids (the parent sums their CPU) and their start-up time;
records are then a folder of Parquet parts, checked the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _records_check(path: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    if path.is_dir():  # sharded: one Parquet part per worker
        from kubetest.engine.records import read_records

        df = read_records(path)[["latency_s", "service_s", "lag_s", "outcome", "error"]]
    else:
        df = pd.read_csv(path, usecols=["latency_s", "service_s", "lag_s", "outcome", "error"])
    sent = df[~df["error"].fillna("").isin(["late", "dropped", "cancelled"])]
    ok = sent[sent["outcome"] == "accepted"]
    out: dict[str, Any] = {"rows": len(df), "sent": len(sent), "accepted": len(ok)}
    if len(ok):
        lat = ok["latency_s"].to_numpy()
        out.update(
            p50=float(np.quantile(lat, 0.50)),
            p99=float(np.quantile(lat, 0.99)),
            max=float(lat.max()),
            service_p50=float(np.quantile(ok["service_s"].to_numpy(), 0.50)),
            service_p99=float(np.quantile(ok["service_s"].to_numpy(), 0.99)),
            over_half_s=float((lat > 0.5).mean()),
        )
    if len(sent):
        out["lag_p99"] = float(np.quantile(sent["lag_s"].to_numpy(), 0.99))
    return out


def _profile(plan: Any, tmp: Path, out: str) -> None:
    """cProfile the shard itself: ``run_load`` runs it in a thread, which cProfile (one
    thread) would not see, so call ``run_shard`` in this thread, as ``run_load`` does."""
    import cProfile

    from kubetest.engine import run_shard

    prof = cProfile.Profile()
    result = prof.runcall(run_shard, plan, 0, 1, time.time() + 0.3, tmp / "records.csv")
    prof.dump_stats(out)
    print(
        json.dumps(
            {
                "dispatched": result.dispatched,
                "completed": result.completed,
                "errors": result.errors,
                "loop_busy": result.loop_busy,
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.engine_trial", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, required=True, help="open loop, requests per second")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--max-in-flight", type=int, default=2000)
    p.add_argument("--workers", type=int, default=1, help="shards on a local Dask cluster")
    p.add_argument("--client", default="fast", help="the engine's HTTP client: fast or aiohttp")
    p.add_argument("--result", required=True, help="write the trial's JSON here")
    p.add_argument("--profile", default=None, help="cProfile the run into this file")
    ns = p.parse_args(argv)

    from kubetest.engine import LoadPlan, run_load, schedule
    from kubetest.payloads import PayloadFactory

    if not ns.url.startswith(("http://127.", "http://localhost")):
        raise SystemExit("bench.engine_trial only loads loopback servers")
    plan = LoadPlan(
        url=ns.url,
        api="webhook",
        mode="open",
        schedule=schedule.constant(ns.rate, ns.duration),
        timeout_s=ns.timeout,
        max_in_flight=ns.max_in_flight,
        payload=PayloadFactory(["high_memory"]),
        client=ns.client,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    worker_pids: list[int] = []
    cluster_start_s = None
    try:
        if ns.workers > 1:
            import os

            from kubetest.engine.cluster import local_cluster

            t = time.monotonic()
            cl = local_cluster(ns.workers)  # cached: run_load below runs on these workers
            worker_pids = sorted(cl.client.run(os.getpid).values())
            cluster_start_s = time.monotonic() - t
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        mono0, wall0 = time.monotonic(), time.time()
        if ns.profile:
            _profile(plan, tmp, ns.profile)
            return
        result = run_load(plan, tmp, name="records", workers=ns.workers, progress=False)
        mono1 = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        summary = result.summary
        start_epoch = float(summary.get("start_epoch") or wall0)
        rpath = result.records_path
        if rpath.is_dir():
            parts = sorted(rpath.glob("part-*"))
            records_bytes = sum(f.stat().st_size for f in parts)
            records_format = "parquet" if all(f.suffix == ".parquet" for f in parts) else "mixed"
        else:
            records_bytes = rpath.stat().st_size if rpath.exists() else 0
            records_format = "csv"
        doc = {
            "summary": summary,
            "workers": ns.workers,
            "worker_pids": worker_pids,
            "cluster_start_s": cluster_start_s,
            # the run's common start instant, on the monotonic clock the parent samples with
            "start_monotonic": mono0 + (start_epoch - wall0),
            "run_load_monotonic": [mono0, mono1],
            # this process only (with --workers N the load runs in the worker processes)
            "cpu_run_load_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
            "cpu_run_load_sys_s": ru1.ru_stime - ru0.ru_stime,  # the kernel's share (syscalls)
            # peak RSS of this process (the engine's, in-process runs): bounded memory
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "records_bytes": records_bytes,
            "records_format": records_format,
            "records_check": _records_check(rpath) if rpath.exists() else {},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(ns.result).write_text(json.dumps(doc, default=str) + "\n")


if __name__ == "__main__":
    main()
