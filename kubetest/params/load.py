"""A whole params file: the ``Params`` model over every section, and reading and
validating YAML into it with the first mistake as one ``ParamsError`` line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from kubetest.errors import ParamsError
from kubetest.params import tests
from kubetest.params.fields import _Model
from kubetest.params.shared import Alerts, Generator, Records, Remediation, Slo
from kubetest.params.target import Target


def _test(what: str) -> Any:
    """A test's section: absent (null) means the test is not run."""
    return Field(None, description=f"test {what}; null: not run")


class Params(_Model):
    """A whole params file. Absent test sections are ``None``: that test is NOT_RUN."""

    target: Target = Field(Target(), description="the service under test")
    alerts: Alerts = Field(Alerts(), description="what the alerts name")
    generator: Generator = Field(Generator(), description="the load generator")
    records: Records = Field(Records(), description="per-request records and HDR logs")
    slo: Slo = Field(Slo(), description="service-level objectives the verdicts use")
    remediation: Remediation = Field(
        Remediation(), description="following RemediationRequests (kubernaut with a kubeconfig)"
    )
    environment: tests.Environment | None = _test("ENV: readiness of what the service depends on")
    external_suites: list[tests.ExternalSuite] | None = _test("EXT: the service's own suites")
    a1_response_time: tests.A1ResponseTime | None = _test(
        "A1: response time under load (BR-PA-003)"
    )
    a2_concurrent: tests.A2Concurrent | None = _test("A2: concurrent requests (BR-PA-004)")
    a3_availability: tests.A3Availability | None = _test("A3: availability (BR-PA-001)")
    a4_actions: tests.A4Actions | None = _test("A4: Kubernetes actions (BR-PA-011)")
    b1_capacity: tests.B1Capacity | None = _test("B1: capacity, an open-loop rate sweep")
    b2_concurrency: tests.B2Concurrency | None = _test("B2: a concurrency sweep")
    continue_on_phase_a_failure: bool = Field(
        True, description="run Phase B even when a Phase A test failed"
    )

    @field_validator("external_suites")
    @classmethod
    def _suite_names(cls, v: list[tests.ExternalSuite] | None) -> list[tests.ExternalSuite] | None:
        if v is not None and not v:
            raise ValueError("needs at least one suite, or leave the key out")
        names = [s.name for s in v or []]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"suite name {twice[0]!r} is used twice: names must be unique")
        return v

    @model_validator(mode="after")
    def _workloads(self) -> Params:
        if self.alerts.workloads is None:
            return self
        kubeconfig = self.environment.kubeconfig if self.environment else None
        if not kubeconfig:
            raise ValueError(
                "alerts.workloads needs environment.kubeconfig: the cluster the workloads "
                "live in ('embedded' for the embedded target's own)"
            )
        if self.generator.workers > 1 or self.generator.scheduler:
            raise ValueError(
                "alerts.workloads needs generator.workers: 1 and no scheduler: the pool's "
                "free/busy state is kept in one process"
            )
        return self

    @model_validator(mode="after")
    def _embedded_cluster(self) -> Params:
        kubeconfig = self.environment.kubeconfig if self.environment else None
        if kubeconfig == "embedded" and not (
            self.target.is_embedded and self.target.api == "kubernaut"
        ):
            raise ValueError(
                "environment.kubeconfig: 'embedded' needs target.url: embedded with "
                "target.api: kubernaut (only that target holds a cluster)"
            )
        return self

    @model_validator(mode="after")
    def _secrets_present(self) -> Params:
        env = self.target.auth_token_env
        if env and env not in os.environ:
            raise ValueError(
                f"target.auth_token_env names ${env}, which is not set: export it before the run"
            )
        return self

    def selected_tests(self) -> list[str]:
        """Test keys (``A1``...) whose section is present, in run order."""
        return [key for key, section in tests.TESTS.items() if getattr(self, section) is not None]


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key; remove it or check its spelling (every key: docs/params.md)"
    # Our own validators (value_error) word their message, and never echo a secret back.
    if "input" in err and kind not in ("missing", "value_error"):
        return f"{loc}: {msg} (got {err['input']!r})"
    return f"{loc}: {msg}" if loc else msg


def parse_params(data: Any, source: str = "params", base_dir: Path | None = None) -> Params:
    """Validate already-parsed YAML; raise ``ParamsError`` with one line on the first error.

    Relative paths in it (``target.tls.ca_file``) start at ``base_dir``, the params
    file's folder (default: the current one)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"{source}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    try:
        return Params.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise ParamsError(f"{source}: {_format_error(first)}{suffix}") from None


def load_params(path: str | Path) -> Params:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"params file {str(path)!r} not found: pass an existing YAML file "
            "(e.g. params/local.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_params(data, source=str(path), base_dir=path.resolve().parent)
