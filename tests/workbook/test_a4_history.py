"""A4 after a whole plan: the action history then holds thousands of entries, more than
one control-plane answer may carry; A4 reads it from where it stood before its actions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetest import control
from kubetest.alerts import ACTIONS
from kubetest.engine import LoadPlan, run_load
from kubetest.workbook import a4_actions
from kubetest.workbook.context import TestContext


@pytest.mark.timeout(120)
def test_a4_verifies_its_actions_in_a_history_longer_than_the_json_cap(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "target": {"url": "embedded",
                   "embedded": {"workers": 64, "service_ms": 1, "service_dist": "const"}},
        "a4_actions": {"actions": "all", "verify_timeout_s": 20},
    }))  # fmt: skip
    ctx = TestContext.open("A4", str(params), str(tmp_path / "session"))
    try:
        filler = LoadPlan(url=ctx.target_url, mode="closed", concurrency=32, duration_s=4.0)
        run_load(filler, tmp_path / "fill", progress=False)
        history = control.get(ctx.actions_url, timeout_s=30, cap=64 << 20).content
        assert len(history) > control.JSON_CAP  # what a single read could not take
        result = a4_actions.run(ctx)
    finally:
        ctx.close()
    details = result.requirement.details
    assert details["actions_tested"] == len(ACTIONS)
    assert details["actions_verified"] == len(ACTIONS)
    assert result.requirement.status == "PASS"
