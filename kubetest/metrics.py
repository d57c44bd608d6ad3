"""Service-side metrics while a test runs: what the service was doing when latency rose.

A background thread samples the target's Prometheus ``/metrics`` (``target.metrics_url``)
every ``target.metrics_interval_s`` seconds and streams every sample to
``records/<test>_metrics.csv`` beside the test's records (columns ``t_s, epoch_s, metric,
labels, value, type``; ``t_s`` on the load's clock, seconds since its ``start_epoch``, so
the samples line up with the records' ``intended_s``). Each tick also samples the
generator itself: its process CPU time and how late the tick woke up (a loaded generator
process holds the GIL and wakes this thread late, like it delays its own event loop).

The first sample is taken before ``start`` returns (so before any alert is sent): it is
the baseline of the service's counters (``kubetest.analysis.gateway_counters``).
The thread never sends more than one request per interval, gives up on a request after
less than an interval, and never fails the test: a target without ``/metrics`` (404, or
an answer that is not Prometheus text) gets a note and the scraping stops. With
``target.prometheus_url`` the service is not scraped directly; the Prometheus server's
``query_range`` API is read once the test is over, for the same kinds of series.
"""

from __future__ import annotations

import contextlib
import csv
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from kubetest import control, tls
from kubetest.analysis.service_metrics import (
    COLUMNS,
    GENERATOR_CPU,
    GENERATOR_TICK_LAG,
    read_metrics,
    summarise_panels,
    target_restarts,
)

#: Series kept from one scrape at most (a service exporting more gets a note).
MAX_SERIES = 5_000

#: Prometheus-server mode: the series asked for (``__name__`` is matched in full).
PROMETHEUS_NAMES = (
    r".*(request|alert|signal|webhook)s?(_[a-z0-9]+)*_total|.*(in_?flight|inflight|busy|"
    r"concurren|queue|pending|waiting|backlog).*|process_cpu_seconds_total|"
    r"process_resident_memory_bytes|process_start_time_seconds|"  # (a restart: validity)
    r"gateway_[a-z_]+_total"  # the gateway's cross-checked counters
)


def _labels_text(labels: dict[str, str]) -> str:
    """Labels as Prometheus writes them, sorted: ``code="200",handler="webhook"``."""
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def parse_exposition(
    text: str, *, keep_buckets: bool = False, openmetrics: bool = False
) -> list[tuple[str, str, float, str]]:
    """(metric, labels, value, type) of every sample in a Prometheus text exposition
    (``openmetrics``: the OpenMetrics text format, which some services answer with).

    Histogram buckets are left out unless asked for (their ``_sum`` and ``_count`` stay):
    they multiply the rows by ~20 and the figure does not use them. ``_created``
    timestamps are left out too. Raises ``ValueError`` on text that is not the format.
    """
    rows: list[tuple[str, str, float, str]] = []
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    for family in parse(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_created") or (name.endswith("_bucket") and not keep_buckets):
                continue
            rows.append((name, _labels_text(sample.labels), float(sample.value), family.type))
    return rows


@dataclass
class MetricsScrape:
    """One test's metrics: the scraping thread, the CSV it streams, and its summary.

    ``url`` None: no direct scraping (not configured, or Prometheus-server mode). Call
    ``start``, then ``align`` with the load's summary once it is known, then ``stop``.
    """

    path: Path
    url: str | None = None
    interval_s: float = 2.0
    prometheus_url: str | None = None
    prometheus_selector: str = ""
    keep_buckets: bool = False
    relative_to: Path | None = None
    verify: ssl.SSLContext | bool = True  # HTTPS verification (kubetest.tls.verify)
    proxy: control.Proxy = "none"  # target.proxy (kubetest.control)
    auth: dict[str, str] = field(default_factory=dict, repr=False)  # the target's bearer token
    note: str | None = None
    scrapes: int = 0
    errors: int = 0
    last_error: str | None = None
    start_epoch: float | None = None
    end_epoch: float | None = None
    generator: dict[str, Any] = field(default_factory=dict)
    _t0: float = 0.0
    _fh: IO[str] | None = field(default=None, repr=False)
    _csv: Any = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _active: bool = field(default=True, repr=False)
    _first: threading.Event = field(default_factory=threading.Event, repr=False)
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def timeout_s(self) -> float:
        """Below the interval, so one slow answer never stacks requests up."""
        return max(0.2, min(5.0, 0.8 * self.interval_s))

    @property
    def source(self) -> str:
        if self.prometheus_url:
            return "prometheus"
        return "scrape" if self.url else "none"

    def _give_up(self, why: str) -> None:
        """Stop asking a URL that is not a metrics endpoint; say why and what to set."""
        self.note = (
            f"{why}: set target.metrics_url to the service's metrics endpoint, or "
            "target.prometheus_url to a Prometheus server scraping it"
        )[:400]
        self._active = False

    # -- lifetime

    def start(self) -> MetricsScrape:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(COLUMNS)
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="kubetest-metrics", daemon=True)
        self._thread.start()
        # the first sample is the counters' baseline: taken before any alert is sent
        self._first.wait(self.timeout_s + 1.0)
        return self

    def align(self, load_summary: dict[str, Any]) -> None:
        """Put the samples on the load's clock and keep the engine's own loop figures."""
        start = load_summary.get("start_epoch")
        if isinstance(start, int | float):
            self.start_epoch = float(start)
        self.generator = {k: load_summary.get(k) for k in ("loop_busy", "loop_lag_p99")}

    def stop(self) -> dict[str, Any]:
        """Stop sampling (one last sample first), fetch Prometheus-server series, rebase
        ``t_s`` on the load's clock; the summary. Never raises."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.timeout_s + 5.0)
            self._thread = None
        self.end_epoch = time.time()
        try:
            if self.prometheus_url:
                self._query_prometheus()
        except Exception as exc:  # the test's result matters more than its metrics
            self.note = f"Prometheus query failed: {type(exc).__name__}: {exc}"[:300]
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            frame = self._rebase()
        except Exception as exc:
            self.note = f"metrics file unreadable: {type(exc).__name__}: {exc}"[:300]
            frame = pd.DataFrame(columns=COLUMNS)
        self._summary = self._summarise(frame)
        return self._summary

    def summary(self) -> dict[str, Any]:
        return self._summary if self._summary is not None else self._summarise(None)

    # -- sampling

    def _write(self, epoch: float, rows: list[tuple[str, str, float, str]]) -> None:
        if self._csv is None:
            return
        t = round(epoch - self._t0, 6)
        with self._lock:
            for metric, labels, value, kind in rows:
                self._csv.writerow((t, f"{epoch:.6f}", metric, labels, repr(value), kind))
            assert self._fh is not None
            self._fh.flush()

    def _run(self) -> None:
        client = control.client(
            timeout_s=self.timeout_s, verify=self.verify, proxy=self.proxy,
            cap=control.METRICS_CAP, headers={"Accept": "text/plain;version=0.0.4", **self.auth},
        )  # fmt: skip
        due = time.monotonic()
        try:
            while True:
                late = max(0.0, time.monotonic() - due)
                stopping = self._stop.is_set()
                self._tick(client, late)
                self._first.set()
                if stopping:
                    return
                due += self.interval_s
                now = time.monotonic()
                if due < now:  # ticks missed (a stalled process): skip them, never burst
                    due = now + self.interval_s
                self._stop.wait(due - now)
        except Exception as exc:  # never take the test down
            self.note = f"metrics sampling stopped: {type(exc).__name__}: {exc}"[:300]
        finally:
            self._first.set()
            client.close()

    def _tick(self, client: httpx.Client, late_s: float) -> None:
        epoch = time.time()
        rows = [
            (GENERATOR_CPU, "", time.process_time(), "counter"),
            (GENERATOR_TICK_LAG, "", late_s, "gauge"),
        ]
        if self.url and self._active and not self.prometheus_url:
            rows += self._scrape(client)
        self._write(epoch, rows)

    def _scrape(self, client: httpx.Client) -> list[tuple[str, str, float, str]]:
        assert self.url is not None
        try:
            resp = client.get(self.url)
        except httpx.HTTPError as exc:
            self.errors += 1
            problem = tls.tls_problem(exc)
            self.last_error = (
                problem.line(self.url) if problem else f"{type(exc).__name__}: {exc}"[:200]
            )
            return []
        if resp.status_code in (404, 405, 410, 501):
            self._give_up(f"no metrics endpoint: GET {self.url} answered {resp.status_code}")
            return []
        if resp.status_code != 200:
            self.errors += 1
            self.last_error = f"HTTP {resp.status_code}"
            return []
        openmetrics = "openmetrics" in resp.headers.get("content-type", "")
        try:
            rows = parse_exposition(
                resp.text, keep_buckets=self.keep_buckets, openmetrics=openmetrics
            )
        except Exception as exc:
            self._give_up(
                f"GET {self.url} is not Prometheus text format "
                f"({type(exc).__name__}: {str(exc)[:120]})"
            )
            return []
        self.scrapes += 1
        if len(rows) > MAX_SERIES:
            self.note = f"{len(rows)} series per scrape: kept the first {MAX_SERIES}"
            rows = rows[:MAX_SERIES]
        return rows

    def _query_prometheus(self) -> None:
        """The service's series over the test, from a Prometheus server's query_range."""
        assert self.prometheus_url is not None
        start = (self.start_epoch or self._t0) - self.interval_s
        end = (self.end_epoch or time.time()) + self.interval_s
        matchers = f'__name__=~"{PROMETHEUS_NAMES}"'
        if self.prometheus_selector:
            matchers += "," + self.prometheus_selector
        url = self.prometheus_url.rstrip("/") + "/api/v1/query_range"
        with control.client(
            timeout_s=30.0, verify=self.verify, proxy=self.proxy, cap=control.METRICS_CAP
        ) as client:
            resp = client.get(
                url,
                params={
                    "query": "{" + matchers + "}",
                    "start": f"{start:.3f}",
                    "end": f"{end:.3f}",
                    # Prometheus answers at most 11,000 points a series
                    "step": f"{max(self.interval_s, (end - start) / 10_000):g}",
                },
            )
        resp.raise_for_status()
        doc = resp.json()
        if doc.get("status") != "success":
            raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
        series = (doc.get("data") or {}).get("result") or []
        if len(series) > MAX_SERIES:
            self.note = f"{len(series)} series from Prometheus: kept the first {MAX_SERIES}"
            series = series[:MAX_SERIES]
        by_time: dict[float, list[tuple[str, str, float, str]]] = {}
        for s in series:
            labels = dict(s.get("metric") or {})
            name = labels.pop("__name__", "")
            kind = "counter" if name.endswith("_total") else "gauge"
            for ts, value in s.get("values") or []:
                by_time.setdefault(float(ts), []).append(
                    (name, _labels_text(labels), float(value), kind)
                )
        for epoch in sorted(by_time):
            self._write(epoch, by_time[epoch])
        self.scrapes = len(by_time)
        if not series:
            self.note = "Prometheus returned no series for the test window (check the selector)"

    # -- after the test

    def _rebase(self) -> pd.DataFrame:
        """Rewrite the file with ``t_s`` since the load's start (atomically); the frame."""
        frame = read_metrics(self.path)
        if self.start_epoch is None or frame.empty:
            return frame
        frame["t_s"] = (frame["epoch_s"] - self.start_epoch).round(6)
        frame = frame.sort_values(["epoch_s", "metric", "labels"], kind="stable")
        tmp = self.path.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False, columns=list(COLUMNS))
        tmp.replace(self.path)
        return frame

    def _summarise(self, frame: pd.DataFrame | None) -> dict[str, Any]:
        path = self.path
        if self.relative_to is not None:
            with contextlib.suppress(ValueError):
                path = self.path.relative_to(self.relative_to)
        service = frame is not None and bool(
            (~frame["metric"].isin([GENERATOR_CPU, GENERATOR_TICK_LAG])).any()
        )
        note = self.note
        if note is None and self.errors and not self.scrapes:
            note = f"no scrape succeeded ({self.errors} tried): {self.last_error}"
        return {
            "source": self.source,
            "url": self.prometheus_url or self.url,
            "path": str(path),
            "interval_s": self.interval_s,
            "scrapes": self.scrapes,
            "errors": self.errors,
            "last_error": self.last_error,
            "service_metrics_found": service,
            "note": note,
            "series": summarise_panels(frame) if frame is not None else {},
            "restarts": target_restarts(frame) if frame is not None else [],
            "generator": {
                **self.generator,
                "cpu_scope": "this process (Dask workers' CPU is not in it)",
            },
        }


# -- wiring --------------------------------------------------------------------------------


def from_context(ctx: Any, name: str) -> MetricsScrape:
    """The scrape for one load of a test (``records/<name>_metrics.csv``)."""
    target = ctx.params.target
    return MetricsScrape(
        path=ctx.records_dir / f"{name}_metrics.csv",
        url=None if target.prometheus_url else ctx.metrics_url,
        interval_s=float(target.metrics_interval_s),
        prometheus_url=target.prometheus_url,
        prometheus_selector=target.prometheus_selector,
        relative_to=ctx.session_dir,
        verify=tls.verify(target.tls),
        proxy=target.proxy,
        auth=_target_auth(target.auth_token_env, ctx.metrics_url, ctx.target_url),
    )


def _target_auth(env: str | None, metrics_url: str | None, target_url: str) -> dict[str, str]:
    """The bearer token for the target's own ``/metrics`` (the reference target asks for it
    when one is set); sent only to the target's host, never to another server."""
    token = os.environ.get(env) if env else None
    if not token or not metrics_url:
        return {}
    same = urlsplit(metrics_url).hostname == urlsplit(target_url).hostname
    return {"Authorization": f"Bearer {token}"} if same else {}


@contextlib.contextmanager
def scrape_metrics(ctx: Any, name: str) -> Iterator[MetricsScrape]:
    """``with scrape_metrics(ctx, "A1") as scrape: load = run_load(...);
    scrape.align(load.summary)`` — then ``scrape.summary()`` for the result."""
    scrape = from_context(ctx, name).start()
    try:
        yield scrape
    finally:
        scrape.stop()
