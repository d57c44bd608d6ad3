"""Locust user for the benchmark: POST the same webhook body the engine sends.

Driven by environment variables (set by ``bench.peers.run_locust``):
``BENCH_BODY_FILE`` (the body), ``BENCH_PATH``, ``BENCH_TIMEOUT`` (s), and
``BENCH_USER_RATE`` (requests per second per user; 0 = as fast as answers come back).
"""

from __future__ import annotations

import os
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, task

_BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
_PATH = os.environ.get("BENCH_PATH", "/webhook/prometheus")
_RATE = float(os.environ.get("BENCH_USER_RATE", "0"))
_TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "10"))
_HEADERS = {"Content-Type": "application/json"}


class WebhookUser(FastHttpUser):
    wait_time = constant_throughput(_RATE) if _RATE > 0 else constant(0)
    network_timeout = _TIMEOUT
    connection_timeout = _TIMEOUT

    @task
    def post(self) -> None:
        self.client.post(_PATH, data=_BODY, headers=_HEADERS)
