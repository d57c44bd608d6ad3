"""Locust user for the benchmark: POST the same webhook body the engine sends.

Driven by environment variables (set by ``bench.peers.run_locust``):
``BENCH_BODY_FILE`` (the body), ``BENCH_PATH``, ``BENCH_TIMEOUT`` (s),
``BENCH_USER_RATE`` (requests per second per user; 0 = as fast as answers come back) and
``BENCH_LATENCY_OUT``: where to write exact latency percentiles at exit. Locust's own
statistics round response times to two significant digits above 100 ms (2.0 s is
reported as "2000" and 2.04 s as "2000" too), too coarse for an error of a few percent,
so a request listener keeps every response time (ms, float) and writes p50/p90/p99/max.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task

_BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
_PATH = os.environ.get("BENCH_PATH", "/webhook/prometheus")
_RATE = float(os.environ.get("BENCH_USER_RATE", "0"))
_TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "10"))
_OUT = os.environ.get("BENCH_LATENCY_OUT")
_HEADERS = {"Content-Type": "application/json"}
_TIMES = array("d")  # response times (ms) of successful requests


@events.request.add_listener
def _record(response_time: float, exception: Any = None, **_: Any) -> None:
    if exception is None:
        _TIMES.append(response_time)


@events.quitting.add_listener
def _write(**_: Any) -> None:
    if not _OUT or not _TIMES:
        return
    ordered = sorted(_TIMES)
    n = len(ordered)

    def pct(q: float) -> float:  # nearest rank, seconds
        return ordered[min(n - 1, max(0, int(round(q * n + 0.5)) - 1))] / 1000

    doc = {"n": n, "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": ordered[-1] / 1000}
    Path(_OUT).write_text(json.dumps(doc))


class WebhookUser(FastHttpUser):
    wait_time = constant_throughput(_RATE) if _RATE > 0 else constant(0)
    network_timeout = _TIMEOUT
    connection_timeout = _TIMEOUT

    @task
    def post(self) -> None:
        self.client.post(_PATH, data=_BODY, headers=_HEADERS)
