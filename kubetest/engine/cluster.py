"""Shards on Dask distributed: the load of one plan spread over processes or machines.

No home-made master/worker protocol (README "More load than one machine: Dask"):
each shard is one ``client.submit(run_shard, ...)``-style task, pinned to its
own worker, started at a common instant; Dask gives the transport, the dashboard, and
deployment on Kubernetes (dask-kubernetes operator, Helm chart).

Clusters:

* ``workers=N``: a ``LocalCluster`` of N worker processes × 1 thread on 127.0.0.1,
  created once per Python process and reused (a B1 sweep runs many load steps; starting
  processes for each costs ~1 s). Configured for measurement: the worker profiler is off
  (its 10 ms stack sampler takes the GIL from the shard's event loop),
  ``allowed-failures: 0`` (a shard whose worker died must never be re-run, late, on
  another one), workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process
  group; the client coordinates the stop). The dashboard listens on a free loopback port
  when bokeh is installed.
* ``scheduler="tcp://host:8786"``: a client of an existing cluster, one shard per worker
  (start workers with ``--nthreads 1``; they need this package, same version).

Clock: the start instant is chosen on the client's clock. Each worker's offset is measured
through the scheduler (``Client.run(time.time)``, NTP-style: of several round trips the
fastest one, offset = worker time - midpoint, uncertainty = half its round trip) and the
start instant is translated to the worker's clock when the offset exceeds its uncertainty.
Latency (done - intended) is read on one worker's clock, so an offset cannot bias it; it
would misalign the shards' slices of the schedule, hence the correction and the warning
above ``judge.CLOCK_WARN_S`` (5 ms).

Records: each shard streams CSV as it goes (a killed worker keeps what it flushed) and
converts to ``part-<k>.parquet`` at its end. On the local cluster that happens in the run's
records folder; on a remote one in a temporary folder on the worker, the Parquet part then
shipped back in the task's result (default) or written to ``records_url`` (fsspec: a
shared path, streamed live, or an object store, uploaded at the end) and copied into the
records folder. A shard whose worker died is reported lost with the records it had flushed
where they can be reached (local cluster, shared path); shipped back or uploaded parts
die with their worker.

Stop: two Dask Events per run (stop, force) that a watcher thread on each worker
long-polls; a task cancelled by the client (or released when the client disconnects) also
stops its shard, so a vanished client never leaves load running. The SLO abort
(``engine.abort``) is judged by each shard on its own share of the load; a shard that
aborts sets its token, and its watcher relays that to the run's stop Event, so every
other shard stops too (their results say ``interrupted``; the run says ``aborted``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubetest.engine.plan import LoadPlan
from kubetest.engine.progress import REFRESH_S, Display, NullDisplay, Snapshot
from kubetest.engine.records import csv_to_parquet, part_name, read_records
from kubetest.engine.result import ShardResult, result_from_records
from kubetest.engine.shard import run_shard
from kubetest.engine.stop import StopToken
from kubetest.errors import KubetestError

#: The common start is this far after the tasks are submitted (covers submission latency).
START_DELAY_S = 1.0
#: Round trips to each worker when measuring its clock offset (the fastest one counts).
CLOCK_ROUNDS = 8
#: How long to wait for the cluster's workers to be there.
WORKER_WAIT_S = 30.0
#: How long to keep trying to reach an existing cluster's scheduler.
CONNECT_TIMEOUT_S = 15.0
#: How often the client checks that the shards' workers are still in the cluster.
LIVENESS_S = 0.5

_DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.worker.profile.enabled": False,
    "distributed.worker.daemon": False,
}


@dataclass
class Cluster:
    client: Any  # distributed.Client
    address: str
    dashboard_url: str | None
    local: bool  # our LocalCluster: its workers write into this machine's folders


@dataclass
class ShardRun:
    """One shard of a Dask run: where it ran, its clock, and what came back."""

    shard: int
    address: str
    host: str = ""
    clock_offset_s: float = 0.0
    clock_uncertainty_s: float = 0.0
    result: ShardResult | None = None
    lost: str | None = None  # why no result came back (worker died, task failed)
    part: str | None = None  # its records part in the records folder
    rows: int | None = None
    notes: list[str] = field(default_factory=list)


# -- clusters ----------------------------------------------------------------------------

_LOCAL: dict[str, Any] = {}
_LOCAL_LOCK = threading.Lock()


def _ignore_sigint() -> int:
    """Run on each worker's main thread (``Client.run``): Ctrl-C is the client's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return os.getpid()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _dashboard(client: Any) -> str | None:
    try:
        services = client.scheduler_info().get("services", {})
        if "dashboard" not in services:
            return None
        link = client.dashboard_link
    except Exception:
        return None
    return str(link) if link else None


def close_local_cluster() -> None:
    """Close the cached local cluster (at exit, or to start one of another size)."""
    with _LOCAL_LOCK:
        _close_local()


def _close_local() -> None:
    client, cluster = _LOCAL.pop("client", None), _LOCAL.pop("cluster", None)
    _LOCAL.clear()
    for thing in (client, cluster):
        if thing is not None:
            with contextlib.suppress(Exception):
                thing.close()


def local_client() -> Any | None:
    """The cached local cluster's client, if one is running (for tests and notebooks)."""
    return _LOCAL.get("client")


def local_cluster(n_workers: int) -> Cluster:
    """The process's local cluster of ``n_workers`` processes (created on first use)."""
    import dask
    from distributed import Client, LocalCluster

    with _LOCAL_LOCK:
        cluster = _LOCAL.get("cluster")
        if cluster is not None and (
            _LOCAL.get("n") != n_workers or cluster.status.name in ("closing", "closed", "failed")
        ):
            _close_local()
        if "cluster" not in _LOCAL:
            dashboard = "127.0.0.1:0" if _has_bokeh() else None
            with dask.config.set(_DASK_CONFIG):
                cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address=dashboard,
                    worker_dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                client = Client(cluster, set_as_default=False)
            _LOCAL.update(cluster=cluster, client=client, n=n_workers)
            if not _LOCAL.get("atexit"):
                atexit.register(close_local_cluster)
                _LOCAL["atexit"] = True
        cluster, client = _LOCAL["cluster"], _LOCAL["client"]
    client.wait_for_workers(n_workers, timeout=WORKER_WAIT_S)
    client.run(_ignore_sigint)  # again each run: the nanny restarts a killed worker afresh
    return Cluster(client, cluster.scheduler_address, _dashboard(client), local=True)


def connect(address: str) -> Cluster:
    """A client of an existing cluster (closed by ``run_on_dask`` after the run)."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise KubetestError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return Cluster(client, address, _dashboard(client), local=False)


@contextlib.contextmanager
def open_cluster(workers: int, scheduler: str | None) -> Iterator[Cluster]:
    """``scheduler`` given: a client of that cluster; else the local cluster of ``workers``."""
    cluster = connect(scheduler) if scheduler else local_cluster(workers)
    try:
        yield cluster
    finally:
        if not cluster.local:
            with contextlib.suppress(Exception):
                cluster.client.close()


def _pick_workers(cluster: Cluster, wanted: int) -> list[str]:
    """One worker per shard. An existing cluster with ``wanted`` <= 1 gives all its workers."""
    client = cluster.client
    need = max(1, wanted)
    try:
        client.wait_for_workers(need, timeout=WORKER_WAIT_S)
    except Exception:
        have = len(client.scheduler_info()["workers"])
        raise KubetestError(
            f"the Dask cluster at {cluster.address} has {have} workers after "
            f"{WORKER_WAIT_S:.0f} s; {need} are needed (one per shard)"
        ) from None
    addresses = sorted(client.scheduler_info()["workers"])
    return addresses if wanted <= 1 and not cluster.local else addresses[:need]


# -- on the workers ----------------------------------------------------------------------


def _probe() -> dict[str, Any]:
    """Import the engine's dependencies before the start instant; say who we are."""
    import aiohttp  # noqa: F401

    from kubetest import __version__

    return {"pid": os.getpid(), "host": socket.gethostname(), "version": __version__}


class _Watcher(threading.Thread):
    """Turns the run's Dask Events (and a cancelled task) into the shard's StopToken."""

    def __init__(self, run_id: str, token: StopToken) -> None:
        super().__init__(name=f"{run_id}-stop-watch", daemon=True)
        from distributed import Event, get_client, get_worker

        self.worker = get_worker()
        self.key = self.worker.get_current_task()
        client = get_client()
        self.stop_event = Event(f"{run_id}-stop", client=client)
        self.force_event = Event(f"{run_id}-force", client=client)
        self.token = token
        self.done = threading.Event()

    def _cancelled(self) -> bool:
        ts = self.worker.state.tasks.get(self.key)
        return ts is None or ts.state in ("cancelled", "released", "forgotten")

    def run(self) -> None:
        try:
            relayed = False
            while not self.done.is_set() and not self.token.is_set():
                if self.stop_event.wait(0.5) or self._cancelled():
                    self.token.set()
                    relayed = True
            if self.token.is_set() and not relayed:  # the shard stopped itself: its abort
                self.stop_event.set()
            while not self.done.is_set() and not self.token.is_forced():
                if self.force_event.wait(0.5) or self._cancelled():
                    self.token.force()
        except Exception:  # scheduler gone: the task is released and the worker stops it
            self.token.force()


def _shard_task(
    plan: LoadPlan,
    shard: int,
    n_shards: int,
    start_epoch: float,
    run_id: str,
    live_dir: str | None,
    upload_url: str | None,
    progress: bool,
) -> dict[str, Any]:
    """Run one shard on a Dask worker (see the module docstring for where records go)."""
    from distributed import Event, get_client, get_worker

    started = Event(f"{run_id}-started-{shard}", client=get_client())
    if started.is_set():  # never twice: a re-run would burst late arrivals at the target
        raise KubetestError(f"shard {shard} already ran on a worker that died")
    started.set()
    worker = get_worker()
    token = StopToken()
    watcher = _Watcher(run_id, token)
    watcher.start()
    topic = f"{run_id}-progress"

    def on_progress(snap: Snapshot) -> None:  # non-blocking: batched to the scheduler
        worker.log_event(topic, {"shard": shard, **asdict(snap)})

    tmp = None if live_dir else tempfile.mkdtemp(prefix=f"{run_id}-")
    folder = Path(live_dir or str(tmp))
    csv_path = folder / part_name(shard, ".csv")
    try:
        result = run_shard(
            plan,
            shard,
            n_shards,
            start_epoch,
            csv_path,
            stop=token,
            on_progress=on_progress if progress else None,
        )
    finally:
        watcher.done.set()
    out: dict[str, Any] = {"result": result, "data": None, "part": None, "rows": None}
    try:
        name = part_name(shard)
        if upload_url and not live_dir:  # an object store: upload the finished part
            import fsspec

            with fsspec.open(f"{upload_url.rstrip('/')}/{name}", "wb") as fh:
                out["rows"] = csv_to_parquet(csv_path, fh, shard=shard)
        else:
            out["rows"] = csv_to_parquet(csv_path, folder / name, shard=shard)
            if not live_dir:  # the default on a remote cluster: ship it back in the result
                out["data"] = (folder / name).read_bytes()
        csv_path.unlink()
        out["part"] = name
    except Exception as exc:  # keep the CSV (readable too); say why
        result.notes.append(f"shard {shard}: Parquet conversion failed ({exc}); kept CSV")
        out["part"] = csv_path.name
        if not live_dir:
            out["data"] = csv_path.read_bytes()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- on the client -----------------------------------------------------------------------


def measure_clocks(client: Any, addresses: list[str]) -> dict[str, tuple[float, float]]:
    """``{address: (offset_s, uncertainty_s)}``: worker clock minus client clock, measured
    through the scheduler (``Client.run`` is a scheduler broadcast)."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(CLOCK_ROUNDS):
        t0 = time.time()
        got = client.run(time.time, workers=addresses)
        t1 = time.time()
        half = (t1 - t0) / 2
        for address, t in got.items():
            if address not in best or half < best[address][1]:
                best[address] = (t - (t0 + half), half)
    return best


def _local_path(url: str) -> str | None:
    """The local path of a ``file://`` or plain-path fsspec URL, else None."""
    import fsspec.core

    protocol, path = fsspec.core.split_protocol(url)
    return path if protocol in (None, "file", "local") else None


def _aggregate(latest: dict[int, dict[str, Any]], elapsed: float, planned: float) -> Snapshot:
    def total(key: str) -> int:
        return sum(int(s.get(key) or 0) for s in latest.values())

    p95s = [s["p95_recent_s"] for s in latest.values() if s.get("p95_recent_s") is not None]
    return Snapshot(
        elapsed_s=elapsed,
        planned_s=planned,
        sent=total("sent"),
        completed=total("completed"),
        accepted=total("accepted"),
        not_sent=total("not_sent"),
        in_flight=total("in_flight"),
        p95_recent_s=max(p95s) if p95s else None,  # the worst shard's: conservative
    )


def _describe(exc: BaseException, address: str) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"worker {address} died while running the shard"
    if name == "CancelledError":
        return f"worker {address} left the cluster while running the shard"
    return f"{name}: {exc}"[:300]


def run_on_dask(
    plan: LoadPlan,
    cluster: Cluster,
    n_shards: int,
    records_dir: Path,
    *,
    stop: StopToken,
    display: Display,
    planned_s: float,
    records_url: str | None = None,
    start_delay_s: float = START_DELAY_S,
    on_start: Callable[[list[ShardRun]], None] | None = None,
) -> tuple[list[ShardRun], float]:
    """Run ``plan`` as shards on ``cluster``; records land in ``records_dir`` (Parquet parts).

    ``stop`` is set by the caller (signals); it is forwarded to the workers. Returns the
    shards (results, or why they were lost) and the start instant (client clock).
    """
    from distributed import Event

    client = cluster.client
    addresses = _pick_workers(cluster, n_shards)
    n_shards = len(addresses)
    try:
        probes = client.run(_probe, workers=addresses)
    except ModuleNotFoundError as exc:
        raise KubetestError(
            f"Dask workers cannot import {exc.name!r}: install kubetest-workbook on them"
        ) from None
    from kubetest import __version__

    for address, probe in probes.items():
        if probe["version"] != __version__:
            raise KubetestError(
                f"worker {address} runs kubetest {probe['version']}, this client {__version__}"
            )
    clocks = measure_clocks(client, addresses)
    shards = [
        ShardRun(k, a, probes[a]["host"], clocks[a][0], clocks[a][1])
        for k, a in enumerate(addresses)
    ]
    live_dir: str | None = str(records_dir) if cluster.local else None
    upload_url = None
    if records_url:
        live_dir = _local_path(records_url)
        upload_url = None if live_dir else records_url
        if live_dir:
            Path(live_dir).mkdir(parents=True, exist_ok=True)

    run_id = f"kubetest-{uuid.uuid4().hex[:12]}"
    latest: dict[int, dict[str, Any]] = {}
    topic = f"{run_id}-progress"
    show = not isinstance(display, NullDisplay)
    if show:
        client.subscribe_topic(topic, lambda event: latest.__setitem__(event[1]["shard"], event[1]))
    plan_ref = client.scatter(plan, workers=addresses, broadcast=True, hash=False)
    stop_event = Event(f"{run_id}-stop", client=client)
    force_event = Event(f"{run_id}-force", client=client)
    start_epoch = time.time() + start_delay_s
    futures = []
    for s in shards:
        shift = s.clock_offset_s if abs(s.clock_offset_s) > s.clock_uncertainty_s else 0.0
        futures.append(
            client.submit(
                _shard_task,
                plan_ref,
                s.shard,
                n_shards,
                start_epoch + shift,
                run_id,
                live_dir,
                upload_url,
                show,
                key=f"{run_id}-shard-{s.shard}",
                workers=[s.address],
                allow_other_workers=False,
                pure=False,
                retries=0,
            )
        )
    if on_start is not None:
        on_start(shards)
    try:
        _wait(client, shards, futures, stop, stop_event, force_event, display, latest,
              start_epoch, planned_s)  # fmt: skip
        for s, fut in zip(shards, futures, strict=True):
            _collect(s, fut, records_dir)
    finally:
        if show:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
        names = [f"{run_id}-stop", f"{run_id}-force"]
        names += [f"{run_id}-started-{s.shard}" for s in shards]
        for name in names:
            with contextlib.suppress(Exception):
                Event(name, client=client).clear()
        del futures, plan_ref
    if records_url:
        _fetch(shards, records_url, records_dir)
    for s in shards:
        if s.result is None:
            _recover(s, plan, n_shards, live_dir, records_dir)
    return shards, start_epoch


def _wait(
    client: Any,
    shards: list[ShardRun],
    futures: list[Any],
    stop: StopToken,
    stop_event: Any,
    force_event: Any,
    display: Display,
    latest: dict[int, dict[str, Any]],
    start_epoch: float,
    planned_s: float,
) -> None:
    """Poll until every shard ended: forward stops, notice dead workers, show progress."""
    stop_sent = force_sent = False
    next_check = next_show = 0.0
    while not all(f.done() for f in futures):
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:  # no handler of ours on this thread: still a clean stop
            stop.force() if stop.is_set() else stop.set()
        if stop.is_set() and not stop_sent:
            stop_event.set()
            stop_sent = True
        if stop.is_forced() and not force_sent:
            force_event.set()
            force_sent = True
        now = time.monotonic()
        if now >= next_check:
            next_check = now + LIVENESS_S
            alive = set(client.scheduler_info()["workers"])
            for s, f in zip(shards, futures, strict=True):
                if not f.done() and s.address not in alive:
                    s.lost = f"worker {s.address} left the cluster while running the shard"
                    f.cancel()
        if now >= next_show and latest:
            next_show = now + REFRESH_S
            display.update(_aggregate(latest, max(0.0, time.time() - start_epoch), planned_s))


def _collect(s: ShardRun, fut: Any, records_dir: Path) -> None:
    """Take a finished task's result; a shipped part is written into the records folder."""
    if fut.status != "finished":
        if s.lost is None:
            exc = fut.exception() if fut.status == "error" else None
            s.lost = _describe(exc, s.address) if exc else f"task {fut.status} on {s.address}"
        return
    out = fut.result()
    s.result, s.part, s.rows = out["result"], out["part"], out["rows"]
    if out["data"] is not None:
        (records_dir / s.part).write_bytes(out["data"])


def _fetch(shards: list[ShardRun], url: str, records_dir: Path) -> None:
    """Copy the parts written to ``records_url`` into the run's records folder."""
    import fsspec

    local = _local_path(url)
    if local and Path(local).resolve() == records_dir.resolve():
        return
    for s in shards:
        if s.result is None or not s.part:
            continue
        with (
            fsspec.open(f"{url.rstrip('/')}/{s.part}", "rb") as src,
            (records_dir / s.part).open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst)


def _recover(
    s: ShardRun, plan: LoadPlan, n_shards: int, live_dir: str | None, records_dir: Path
) -> None:
    """A lost shard: convert the CSV it had streamed (if reachable) and rebuild its counts."""
    csv_path = Path(live_dir) / part_name(s.shard, ".csv") if live_dir else None
    if csv_path is None or not csv_path.exists():
        s.notes.append(
            f"shard {s.shard} lost ({s.lost}); its records were on that worker and are lost "
            "(set generator.records_url to a shared path to keep them)"
        )
        return
    dest = records_dir / part_name(s.shard)
    s.rows = csv_to_parquet(csv_path, dest, shard=s.shard)
    csv_path.unlink()
    s.part = dest.name
    note = (
        f"shard {s.shard} lost ({s.lost}): {s.rows} records flushed before it died are "
        "kept and counted; requests in flight then were never recorded"
    )
    s.result = result_from_records(read_records(dest), plan, s.shard, n_shards, note=note)
