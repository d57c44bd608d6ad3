"""Environment readiness (the guide's Step 1 and its debug-info section).

Not a business requirement: the result holds the checks and the debug info, no BR, so the
summary's verdicts are untouched; a failed dependency shows up here with its fix, before
anyone reads a load test's numbers as the service's fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from kubetest.checks import Check, as_records, checks_table, collect, debug_info
from kubetest.workbook.context import TestContext, result_head


@dataclass
class EnvResult:
    checks: list[Check]
    debug: dict[str, Any]

    @property
    def table(self) -> pd.DataFrame:
        return checks_table(self.checks)

    @property
    def required_failed(self) -> list[str]:
        """Names of required checks that failed (``kubetest check`` would exit 1)."""
        return list(dict.fromkeys(c.name for c in self.checks if c.blocking))  # rbac: 1 per row

    @property
    def debug_table(self) -> pd.DataFrame:
        """The debug info flattened to key/value rows, for display."""
        rows: list[tuple[str, str]] = []
        for key, value in self.debug.items():
            if isinstance(value, dict):
                rows += [(f"{key}.{k}", "—" if v is None else str(v)) for k, v in value.items()]
            else:
                rows.append((key, "—" if value is None else str(value)))
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")

    @property
    def verdict(self) -> str:
        failed = self.required_failed
        if failed:
            return f"NOT READY: required check failed: {', '.join(failed)}"
        return "READY: every configured dependency answered"


def run(ctx: TestContext) -> EnvResult:
    """Check the target this run actually uses (its health URL) and every dependency."""
    started = datetime.now(UTC)
    checks = collect(ctx.params, health_url=ctx.health_url, webhook_url=ctx.target_url)
    result = EnvResult(checks, debug_info(ctx.params))
    ctx.save_result(
        {
            **result_head("Environment readiness", started, complete=True),
            "ready": not result.required_failed,
            "checks": as_records(checks),
            "debug": result.debug,
        }
    )
    return result
