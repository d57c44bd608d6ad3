"""HDR histograms a shard fills cheaply, and the interval log it streams them to.

Why: at 20,000 requests per second a Python ``record_value`` per measured quantity costs
~4 µs each, a fifth of the request's budget. A ``Series`` takes a plain ``list.append`` per
request (seconds, unconverted) and adds the buffered values in one numpy pass
(``add_seconds``: the same bucket arithmetic as ``HdrHistogram.record_value``, so the
counts are identical), when its window closes or when it is read.

``IntervalLog`` writes one HdrHistogram interval-log line per series per window
(the ``hdrhistogram`` package's ``HistogramLogWriter`` format, each line tagged
``Tag=latency``, ``service``, ``lag``), so the log keeps every request even when the
per-request records are sampled (``records.max_per_s``). The file is flushed at each
window: a killed shard keeps its windows. Each series' run total is the sum of its
windows, so percentiles over any set of shards and windows come from merging the logs
exactly (``merge_logs``), the same counts as one histogram fed every value.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from kubetest.engine.records import HDR_HIGH_US, HDR_LOW_US, new_histogram

#: The series a shard logs, in this order on each window's lines.
TAGS: tuple[str, ...] = ("latency", "service", "lag")


def hdr_log_of(records: Path) -> Path:
    """A records file's HDR interval log: ``A1.csv`` → ``A1.hlog``; a Dask part's starts
    with ``_`` (``_part-0000.hlog``), which pyarrow and pandas skip when they read the
    folder of parts as one dataset."""
    records = Path(records)
    if records.name.startswith("part-"):
        return records.parent / f"_{records.stem}.hlog"
    return records.with_suffix(".hlog")


def add_seconds(hist: HdrHistogram, values: Iterable[float]) -> None:
    """Record ``values`` (s) as µs, clamped to the histogram's range like ``result.hdr_us``:
    the bucket arithmetic of ``HdrHistogram.record_value``, vectorised."""
    us = np.fromiter(values, dtype=np.float64)
    if not len(us):
        return
    v = np.clip(np.trunc(np.nan_to_num(us, nan=0.0) * 1e6), HDR_LOW_US, HDR_HIGH_US)
    v = v.astype(np.int64)
    unit, half_mag = hist.unit_magnitude, hist.sub_bucket_half_count_magnitude
    pow2ceiling = np.frexp((v | hist.sub_bucket_mask).astype(np.float64))[1]  # bit length
    bucket = pow2ceiling.astype(np.int64) - unit - (half_mag + 1)
    sub = v >> (bucket + unit)
    index = ((bucket + 1) << half_mag) + sub - hist.sub_bucket_half_count
    counts = np.ctypeslib.as_array(hist.counts)
    np.add.at(counts, index, 1)
    hist.total_count += len(v)
    hist.min_value = min(hist.min_value, int(v.min()))
    hist.max_value = max(hist.max_value, int(v.max()))


class Series:
    """One measured quantity: ``add(seconds)`` per request, a histogram per window and
    one for the run (the sum of the windows)."""

    def __init__(self) -> None:
        self.buf: list[float] = []
        self.add = self.buf.append
        self.window = new_histogram()
        self.total = new_histogram()

    def flush(self) -> None:
        if self.buf:
            add_seconds(self.window, self.buf)
            self.buf.clear()

    def close_window(self) -> HdrHistogram:
        """The window's histogram (now counted in ``total``); a new window starts."""
        self.flush()
        window, self.window = self.window, new_histogram()
        if window.get_total_count():
            self.total.add(window)
        return window

    def encode_total(self) -> bytes:
        """The run's histogram so far, encoded (the open window included)."""
        self.flush()
        hist = new_histogram()
        hist.add(self.total)
        hist.add(self.window)
        return hist.encode()


class IntervalLog:
    """A shard's interval log: ``tick(now)`` closes a window every ``interval_s``."""

    def __init__(
        self,
        path: Path | None,
        series: dict[str, Series],
        *,
        start_epoch: float,
        interval_s: float = 1.0,
        comment: str = "",
    ) -> None:
        self.path = path
        self.series = series
        self.interval_s = interval_s
        self.window_start = 0.0
        self.next_close = interval_s
        self.text = io.StringIO()  # the log, also handed back in the shard's result
        self._fh = path.open("w") if path is not None else None
        head = io.StringIO()
        writer = HistogramLogWriter(head)
        writer.output_log_format_version()
        if comment:
            writer.output_comment(comment)
        head.write(f"#[StartTime: {start_epoch:.3f} (seconds since epoch)]\n")
        head.write(f"#[BaseTime: {start_epoch:.3f} (seconds since epoch)]\n")
        writer.output_legend()
        self._emit(head.getvalue())

    def _emit(self, text: str) -> None:
        self.text.write(text)
        if self._fh is not None:
            self._fh.write(text)
            self._fh.flush()

    def tick(self, now: float) -> None:
        """Add the values buffered since the last tick (a few hundred at most: no pause
        of the loop), and close the window when it is due."""
        for series in self.series.values():
            series.flush()
        if now >= self.next_close:
            self.close_window(now)

    def close_window(self, now: float) -> None:
        """Write the window [window_start, now) of every series (empty ones too)."""
        out = io.StringIO()
        writer = HistogramLogWriter(out)
        start = max(self.window_start, 0.0)
        end = max(now, start + 1e-6)
        for tag, series in self.series.items():
            window = series.close_window()
            out.write(f"Tag={tag},")
            writer.output_interval_histogram(window, start, end, 1000.0)  # max in ms
        self._emit(out.getvalue())
        self.window_start = now
        self.next_close = (math.floor(now / self.interval_s) + 1) * self.interval_s

    def close(self, now: float) -> None:
        if self._fh is not None and not self._fh.closed:
            self.close_window(now)
            self._fh.close()


def read_intervals(path: str | Path) -> Iterator[tuple[str | None, float, HdrHistogram]]:
    """Every interval of a log: ``(tag, start s since the run's start, histogram)``."""
    reader = HistogramLogReader(str(path), new_histogram())
    try:
        while True:
            hist = reader.get_next_interval_histogram()
            if hist is None:
                return
            start = hist.get_start_time_stamp() / 1000.0 - reader.base_time_sec
            yield hist.get_tag(), start, hist
    finally:
        reader.close()


def merge_logs(
    paths: Iterable[str | Path],
    tag: str = "latency",
    *,
    t_from: float = -math.inf,
    t_to: float = math.inf,
) -> HdrHistogram:
    """One histogram of ``tag`` over every log's windows that start in [t_from, t_to):
    across shards (Dask workers) and windows, exactly (counts add)."""
    out = new_histogram()
    for path in paths:
        for got, start, hist in read_intervals(path):
            if got == tag and t_from <= start < t_to and hist.get_total_count():
                out.add(hist)
    return out
