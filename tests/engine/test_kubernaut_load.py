"""Load against the reference target in each profile, counted exactly on both sides.

Each test starts the embedded target (a child process on 127.0.0.1) from a params file,
as a session does, sends a few seconds of load through the workbook's own path
(``make_plan`` → ``execute``) and checks kubetest's records against the target's own
counters (``/api/v1/outcomes``). Assertions are on counts, never on wall-clock times.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubetest.checks import AuthError, check_auth, check_target
from kubetest.workbook import a1_response_time
from kubetest.workbook.context import TestContext
from kubetest.workbook.loadtest import execute, make_plan

pytestmark = pytest.mark.timeout(120)

N = 48  # A1 here: 2,400/min for 1.2 s


#: The kubernaut profile's alerts must name Deployments that exist: a pool in the
#: embedded target's own cluster, larger than N so no alert meets a busy one, with
#: remediations short enough to end while the test waits for them.
POOL = {"alerts": {"workloads": {"create": N + 8}}, "environment": {"kubeconfig": "embedded"},
        "remediation": {"timeout_min": 0.5}}  # fmt: skip
FAST_RR = {"remediation_phase_s": [0.02, 0.02, 0.02, 0.02]}


@contextmanager
def context(tmp_path: Path, api: str, **sections: Any) -> Iterator[TestContext]:
    """A1 on the embedded target in profile ``api``, closed (the target stopped) on leaving."""
    embedded = {"workers": 4, "service_ms": 2, "service_dist": "const",
                **sections.pop("embedded", {})}  # fmt: skip
    target = {"url": "embedded", "api": api, "embedded": embedded, **sections.pop("target", {})}
    # every request recorded, or the counts could not agree: a closed loop at ~7,000/s
    # passes records.max_per_s, and a run that outlasts its second samples its last answers
    records = {"max_per_s": 100_000, **sections.pop("records", {})}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "target": target, "records": records,
        "a1_response_time": {"rate_per_min": 2400, "duration_min": 0.02, "types": ["high_cpu"]},
        **sections,
    }))  # fmt: skip
    ctx = TestContext.open("A1", str(params), str(tmp_path / "session"))
    try:
        yield ctx
    finally:
        ctx.close()


def target_outcomes(ctx: TestContext) -> dict[str, int]:
    resp = httpx.get(ctx.base_url + "/api/v1/outcomes", timeout=5, trust_env=False)
    return resp.json()["outcomes"]


def record_outcomes(records: Any) -> dict[str, int]:
    counts = records["outcome"].value_counts().to_dict()
    return {
        k: int(counts.get(k, 0))
        for k in ("accepted", "duplicate", "rejected", "throttled", "failed")
    }


def counted_alike(ctx: TestContext, records: Any) -> dict[str, int]:
    """The outcomes in kubetest's records, asserted equal to the target's own counts."""
    mine = record_outcomes(records)
    assert mine == target_outcomes(ctx)
    return mine


def run_a1(tmp_path: Path, api: str, **sections: Any) -> tuple[Any, dict[str, int]]:
    """A1 against the embedded target: its result and outcomes (counted alike)."""
    with context(tmp_path, api, **sections) as ctx:
        result = a1_response_time.run(ctx, progress=False)
        return result, counted_alike(ctx, result.records)


@pytest.mark.parametrize("api", ["webhook", "kubernaut", "kubernaut-legacy"])
def test_unique_alerts_are_all_accepted_and_counted_alike(tmp_path: Path, api: str) -> None:
    pool = {**POOL, "embedded": FAST_RR} if api == "kubernaut" else {}
    with context(tmp_path, api, **pool) as ctx:
        assert ctx.target_url.endswith(
            {"webhook": "/webhook/prometheus", "kubernaut": "/api/v1/signals/prometheus",
             "kubernaut-legacy": "/alerts"}[api])  # fmt: skip
        result = a1_response_time.run(ctx, progress=False)
        mine = counted_alike(ctx, result.records)
    assert mine["accepted"] == len(result.records) == N
    assert mine["duplicate"] == 0
    details = result.requirement.details
    assert details["outcomes"]["accepted"] == N
    assert "webhook latency" in details["judged_on"]
    if api == "kubernaut":  # asynchronous: each created RR followed to its end
        ttr = details["time_to_remediation"]
        assert ttr["followed"] == N and ttr["phases"]["Completed"] == N
        assert result.outcome.pool["to_free"] == N and result.outcome.pool["to_busy"] == 0
    else:
        assert "time_to_remediation" not in details


def test_without_a_pool_the_gateway_cannot_resolve_the_alerts(tmp_path: Path) -> None:
    """What kubetest used to send: Deployments nobody created, so every alert is a 400
    (the gateway drops a signal whose owner does not exist) and nothing is created."""
    result, mine = run_a1(tmp_path, "kubernaut")
    assert mine["failed"] == N and mine["accepted"] == 0
    assert set(result.records["status"]) == {400}
    assert result.requirement.status == "FAIL", result.requirement.details


def test_repeated_alerts_are_reported_as_duplicates(tmp_path: Path) -> None:
    """``unique: false`` names one workload on purpose: its RR stays live (slow phases),
    so every repeat is a 202. (Not followed: its RR would outlast the test.)"""
    slow = {"remediation_phase_s": [30, 30, 30, 30]}
    result, mine = run_a1(tmp_path, "kubernaut", **{**POOL, "alerts": {
        "unique": False, "workloads": {"create": 4}}, "remediation": {"follow": False}},
        embedded=slow)  # fmt: skip
    assert mine["accepted"] == 1 and mine["duplicate"] == N - 1
    req = result.requirement
    assert req.details["outcomes"]["duplicate"] == N - 1
    assert req.details["success_rate"] == pytest.approx(1 / N)
    assert req.status == "FAIL"  # duplicates are not successes


def test_legacy_cooldown_fails_repeats_and_unique_alerts_avoid_it(tmp_path: Path) -> None:
    result, mine = run_a1(tmp_path, "kubernaut-legacy", alerts={"unique": False})
    assert mine["accepted"] == 1 and mine["failed"] == N - 1
    assert set(result.records.loc[result.records["outcome"] == "failed", "error"]) == {"http_5xx"}


def test_concurrency_above_the_limit_is_throttled(tmp_path: Path) -> None:
    limited = {"workers": 2, "service_ms": 20, "max_concurrent_requests": 4, **FAST_RR}
    pool = {**POOL, "alerts": {"workloads": {"create": 40}}}
    with context(tmp_path, "kubernaut", embedded=limited, **pool) as ctx:
        plan = make_plan(ctx, ["high_memory"], mode="closed", concurrency=16, duration_s=1.0)
        outcome = execute(ctx, plan, "closed", progress=False)
        mine = counted_alike(ctx, outcome.records)
    assert mine["throttled"] > 0 and mine["accepted"] > 0
    assert mine["failed"] == 0 and mine["duplicate"] <= outcome.pool["to_busy"]
    throttled = outcome.records[outcome.records["outcome"] == "throttled"]
    assert set(throttled["status"]) == {429}
    assert outcome.load.summary["outcomes"]["throttled"] == mine["throttled"]


def test_a_wrong_token_fails_fast_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KT_SERVICE_TOKEN", "the-right-token-1234")
    monkeypatch.setenv("KT_CLIENT_TOKEN", "a-wrong-token-5678")
    with context(tmp_path, "kubernaut", target={"auth_token_env": "KT_CLIENT_TOKEN"},
                 embedded={"auth_token_env": "KT_SERVICE_TOKEN"}) as ctx:  # fmt: skip
        check = check_auth(ctx.params, webhook_url=ctx.target_url)
        row = check_target(ctx.params, health_url=ctx.health_url,  # the readiness table's
                           webhook_url=ctx.target_url)  # fmt: skip
        with pytest.raises(AuthError) as err:
            a1_response_time.run(ctx, progress=False)
        monkeypatch.setenv("KT_CLIENT_TOKEN", "the-right-token-1234")
        fixed = check_auth(ctx.params, webhook_url=ctx.target_url)
    assert check.status == "failed" and check.detail.startswith("authentication failed")
    assert row.name == "target" and row.blocking and row.detail == check.detail
    message = str(err.value)
    assert "\n" not in message and message.startswith("authentication failed")
    assert "401" in message and "$KT_CLIENT_TOKEN" in message and "kubectl create token" in message
    assert "a-wrong-token" not in message and "the-right-token" not in message
    assert fixed.status == "ok" and "accepted" in fixed.detail
    assert not (ctx.records_dir / "A1.csv").exists()  # refused before any load was sent
