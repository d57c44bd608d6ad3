"""Where a plan's shards run: in this process or on Dask, behind one interface.

As httpx puts its transports behind one ``handle_request``, ``run_load`` hands a plan to a
``Runner`` and gets back ``ShardRuns`` (a ``ShardResult`` per shard that returned, a
``ShardInfo`` per shard run) whichever runner ran it. ``InProcessRunner`` calls
``run_shard`` once, in a thread, so a notebook's running event loop and the main thread's
signals both work; ``DaskRunner`` spreads the plan over a Dask cluster (``engine.cluster``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubetest.engine.plan import LoadPlan, planned_s
from kubetest.engine.progress import Display, in_notebook
from kubetest.engine.result import ShardInfo, ShardResult
from kubetest.engine.shard import run_shard
from kubetest.engine.stop import Stopper, StopToken, routed_signals
from kubetest.errors import KubetestError


@dataclass
class ShardRuns:
    """What a runner hands back: every shard's result and where each shard ran."""

    results: list[ShardResult]  # the shards that returned (or whose records were rebuilt)
    shards: list[ShardInfo]  # one per shard run, lost ones included
    start_epoch: float  # the common start instant, on the client's clock
    dashboard_url: str | None = None
    cluster: str | None = None  # the Dask scheduler's address


@dataclass(frozen=True)
class RunControl:
    """How a run is stopped and shown, the same for every runner."""

    token: StopToken  # set to stop the shards
    stopper: Stopper  # what SIGINT/SIGTERM call while the run lasts
    display: Display  # progress


class Runner(Protocol):
    """Runs a plan's shards; ``run_load`` needs nothing else of it."""

    def records_path(self, out_dir: Path, name: str) -> Path:
        """Where this runner's records go: a CSV file, or a folder of Parquet parts."""
        ...

    def run(self, plan: LoadPlan, records_path: Path, control: RunControl) -> ShardRuns: ...


# -- one process: run_shard in a thread, so a notebook's running loop and signals both work --


@dataclass
class InProcessRunner:
    start_delay_s: float = 0.3

    def records_path(self, out_dir: Path, name: str) -> Path:
        return out_dir / f"{name}.csv"

    def run(self, plan: LoadPlan, records_path: Path, control: RunControl) -> ShardRuns:
        token, stopper, display = control.token, control.stopper, control.display
        start_epoch = time.time() + self.start_delay_s
        with routed_signals(stopper):
            result = _run_in_thread(
                lambda: run_shard(
                    plan, 0, 1, start_epoch, records_path, stop=token, on_progress=display.update
                ),
                stopper,
            )
        return ShardRuns([result], [ShardInfo(0)], start_epoch)


def _run_in_thread(fn: Callable[[], ShardResult], stopper: Stopper) -> ShardResult:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kubetest-load", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:  # a handler we could not replace (not the main thread...)
            stopper()
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- several processes or machines: Dask (engine/cluster.py) --------------------------------


@dataclass
class DaskRunner:
    """``workers`` shards on a local Dask cluster, or on the one at ``scheduler``."""

    workers: int
    scheduler: str | None = None
    records_url: str | None = None  # where remote workers write their parts (engine.cluster)
    progress: bool | None = None
    start_delay_s: float = 0.3

    def records_path(self, out_dir: Path, name: str) -> Path:
        return out_dir / name

    def run(self, plan: LoadPlan, records_path: Path, control: RunControl) -> ShardRuns:
        token, stopper, display = control.token, control.stopper, control.display
        from kubetest.engine import cluster as dask_cluster

        _prepare_folder(records_path)
        with dask_cluster.open_cluster(self.workers, self.scheduler) as cl:
            _announce(cl.dashboard_url, self.progress)
            with routed_signals(stopper):
                shards, start_epoch = dask_cluster.run_on_dask(
                    plan,
                    cl,
                    self.workers,
                    records_path,
                    stop=token,
                    display=display,
                    planned_s=planned_s(plan),
                    records_url=self.records_url,
                    start_delay_s=max(self.start_delay_s, dask_cluster.START_DELAY_S),
                )
        results = [s.result for s in shards if s.result is not None]
        infos = [
            ShardInfo(
                s.shard, s.address, s.clock_offset_s, s.clock_uncertainty_s, s.lost, s.part, s.notes
            )
            for s in shards
        ]
        if not results:
            raise KubetestError(
                "every load shard failed: " + "; ".join(f"{i.shard}: {i.lost}" for i in infos)
            )
        return ShardRuns(results, infos, start_epoch, cl.dashboard_url, cl.address)


def _announce(url: str | None, progress: bool | None) -> None:
    """The Dask dashboard link: a link in a notebook, a line on the terminal."""
    if not url or progress is False:
        return
    if in_notebook():
        from html import escape

        from IPython.display import HTML, display

        link = escape(url, quote=True)
        display(HTML(f'Dask dashboard (live while the load runs): <a href="{link}" '
                     f'target="_blank">{link}</a>'))  # fmt: skip
    else:
        sys.stderr.write(f"kubetest: Dask dashboard {url}\n")


def _prepare_folder(folder: Path) -> None:
    """A fresh records folder: parts of an earlier run of the same name would mix in."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("part-*.parquet"), *folder.glob("part-*.csv")]:
        old.unlink()
