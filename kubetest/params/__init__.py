"""The YAML parameter sets: one pydantic model per section, refused early with one line.

Every mistake a user can make in a params file must be caught before any load is sent,
and reported as a single line naming the key and the fix (see ``ParamsError``).
A section that is absent from the file is ``None`` here and its test is not run.

The sections live by concern: ``target`` (the service under test or the embedded target),
``shared`` (alerts, generator, SLO, remediation: what every load test reads), ``tests``
(one section per test); ``load`` holds the whole file's ``Params`` and reads it;
``fields`` what they are all built from. ``docs/params.md`` is generated from them
(``python -m kubetest.params_doc``).
"""

from kubetest.params.load import Params, load_params, parse_params
from kubetest.params.shared import (
    MANAGED_LABEL,
    RUN_LABEL,
    TERMINAL_PHASES,
    WAITING_PHASES,
    Alerts,
    Generator,
    Remediation,
    Slo,
    SloAbort,
    Workloads,
)
from kubetest.params.target import API, API_PATHS, EmbeddedTarget, Target, Tls
from kubetest.params.tests import (
    ALERT_TYPES,
    SUITE_NAME,
    TESTS,
    A1ResponseTime,
    A2Concurrent,
    A3Availability,
    A4Actions,
    B1Capacity,
    B2Concurrency,
    Environment,
    ExternalSuite,
)

__all__ = [
    "ALERT_TYPES",
    "API",
    "API_PATHS",
    "MANAGED_LABEL",
    "RUN_LABEL",
    "SUITE_NAME",
    "TERMINAL_PHASES",
    "TESTS",
    "WAITING_PHASES",
    "A1ResponseTime",
    "A2Concurrent",
    "A3Availability",
    "A4Actions",
    "Alerts",
    "B1Capacity",
    "B2Concurrency",
    "EmbeddedTarget",
    "Environment",
    "ExternalSuite",
    "Generator",
    "Params",
    "Remediation",
    "Slo",
    "SloAbort",
    "Target",
    "Tls",
    "Workloads",
    "load_params",
    "parse_params",
]
