"""The load engine: open/closed-loop load, per-request records, honest self-measurement.

Modules: ``schedule`` (arrival times), ``client`` (HTTP + outcome classification),
``shard`` (run one slice of a plan), ``run`` (run a plan, judge it, the guide's
``kubetest load``), ``records`` (stream to disk, HDR histogram), ``progress``.
"""

from kubetest.engine.client import (
    APIS,
    GENERATOR_ERRORS,
    classify,
    classify_all,
    classify_exception,
    classify_results,
    problem_detail,
)
from kubetest.engine.records import (
    COLUMNS,
    OUTCOMES,
    Record,
    RecordWriter,
    new_histogram,
    read_records,
)
from kubetest.engine.run import LoadPlan, LoadResult, run_guide_load, run_load, summarize
from kubetest.engine.schedule import constant, mean_rate, planned_duration, poisson, stages
from kubetest.engine.shard import ShardResult, StopFile, StopToken, run_shard

__all__ = [
    "APIS",
    "COLUMNS",
    "GENERATOR_ERRORS",
    "OUTCOMES",
    "LoadPlan",
    "LoadResult",
    "Record",
    "RecordWriter",
    "ShardResult",
    "StopFile",
    "StopToken",
    "classify",
    "classify_all",
    "classify_exception",
    "classify_results",
    "constant",
    "mean_rate",
    "new_histogram",
    "planned_duration",
    "poisson",
    "problem_detail",
    "read_records",
    "run_guide_load",
    "run_load",
    "run_shard",
    "stages",
    "summarize",
]
