"""Open loop without a task per request: the dispatcher writes onto pooled connections.

Why (issue 21): with the fast client, an ``asyncio`` task per request (its coroutine,
the client's future and timer, the task's done callback, the set of tasks) cost about as
much CPU as the HTTP work itself: the loop was fully busy near 13,000 req/s. Here the
dispatcher renders the body and writes it straight onto an idle kept-alive connection
(``FastClient.send_now``); the connection's protocol calls ``_direct_done`` when the
answer is whole (or failed, timed out, was cancelled), which records the request as
``shard._request`` would: the same columns, outcomes, error classes, lag and latency
(from the intended send time), the same in-flight cap and late/dropped arrivals.

An arrival that finds no idle connection (the run's first ones, or after the server closed
some) and any failure before sending (the payload, a missing token) go the task path,
``shard._request``, which connects, waits for a slot and records failures as before.
The aiohttp client and closed loop always take the task path.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np

from kubetest.engine.client import auth_header, classify
from kubetest.engine.fastclient import FastClient, header_lines

#: Shortest dispatcher sleep; arrivals due meanwhile go out together on waking.
MIN_SLEEP_S = 0.001
#: At most this many arrivals are handled before the dispatcher yields to the loop.
BATCH = 256
#: Schedule offsets are read as Python floats this many at a time (not the whole run's).
CHUNK = 4096
#: Connections opened before the start: this many seconds of arrivals (at least WARM_MIN),
#: if there is time before the start instant (it is kept WARM_MARGIN_S clear).
WARM_S, WARM_MIN, WARM_MARGIN_S = 0.005, 8, 0.02


class DirectOpen:
    """The open-loop dispatcher of ``shard._Shard`` for a client with ``send_now``
    (a mixin: it reads and updates the shard's counters, as ``_request`` does)."""

    direct: FastClient | None = None
    # provided by the shard
    offsets: Any
    shard: int
    n_shards: int
    cap: int
    plan: Any
    t0: float
    in_flight: int
    max_in_flight_seen: int
    dispatched: int
    last_sent: float
    first_intended: float
    stopping: bool
    scheduled: int
    pending: dict[int, float]
    lag_by_second: list[float]
    lag: Any
    headers_env: str | None
    watch: Any
    decider: Any
    sampler: Any
    not_sent: int
    errors: dict[str, int]
    # and its methods: now, _not_sent, _spawn, _request (the task path), _error_of,
    # _write (records)

    async def _warm_up(self, client: FastClient, rate: float | None) -> None:
        """Before the start instant, open the connections the first arrivals will need
        (``FastClient.warm``): ``WARM_S`` of the rate's arrivals, within the cap, in the
        time left before the start (less ``WARM_MARGIN_S``)."""
        left = -self.now() - WARM_MARGIN_S
        if left <= 0 or not rate:
            return
        await client.warm(min(self.cap, max(WARM_MIN, math.ceil(rate * WARM_S))), left)

    async def _dispatch_direct(self, client: FastClient) -> None:
        """``_dispatch_open`` with requests written by the dispatcher itself."""
        offsets = self.offsets
        n = len(offsets)
        shard, step, cap, max_lag = self.shard, self.n_shards, self.cap, self.plan.max_lag_s
        if n:
            self.first_intended = float(offsets[0])
        body_of = self.plan.payload.body
        send_now, done_cb = client.send_now, self._direct_done
        perf, t0 = time.perf_counter, self.t0
        track = self.watch is not None or self.decider is not None  # they read ``pending``
        lag_add, by_second = self.lag.add, self.lag_by_second
        n_seconds = len(by_second)
        i = base = 0
        chunk: list[float] = []  # offsets[base:], as floats (the schedule stays an array)
        while i < n and not self.stopping:
            if i - base >= len(chunk):
                base, chunk = i, offsets[i : i + CHUNK].tolist()
            now = perf() - t0
            due = chunk[i - base]
            if due > now:
                # never a sub-ms sleep: uvloop turns it into a busy spin, epoll rounds it up
                await asyncio.sleep(min(max(due - now, MIN_SLEEP_S), 0.05))
                continue
            if now - due > max_lag:
                i = self._skip_late(i, now)
                continue
            end = min(i + BATCH, base + len(chunk))
            while i < end:
                intended = chunk[i - base]
                if intended > now:
                    break
                seq = shard + i * step
                i += 1
                if self.in_flight >= cap:
                    self._not_sent(seq, intended, now, "dropped")
                    continue
                try:
                    body, alert_type, fp = body_of(seq)
                    env = self.headers_env
                    extra = header_lines(auth_header(env)) if env else b""
                except Exception:  # recorded by the task path, which meets it again
                    self._spawn(self._request(seq, intended, shard))
                    continue
                sent = perf() - t0
                if not send_now(body, extra, done_cb, (seq, intended, sent, alert_type, fp)):
                    self._spawn(self._request(seq, intended, shard))  # connects or waits
                    continue
                self.in_flight += 1
                if self.in_flight > self.max_in_flight_seen:
                    self.max_in_flight_seen = self.in_flight
                self.dispatched += 1
                if sent > self.last_sent:
                    self.last_sent = sent
                lag = sent - intended
                lag_add(lag)
                sec = int(intended)
                if 0 <= sec < n_seconds and lag > by_second[sec]:
                    by_second[sec] = lag
                if track:
                    self.pending[seq] = intended
            if i == end:  # a full batch: let the loop read answers before the next one
                await asyncio.sleep(0)
        self.scheduled = i

    def _skip_late(self, i: int, now: float) -> int:
        """Give up, as ``late``, every arrival from ``i`` on that is more than ``max_lag_s``
        behind ``now``; the index of the first one that is not. Why in one pass: a
        saturated generator (asked for 10x what it can send) would otherwise spend its
        CPU recording hundreds of thousands of late arrivals one call each. Those the
        record sampler keeps get their record (``_not_sent``); the rest are only counted."""
        offsets, step = self.offsets, self.n_shards
        j = int(np.searchsorted(offsets, now - self.plan.max_lag_s, side="left"))
        j = max(j, i + 1)  # offsets[i] is late: at least it
        every = self.sampler.every
        first_kept = i + (-i) % every  # sampled by arrival number (RecordSampler.keep)
        kept = range(first_kept, j, every)
        for k in kept:
            self._not_sent(self.shard + k * step, float(offsets[k]), now, "late")
        skipped = (j - i) - len(kept)
        if skipped:
            self.sampler.seen += skipped
            self.not_sent += skipped
            self.errors["late"] = self.errors.get("late", 0) + skipped
        return j

    def _direct_done(
        self, ctx: tuple[int, float, float, str, str], status: int, data: bytes,
        exc: BaseException | None,
    ) -> None:  # fmt: skip
        """A request sent by ``_dispatch_direct`` ended: record it as ``_request`` does."""
        done = time.perf_counter() - self.t0
        seq, intended, sent, alert_type, fp = ctx
        self.in_flight -= 1
        if exc is None:
            outcome, error = classify(self.plan.api, status, data)
        else:
            outcome = "failed"
            cancelled = isinstance(exc, asyncio.CancelledError)
            error = "cancelled" if cancelled else self._error_of(exc)
        if self.pending:
            self.pending.pop(seq, None)
        self._write(seq, self.shard, intended, sent, done, status, outcome, error, alert_type, fp)

    def _cancel_direct(self) -> None:
        """End the requests still out as ``cancelled`` (the drain's grace is over)."""
        if self.direct is not None:
            self.direct.cancel_all()
