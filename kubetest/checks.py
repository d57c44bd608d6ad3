"""Environment readiness (the guide's Step 1): each check is ok / failed / not configured.

A check never raises: it returns its status with the reason and what to do about it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pandas as pd

from kubetest.params import Params, load_params
from kubetest.workbook.context import origin


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | failed | not configured
    required: bool
    detail: str
    fix: str = ""


def check_target(params: Params, timeout_s: float = 5.0) -> Check:
    """The target's health endpoint answers 2xx (an embedded target is started by the run)."""
    if params.target.is_embedded:
        return Check("target", "ok", True, "embedded reference target: started for each run")
    url = params.target.health_url or origin(params.target.url) + "/health"
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Check("target", "failed", True, f"{url}: {type(exc).__name__}: {exc}",
                     "start the service or fix target.url / target.health_url")  # fmt: skip
    if resp.is_success:
        return Check("target", "ok", True, f"{url}: HTTP {resp.status_code}")
    return Check("target", "failed", True, f"{url}: HTTP {resp.status_code}",
                 "the service answers but is not healthy: see its logs")  # fmt: skip


def run_checks(params_path: str | Path) -> tuple[pd.DataFrame, bool]:
    """All checks as a table, and whether a required one failed."""
    params = load_params(params_path)
    checks = [check_target(params)]
    table = pd.DataFrame([asdict(c) for c in checks])
    return table, any(c.required and c.status == "failed" for c in checks)
