"""Per-request records: streamed to disk as the run goes, plus an HDR histogram.

Every request becomes one CSV row the moment it completes (flushed every
``FLUSH_EVERY_S``), so an interrupted or killed run keeps what it measured; the HDR
histogram keeps memory bounded for hours-long runs and merges across shards
(``decode_and_add``). Times are seconds relative to the run's common start instant
(``start_epoch`` in the run's summary), so shards and analysis agree on one clock.

Sharded runs (Dask) leave a folder of Parquet parts, ``part-<k>.parquet``, one per shard,
with an extra ``shard`` column: each shard still streams CSV while it runs (a Parquet file
is unreadable until its footer is written, so a killed worker would lose everything) and
converts it when it ends (``csv_to_parquet``: streaming, bounded memory). ``read_records``
reads a file or such a folder; pandas and pyarrow read the folder as one dataset.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from kubetest.errors import RecordsWriteError

#: Outcomes that every API profile maps its answers to; success rates count ``accepted`` only.
OUTCOMES: tuple[str, ...] = ("accepted", "duplicate", "rejected", "throttled", "failed")

#: HDR range: 1 µs .. 1 h, 3 significant digits (0.1 % value error).
HDR_LOW_US, HDR_HIGH_US, HDR_DIGITS = 1, 3_600_000_000, 3

FLUSH_EVERY_S = 0.5
#: Records a second (the run's total) above which they are sampled (``RecordSampler``).
RECORDS_MAX_PER_S = 2000.0


@dataclass(slots=True)
class Record:
    """One request. ``latency_s`` is measured from the *intended* send time (no coordinated
    omission); ``service_s`` from the actual send; ``lag_s`` is how late the generator sent."""

    seq: int
    worker: int
    intended_s: float
    sent_s: float
    done_s: float
    latency_s: float
    service_s: float
    lag_s: float
    status: int  # HTTP status, 0 when no response
    outcome: str  # one of OUTCOMES
    error: str  # "" or refused/reset/timeout/dns/http_4xx/http_5xx/bad_response/late/...
    alert_type: str
    fingerprint: str


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Record))
#: Parquet parts of a sharded run add the shard (generator process) that sent the request.
#: Open loop: ``worker`` == ``shard``; closed loop: ``worker`` is the virtual user.
PART_COLUMNS: tuple[str, ...] = (*COLUMNS, "shard")
DTYPES: dict[str, str] = {
    "seq": "int64", "worker": "int32", "intended_s": "float64", "sent_s": "float64",
    "done_s": "float64", "latency_s": "float64", "service_s": "float64", "lag_s": "float64",
    "status": "int32", "outcome": "string", "error": "string", "alert_type": "string",
    "fingerprint": "string",
}  # fmt: skip


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOW_US, HDR_HIGH_US, HDR_DIGITS)


def _write_error(path: Path, exc: OSError) -> RecordsWriteError:
    return RecordsWriteError(
        f"cannot write records to {path}: {exc.strerror or exc}; "
        "free disk space or choose another output folder"
    )


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from None


class RecordWriter:
    """Append records to a CSV file and (``hdr``) an HDR histogram of successful latencies
    (a shard keeps its own, ``engine.hdrlog``, and passes ``hdr=False``)."""

    def __init__(self, path: Path, *, hdr: bool = True) -> None:
        self.path = Path(path)
        with _writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", newline="", buffering=1 << 16)
            self._csv = csv.writer(self._fh)
            self._csv.writerow(COLUMNS)
            self._fh.flush()
        self._last_flush = time.monotonic()
        self.histogram = new_histogram() if hdr else None
        self.count = 0

    def write(self, rec: Record) -> None:
        try:  # not ``with _writing``: a context manager per record is a CPU cost at 20,000/s
            self._csv.writerow(
                (
                    rec.seq, rec.worker, f"{rec.intended_s:.6f}", f"{rec.sent_s:.6f}",
                    f"{rec.done_s:.6f}", f"{rec.latency_s:.6f}", f"{rec.service_s:.6f}",
                    f"{rec.lag_s:.6f}", rec.status, rec.outcome, rec.error, rec.alert_type,
                    rec.fingerprint,
                )
            )  # fmt: skip
            now = time.monotonic()
            if now - self._last_flush >= FLUSH_EVERY_S:
                self._fh.flush()
                self._last_flush = now
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        self.count += 1
        if self.histogram is not None and rec.outcome == "accepted":
            self.histogram.record_value(max(HDR_LOW_US, min(HDR_HIGH_US, int(rec.latency_s * 1e6))))

    def flush(self) -> None:
        if not self._fh.closed:
            with _writing(self.path):
                self._fh.flush()

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self.flush()
        finally:
            with contextlib.suppress(OSError):  # the buffer that could not be written
                self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordSampler:
    """Which requests get a record: every one up to ``max_per_s`` records a second (the
    run's total), then one in ``every``, chosen by arrival number (``seq // n_shards``,
    so each shard keeps its share), never by answer. ``every`` follows the shard's own
    rate: the schedule's (open loop), else measured second by second (``adapt``); the
    HDR histograms and log still count every request. ``max_per_s`` None: every record."""

    def __init__(self, max_per_s: float | None, n_shards: int, rate: float | None) -> None:
        self.max_per_s, self.n_shards = max_per_s, max(1, n_shards)
        self.every = self.max_every = 1
        self.seen = self._seen_at = 0
        self._at = 0.0
        self.fixed = bool(max_per_s and rate)
        if max_per_s and rate:  # open loop: the schedule's rate, from the first request on
            self.every = self.max_every = max(1, math.ceil(rate / max_per_s))

    def keep(self, seq: int) -> bool:
        self.seen += 1
        return self.every == 1 or (seq // self.n_shards) % self.every == 0

    def adapt(self, now: float) -> None:
        """Once a second or so: ``every`` from the records this shard made since the last."""
        if self.fixed or not self.max_per_s or now - self._at < 1.0:
            return
        rate = (self.seen - self._seen_at) / (now - self._at) * self.n_shards
        self._at, self._seen_at = now, self.seen
        self.every = max(1, math.ceil(rate / self.max_per_s))
        self.max_every = max(self.max_every, self.every)


def part_name(shard: int, suffix: str = ".parquet") -> str:
    """``part-0003.parquet``: zero-padded so a folder listing is in shard order."""
    return f"part-{shard:04d}{suffix}"


def read_records(path: str | Path) -> pd.DataFrame:
    """Load records (one CSV, or a folder of ``*.csv``/``*.parquet`` parts) as one frame.

    A file cut short by a kill keeps its complete lines; a torn last line is dropped.
    """
    path = Path(path)
    parts = sorted(path.glob("*.csv")) + sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    frames = []
    for part in parts:
        if part.suffix == ".parquet":
            frames.append(pd.read_parquet(part))
            continue
        text = part.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        frames.append(pd.read_csv(io.StringIO(text), dtype=DTYPES, keep_default_na=False))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in DTYPES.items()})
    df = pd.concat(frames, ignore_index=True).astype(DTYPES)
    if "shard" in df and not df["shard"].isna().any():
        df["shard"] = df["shard"].astype("int32")
    return df


def _arrow_schema() -> Any:
    import pyarrow as pa

    kinds = {"int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64()}
    return pa.schema([(c, kinds.get(t, pa.string())) for c, t in DTYPES.items()])


def drop_torn_tail(path: Path) -> None:
    """Cut a CSV written by a process that died back to its last complete line."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as fh:
        pos = size
        while pos > 0:
            step = min(1 << 16, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                end = pos - step + nl + 1
                if end != size:
                    fh.truncate(end)
                return
            pos -= step
        fh.truncate(0)


def csv_to_parquet(src: Path, dest: Any, *, shard: int) -> int:
    """Convert a shard's CSV records to Parquet (``dest``: a path or a writable binary file),
    adding the ``shard`` column; returns the row count. Streams record batches, so memory
    stays bounded however long the run; a torn last line (a killed writer) is dropped."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    src = Path(src)
    drop_torn_tail(src)
    schema = _arrow_schema()
    out_schema = schema.append(pa.field("shard", pa.int32()))
    rows = 0
    with pq.ParquetWriter(dest, out_schema, compression="zstd") as writer:
        if src.stat().st_size == 0:
            return 0
        reader = pacsv.open_csv(
            src,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(
                column_types=schema, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        for batch in reader:
            if batch.num_rows == 0:
                continue
            shard_col = pa.repeat(pa.scalar(shard, pa.int32()), batch.num_rows)
            table = pa.Table.from_batches([batch]).select(list(COLUMNS)).cast(schema)
            writer.write_table(table.append_column("shard", shard_col))
            rows += batch.num_rows
    return rows
