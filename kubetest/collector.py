"""The garbage collector kept quiet during timed work: a load shard's run and A3's probes.

Why: CPython's cyclic collector scans, in a generation-2 collection, every container object
of the process: ~73,000 once the engine, aiohttp, numpy and pandas are imported (20 ms per
full collection; more with a bigger heap). Measured in benchmark runs against nginx: gen-2 pauses
of 33-62 ms, and in a disturbed 5,000 req/s run whose in-flight count reached the cap,
1,716 gen-0, 156 gen-1 and 14 gen-2 collections (longest 217 ms, 0.87 s in all) - each
pause a burst of schedule lag that grows the in-flight count that feeds the collector (the
issue's bar is lag p99 < 10 ms). So for the run: collect once (before the start instant),
``gc.freeze()`` what exists then - modules, the plan, a notebook's data - which no later
collection scans again (a full collection after the freeze: 0.001 ms), and raise the
thresholds (RUN_GC_THRESHOLDS; CPython's default is 700, 10, 10) so young collections come
14x less often and a full one (now only the run's own objects) 10x less often still. The
same run then did 15 gen-0, 1 gen-1 and no gen-2 collection. Over 3 repetitions per rate
on the loaded 2-core box, 6,000 req/s held (lag p99 < 10 ms, not saturated) 3 of 3 times
with these settings, 1 of 3 with only the freeze and 1 of 3 with neither. Collection stays
enabled so the run's own cycles are reclaimed: 40,000 timed-out requests (1 s timeout, all
surviving into the older generations) left ~100 objects of cyclic garbage, the same RSS as
with the default settings. Afterwards the previous state comes back (thresholds, enabled,
nothing left frozen that was not frozen before), even on an error or an interrupt, and one
collection reclaims what the run left. Several shards in one process share one period.

A3's probe loop runs in a notebook kernel (~225,000 container objects): there each full
collection took 110-140 ms, and every probe gap over A3's downtime budget in a `make report`
run (four, 0.13-0.19 s, against 0.085 s) was one of them, so its window is kept quiet too,
without the collection first (``start_epoch`` now): in a big process it cost 0.4 s and
would have started the window late.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

#: Collector thresholds during the work (see ``quiet_gc``): (gen0, gen1, gen2).
RUN_GC_THRESHOLDS = (10_000, 10, 100)
#: A full collection before the freeze only when the start is at least this far off.
GC_COLLECT_BEFORE_S = 0.15

_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[bool, tuple[int, int, int], int] | None = None


@contextlib.contextmanager
def quiet_gc(start_epoch: float | None = None) -> Iterator[None]:
    """Freeze the heap and raise the collector's thresholds for the duration (see above)."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
            if start_epoch is None or start_epoch - time.time() >= GC_COLLECT_BEFORE_S:
                gc.collect()
            gc.freeze()
            gc.set_threshold(*RUN_GC_THRESHOLDS)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                enabled, thresholds, frozen_before = _gc_saved
                _gc_saved = None
                gc.set_threshold(*thresholds)
                if frozen_before == 0:  # else someone froze on purpose before us: keep it
                    gc.unfreeze()
                (gc.enable if enabled else gc.disable)()
                if enabled:
                    gc.collect()
