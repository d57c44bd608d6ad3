"""Integrity: every accepted alert handled exactly once, proven against injected faults.

The reference target's fault knob (``lose_rate`` / ``duplicate_rate``) silently drops or
doubles accepted alerts' history entries and counts what it did; the reconciliation must
find exactly those counts, through the action history or, for the kubernaut profile,
through RemediationRequests read with a kubeconfig (a loopback stand-in API server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from kubetest.analysis import integrity
from kubetest.analysis.integrity import IntegrityWatch, integrity_requirement, reconcile
from kubetest.analysis.verdicts import INTEGRITY_ID, Requirement, decide
from kubetest.summary import build_summary
from kubetest.target import EmbeddedTarget, TargetConfig
from kubetest.workbook import a1_response_time, a2_concurrent, b2_concurrency
from kubetest.workbook.context import TestContext

pytestmark = pytest.mark.timeout(120)

A1_FAST = {"rate_per_min": 6000, "duration_min": 0.04, "types": ["high_cpu", "pod_crash"]}


def _records(seqs: list[int], outcomes: list[str] | None = None, run: str = "r") -> pd.DataFrame:
    outcomes = outcomes or ["accepted"] * len(seqs)
    return pd.DataFrame({"seq": seqs, "outcome": outcomes, "error": [""] * len(seqs),
                         "fingerprint": [f"{run}-fp{s}" for s in seqs]})  # fmt: skip


def test_reconcile_counts_each_kind_of_discrepancy() -> None:
    records = _records([0, 1, 2, 3, 4, 5], ["accepted"] * 5 + ["failed"])
    entries = [
        {"fingerprint": "r-fp0"}, {"fingerprint": "r-fp1"}, {"fingerprint": "r-fp1"},  # dup
        {"fingerprint": "r-fp2"}, {"fingerprint": "r-fp2"}, {"fingerprint": "r-fp2"},  # dup x2
        # 3 lost; 4 found by run + seq (the service rewrote the fingerprint)
        {"fingerprint": "other", "run": "r", "seq": "4"},
        {"fingerprint": "r-fp5"},  # failed for the client, handled all the same
        {"fingerprint": "x", "run": "r", "seq": 99},  # this run's token, never sent
        {"fingerprint": "y", "run": "another"}, {"fingerprint": "z"},  # someone else's
    ]  # fmt: skip
    r = reconcile(records, entries, "r")
    assert r.counts() == {"accepted": 5, "handled": 9, "lost": 1, "duplicated": 2, "unexpected": 1}
    assert (r.extra_copies, r.handled_unaccepted, r.foreign) == (3, 1, 2)
    assert r.lost_seqs == [3] and r.duplicated_seqs == [1, 2]
    # handled = accepted - lost + extra copies + unexpected + handled but not accepted
    assert r.handled == r.accepted - r.lost + r.extra_copies + r.unexpected + r.handled_unaccepted


def test_unsent_arrivals_are_not_sent() -> None:
    records = _records([0, 1], ["accepted", "failed"])
    records.loc[1, "error"] = "late"  # the generator never sent it
    r = reconcile(records, [{"fingerprint": "r-fp0"}, {"run": "r", "seq": 1}], "r")
    assert (r.lost, r.duplicated, r.unexpected) == (0, 0, 1)


def test_cancelled_requests_were_sent() -> None:
    """A stop or an SLO abort cancels requests in flight: handled all the same, they count
    as handled but not accepted, never as unexpected."""
    records = _records([0, 1], ["accepted", "failed"])
    records.loc[1, "error"] = "cancelled"
    r = reconcile(records, [{"fingerprint": "r-fp0"}, {"fingerprint": "r-fp1"}], "r")
    assert (r.lost, r.unexpected, r.handled_unaccepted) == (0, 0, 1)


def _context(tmp_path: Path, test: str, target_url: str = "", **sections: Any) -> TestContext:
    params = tmp_path / "params.yaml"
    target = {"url": "embedded", "integrity_wait_s": 1.0, "metrics_interval_s": 0.5,
              **sections.pop("target", {})}  # fmt: skip
    target["embedded"] = {"workers": 8, "service_ms": 2, "service_dist": "const",
                          **target.get("embedded", {})}  # fmt: skip
    # every request recorded: above records.max_per_s a sample is kept and nothing is
    # reconciled (8 workers × 2 ms serve 4,000/s, past the 2,000/s default)
    records = {"max_per_s": 100_000, **sections.pop("records", {})}
    params.write_text(yaml.safe_dump({"target": target, "records": records, **sections}))
    return TestContext.open(test, str(params), str(tmp_path / "session"), target_url)


def _target_faults(ctx: TestContext) -> dict[str, int]:
    resp = httpx.get(ctx.base_url + "/api/v1/outcomes", timeout=5, trust_env=False)
    return resp.json()["faults"]


def test_lost_and_duplicated_alerts_are_counted_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "PAGE", 7)  # many small pages: paging makes no duplicates
    ctx = _context(
        tmp_path,
        "A1",
        a1_response_time=A1_FAST,
        target={"embedded": {"lose_rate": 0.1, "duplicate_rate": 0.08, "seed": 11}},
    )
    try:
        result = a1_response_time.run(ctx, progress=False)
        faults = _target_faults(ctx)
    finally:
        ctx.close()
    check = result.outcome.integrity
    assert check is not None and check.checked, check
    counts = check.counts()
    accepted = result.outcome.load.summary["outcomes"]["accepted"]
    assert accepted == len(result.records) > 100
    assert faults["lost"] > 0 and faults["duplicated"] > 0  # the knob did something
    assert counts == {"accepted": accepted, "lost": faults["lost"],
                      "duplicated": faults["duplicated"],
                      "handled": accepted - faults["lost"] + faults["duplicated"],
                      "unexpected": 0}  # fmt: skip
    saved = yaml.safe_load(ctx.result_path.read_text())  # JSON is YAML
    assert saved["integrity"] == counts
    assert saved["integrity_check"]["method"].startswith("action history GET")
    summary = build_summary(ctx.session_dir, complete=True)
    row = next(r for r in summary["requirements"] if r["id"] == INTEGRITY_ID)
    assert row["status"] == "FAIL" and row["unit"] == "count"
    assert row["measured"] == faults["lost"] + faults["duplicated"]
    assert summary["integrity"] == counts
    assert summary["decision"] == "NO-GO"
    assert any(INTEGRITY_ID in r for r in summary["decision_reasons"])


def test_no_faults_no_discrepancy(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "A2", a2_concurrent={"concurrency": 8, "duration_min": 0.02})
    try:
        result = a2_concurrent.run(ctx, progress=False)
        faults = _target_faults(ctx)
    finally:
        ctx.close()
    assert faults == {"lost": 0, "duplicated": 0}
    counts = result.outcome.integrity.counts()
    accepted = result.outcome.load.summary["outcomes"]["accepted"]
    assert counts == {"accepted": accepted, "handled": accepted, "lost": 0, "duplicated": 0,
                      "unexpected": 0} and accepted > 0  # fmt: skip
    summary = build_summary(ctx.session_dir, complete=True)
    row = next(r for r in summary["requirements"] if r["id"] == INTEGRITY_ID)
    assert row["status"] == "PASS" and row["measured"] == 0


def test_every_phase_of_a_sweep_is_reconciled_and_counted(tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "B2",
        b2_concurrency={"levels": [2, 6], "duration_s": 1.0, "recovery_s": 0},
        target={"embedded": {"lose_rate": 0.1, "duplicate_rate": 0.05, "seed": 5}},
    )
    try:
        b2_concurrency.run(ctx, progress=False, echo=lambda _line: None)
        faults = _target_faults(ctx)
    finally:
        ctx.close()
    saved = yaml.safe_load(ctx.result_path.read_text())
    phases = saved["phases_service"]
    numbers = [p["phase"] for p in phases]
    assert len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1))
    for ph, load in zip(phases, saved["phases_load"], strict=True):
        assert ph["integrity_check"]["status"] == "checked"
        assert ph["integrity"]["accepted"] == load["outcomes"]["accepted"] > 0
        assert (tmp_path / "session" / ph["service_metrics"]["path"]).is_file()
    assert faults["lost"] > 0 and faults["duplicated"] > 0  # the knob did something
    summary = build_summary(ctx.session_dir, complete=True)
    assert summary["integrity"]["lost"] == faults["lost"]
    assert summary["integrity"]["duplicated"] == faults["duplicated"]
    assert summary["integrity"]["accepted"] == sum(p["integrity"]["accepted"] for p in phases)
    row = next(r for r in summary["requirements"] if r["id"] == INTEGRITY_ID)
    assert row["status"] == "FAIL"
    assert set(row["details"]["per_test"]) == {f"B2 phase {n}" for n in numbers}


def test_a_service_without_history_or_metrics_is_inconclusive_not_broken(tmp_path: Path) -> None:
    with EmbeddedTarget(TargetConfig(workers=4, service_ms=2, service_dist="const")) as t:
        ctx = _context(
            tmp_path, "A2", t.webhook_url,
            target={"url": t.webhook_url, "actions_url": t.base_url + "/no/history",
                    "metrics_url": t.base_url + "/no/metrics"},
            a2_concurrent={"concurrency": 4, "duration_min": 0.01},
        )  # fmt: skip
        result = a2_concurrent.run(ctx, progress=False)
    assert result.requirement.status in ("PASS", "INCONCLUSIVE")  # the test itself ran
    check = result.outcome.integrity
    assert check.status == "unavailable" and "404" in (check.reason or "")
    saved = yaml.safe_load(ctx.result_path.read_text())
    assert "integrity" not in saved and saved["integrity_check"]["status"] == "unavailable"
    assert "no metrics endpoint" in saved["service_metrics"]["note"]
    summary = build_summary(ctx.session_dir, complete=True)
    row = next(r for r in summary["requirements"] if r["id"] == INTEGRITY_ID)
    assert row["status"] == "INCONCLUSIVE" and row["measured"] is None
    assert "404" in " ".join(row["details"]["reasons"])


def test_kubernaut_without_kubeconfig_says_why(tmp_path: Path) -> None:
    with EmbeddedTarget(TargetConfig(api="kubernaut")) as t:
        ctx = _context(
            tmp_path, "A1", t.webhook_url, target={"url": t.webhook_url, "api": "kubernaut"}
        )
        check = IntegrityWatch.begin(ctx).check(pd.DataFrame(), "run", wait_s=0)
    assert check.status == "unavailable" and "environment.kubeconfig" in (check.reason or "")


def test_kubernaut_remediation_requests_are_reconciled(tmp_path: Path) -> None:
    """Lost and duplicated RemediationRequests, counted through a kubeconfig in the
    controller namespace the 201s name (the target's own cluster, a real API's paths)."""
    config = TargetConfig(api="kubernaut", workers=8, service_ms=2, service_dist="const",
                          lose_rate=0.1, duplicate_rate=0.1, seed=5,
                          remediation_phase_s=(0.02, 0.02, 0.02, 0.02))  # fmt: skip
    with EmbeddedTarget(config) as t:
        ctx = _context(
            tmp_path, "A1", t.webhook_url,
            target={"url": t.webhook_url, "api": "kubernaut",  # a real gateway's ports
                    "health_url": t.health_url, "metrics_url": t.metrics_url},  # differ
            environment={"kubeconfig": str(t.kubeconfig_path)},
            alerts={"workloads": {"create": 60}},
            remediation={"follow": False}, a1_response_time=A1_FAST,
        )  # fmt: skip
        try:
            result = a1_response_time.run(ctx, progress=False)
        finally:
            ctx.close()
        faults = httpx.get(t.base_url + "/api/v1/outcomes", trust_env=False).json()["faults"]
    check = result.outcome.integrity
    assert check.checked and check.method.startswith("RemediationRequests"), check
    assert "kubernaut-system" in check.method
    accepted = result.outcome.load.summary["outcomes"]["accepted"]
    assert faults["lost"] > 0 and faults["duplicated"] > 0
    assert check.counts() == {"accepted": accepted, "lost": faults["lost"],
                              "duplicated": faults["duplicated"],
                              "handled": accepted - faults["lost"] + faults["duplicated"],
                              "unexpected": 0}  # fmt: skip


def _result(status: str = "checked", **counts: int) -> dict[str, Any]:
    base = {"accepted": 10, "handled": 10, "lost": 0, "duplicated": 0, "unexpected": 0}
    rec = {**base, **counts}
    return {
        "integrity_check": {
            "status": status,
            "method": "m",
            "reason": "no history",
            "reconciliation": rec if status == "checked" else None,
        }
    }


@pytest.mark.parametrize(
    ("results", "status", "measured"),
    [
        ({}, "NOT_RUN", None),
        ({"A1": _result()}, "PASS", 0),
        ({"A1": _result(), "A2": _result(lost=2, duplicated=1)}, "FAIL", 3),
        ({"A1": _result(), "A2": _result("unavailable")}, "INCONCLUSIVE", 0),
        ({"A2": _result("unavailable")}, "INCONCLUSIVE", None),
        ({"A1": _result(accepted=0, handled=0)}, "INCONCLUSIVE", 0),
        ({"A1": _result(unexpected=4)}, "PASS", 0),
        (
            {
                "B1": {
                    "phases_service": [{"phase": 1, **_result()}, {"phase": 2, **_result(lost=1)}]
                }
            },
            "FAIL",
            1,
        ),
        ({"B1": {"phases_service": [{"phase": 1, **_result()}]}}, "PASS", 0),
    ],
)
def test_the_requirement_row(results: dict[str, Any], status: str, measured: Any) -> None:
    row = integrity_requirement(results)
    assert (row.id, row.status, row.measured, row.unit) == (INTEGRITY_ID, status, measured, "count")


def test_only_a_failed_integrity_row_turns_the_decision() -> None:
    passing = [
        Requirement(i, 1.0, "s", "", "PASS")
        for i in ("BR-PA-003", "BR-PA-004", "BR-PA-001", "BR-PA-011")
    ]
    for status, decision in (("PASS", "GO"), ("INCONCLUSIVE", "GO"), ("FAIL", "NO-GO")):
        row = Requirement(INTEGRITY_ID, 0.0, "count", "", status)  # type: ignore[arg-type]
        got = decide(
            [*passing, row], saturated=False, complete=True, max_sustainable_rate_per_min=5000
        )
        assert got.decision == decision, status


def test_the_fault_knob_reaches_the_child_target_from_params() -> None:
    from kubetest.params import parse_params
    from kubetest.target.command import build_parser, child_arguments, config_from_args

    params = parse_params(
        {"target": {"embedded": {"lose_rate": 0.25, "duplicate_rate": 0.5, "seed": 3}}}
    )
    config = TargetConfig.from_params(params.target.embedded)
    assert (config.lose_rate, config.duplicate_rate, config.seed) == (0.25, 0.5, 3)
    args = build_parser().parse_args(child_arguments(config, "127.0.0.1"))
    assert config_from_args(args) == config
    with pytest.raises(ValueError, match="lose_rate"):
        TargetConfig(lose_rate=0.7, duplicate_rate=0.5)
