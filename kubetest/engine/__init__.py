"""The load engine: open/closed-loop load, per-request records, honest self-measurement.

Modules: ``plan`` (what to send), ``schedule`` (arrival times), ``client`` (outcome
classification, the aiohttp session), ``fastclient`` (the default HTTP/1.1 client on an
asyncio Protocol), ``transport`` (the one seam between a shard and either client),
``shard`` (run one slice of a plan), ``result`` (what a shard hands back), ``runner``
(in-process or Dask shards behind one interface), ``cluster`` (Dask), ``stop`` (stop
signals), ``run`` (run a plan, summarise it), ``judge`` (did the generator keep up),
``guide`` (the guide's ``kubetest load``), ``records`` (stream to disk, sampling, HDR
histogram), ``hdrlog`` (HDR interval logs, merged exactly), ``abort`` (SLO abort rule),
``pool`` (workloads), ``progress``.
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
from kubetest.engine.guide import run_guide_load
from kubetest.engine.plan import LoadPlan
from kubetest.engine.records import (
    COLUMNS,
    OUTCOMES,
    Record,
    RecordWriter,
    new_histogram,
    read_records,
)
from kubetest.engine.result import ShardResult
from kubetest.engine.run import LoadResult, run_load, summarise_shards
from kubetest.engine.schedule import constant, mean_rate, planned_duration, poisson, stages
from kubetest.engine.shard import run_shard
from kubetest.engine.stop import StopFile, StopToken

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
    "summarise_shards",
]
