"""The RemediationRequest follower, against a stand-in Kubernetes API on 127.0.0.1.

The follower is the real thing (the ``kubernetes`` client, a kubeconfig, watch or list
calls); only the API server is a stand-in (tests/kube_standin.py). The end-to-end tests
send alerts to the reference target in the kubernaut profile, mirror the signals it
created into the stand-in (as the real gateway creates CRDs) and check that A1 and A4 turn
them into time-to-remediation figures and verified actions. Times are only bounded from
below (a phase cannot be seen before it happens), never from above.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_standin import COMPLETES, FAILS, KubeStandIn

from kubetest.alerts import ACTIONS
from kubetest.remediation import RemediationFollower
from kubetest.remediation_result import Signal
from kubetest.workbook import a1_response_time, a4_actions
from kubetest.workbook.context import TestContext

pytestmark = pytest.mark.timeout(120)
NS = "test-workloads"
SCRIPT_S = COMPLETES[-1][0]  # a scripted remediation takes this long after creation


@pytest.fixture
def standin(tmp_path: Path) -> Any:
    with KubeStandIn() as api:
        api.kubeconfig_path = api.kubeconfig(tmp_path / "kubeconfig")
        yield api


def follower(
    standin: Any, namespaces: list[str] | None = None, **kwargs: Any
) -> RemediationFollower:
    return RemediationFollower.from_kubeconfig(
        standin.kubeconfig_path, [NS] if namespaces is None else namespaces, **kwargs
    )


@pytest.mark.parametrize("mode", ["watch", "poll"])
def test_signals_are_followed_to_their_terminal_phase(standin: Any, mode: str) -> None:
    with follower(standin, mode=mode, poll_interval_s=0.05, max_requests_per_s=50) as f:
        signals = []
        for i in range(4):
            sent = time.time()
            standin.create(NS, f"rr-{i}", fingerprint=f"{i:064x}",
                           signal_labels={"kubetest_run": "r1", "kubetest_seq": str(i)},
                           script=FAILS if i == 3 else COMPLETES)  # fmt: skip
            # one way each to find it: the 201's name, the fingerprint label, run + seq
            how = [{"name": f"rr-{i}"}, {"fingerprint": f"{i:064x}"}, {"run": "r1"}][i % 3]
            signals.append(Signal(i, sent, NS, **how))
        result = f.wait_for(signals, timeout_s=20)
    summary = result.summary()
    assert not result.timed_out and result.errors == []
    assert summary["phases"]["Completed"] == 3 and summary["phases"]["Failed"] == 1
    assert summary["phases"]["pending"] == summary["phases"]["not_found"] == 0
    ttr = summary["time_to_remediation_s"]
    assert ttr["n"] == 3 and ttr["p50"] >= SCRIPT_S - 0.02  # not seen before it happened
    assert summary["time_to_terminal_s"]["n"] == 4
    assert summary["completed_rate"] == pytest.approx(0.75)
    assert {f.observation.name for f in result.followed} == {f"rr-{i}" for i in range(4)}
    if mode == "watch":  # every phase arrives as an event
        walked = ["Pending", "Processing", "Analyzing", "Executing", "Verifying", "Completed"]
        assert result.followed[0].observation.phases == walked
        assert summary["resolution_s"] == 0.0
    else:
        assert summary["resolution_s"] == pytest.approx(0.05)


def test_polling_keeps_to_its_rate(standin: Any) -> None:
    standin.create(NS, "rr-slow", script=[(0.6, "Completed")])
    t0 = time.monotonic()
    with follower(standin, mode="poll", poll_interval_s=0.01, max_requests_per_s=10) as f:
        result = f.wait_for([Signal(0, time.time(), NS, name="rr-slow")], timeout_s=10)
    elapsed = time.monotonic() - t0
    assert result.followed[0].phase == "Completed"
    assert result.resolution_s == pytest.approx(0.1)  # 1 namespace / 10 per s
    assert standin.requests["list"] <= elapsed * 10 + 2


def test_a_compacted_watch_lists_again(standin: Any) -> None:
    with follower(standin, mode="watch", max_requests_per_s=50) as f:
        standin.create(NS, "rr-a")
        time.sleep(0.1)
        standin.compact()  # the open watch ends with 410 Gone
        standin.create(NS, "rr-b")
        result = f.wait_for(
            [Signal(0, time.time(), NS, name="rr-a"), Signal(1, time.time(), NS, name="rr-b")],
            timeout_s=20,
        )
    assert standin.requests["gone"] >= 1 and standin.requests["list"] >= 2
    assert [x.phase for x in result.followed] == ["Completed", "Completed"]
    # the 410 is one line naming what happened and what to do if it repeats
    expired = [e for e in result.errors if "410 Gone" in e]
    assert len(expired) >= 1 and all("\n" not in e for e in expired)
    assert "listed again" in expired[0] and "remediation.mode: poll" in expired[0]


def test_a_forbidden_list_is_one_line_naming_the_grant(tmp_path: Path) -> None:
    """The follower's list of RemediationRequests refused (403): one line, however often
    it is retried, naming the verbs, the resource and the deploy/ file that grants them."""
    with KubeStandIn(denied={("list", "kubernaut.ai", "remediationrequests", NS)}) as api:
        path = api.kubeconfig(tmp_path / "kubeconfig")
        with RemediationFollower.from_kubeconfig(
            path, [NS], mode="poll", poll_interval_s=0.05, max_requests_per_s=50
        ) as f:
            deadline = time.monotonic() + 10
            while api.requests["forbidden"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            result = f.wait_for([Signal(0, time.time(), NS, name="rr-x")], timeout_s=0.2)
    assert api.requests["forbidden"] >= 3
    assert len(result.errors) == 1, result.errors
    line = result.errors[0]
    assert "not allowed to list/watch remediationrequests.kubernaut.ai" in line
    assert f"namespace {NS} (403)" in line and "deploy/04-remediationrequests-role.yaml" in line
    assert (
        Path(__file__).resolve().parents[1] / "deploy/04-remediationrequests-role.yaml"
    ).is_file()


def test_unfinished_and_missing_requests_are_counted_not_timed(standin: Any) -> None:
    standin.create(NS, "rr-stuck", script=[(0.05, "Analyzing")])
    standin.create(NS, "rr-old", script=[])  # Pending, and already there before following
    with follower(standin, mode="watch") as f:
        result = f.wait_for(
            [
                Signal(0, time.time(), NS, name="rr-stuck"),
                Signal(1, time.time(), NS, name="rr-never"),
            ],
            timeout_s=0.5,
        )
    summary = result.summary()
    assert result.timed_out
    assert summary["phases"]["pending"] == 1 and summary["phases"]["not_found"] == 1
    assert summary["time_to_remediation_s"]["n"] == 0
    assert summary["time_to_remediation_s"]["p95"] is None


def test_blocked_is_not_terminal(standin: Any) -> None:
    """The gateway keeps deduplicating while an RR is Blocked (IsTerminalPhase,
    pkg/gateway/processing/phase_checker.go): the follower follows through it."""
    script = [(0.05, "Blocked"), (0.5, "Executing"), (0.6, "Completed")]
    seen: list[tuple[str, str]] = []
    with follower(standin) as f:
        f.on_phase(lambda obs: seen.append((obs.name, obs.phase)))
        standin.create(NS, "rr-b1", script=script)
        result = f.wait_for([Signal(0, time.time(), NS, name="rr-b1")], timeout_s=10)
    assert result.followed[0].phase == "Completed" and not result.timed_out
    assert result.followed[0].observation.phases == ["Pending", "Blocked", "Executing", "Completed"]
    assert seen == [("rr-b1", p) for p in ("Pending", "Blocked", "Executing", "Completed")]


def test_an_rr_left_waiting_is_counted_apart(standin: Any, monkeypatch: Any) -> None:
    """Blocked (or AwaitingApproval) may last for ever: once everything is terminal or
    waiting and still, the wait ends and the waiting ones are counted as such."""
    import kubetest.remediation as remediation

    monkeypatch.setattr(remediation, "WAITING_GRACE_S", 0.3)
    with follower(standin) as f:
        standin.create(NS, "rr-w1", script=[(0.05, "AwaitingApproval")])
        standin.create(NS, "rr-w2", script=COMPLETES)
        result = f.wait_for(
            [Signal(0, time.time(), NS, name="rr-w1"), Signal(1, time.time(), NS, name="rr-w2")],
            timeout_s=8,
        )
    summary = result.summary()
    assert not result.timed_out and result.waited_s < 8
    assert summary["phases"]["waiting"] == 1 and summary["phases"]["Completed"] == 1
    assert summary["waiting"] == {"Blocked": 0, "AwaitingApproval": 1}


def test_a_namespace_added_later_is_followed(standin: Any) -> None:
    """The controller namespace may only be known from the first 201."""
    with follower(standin, namespaces=[]) as f:
        standin.create("kubernaut-system", "rr-late", script=COMPLETES)
        f.add_namespace("kubernaut-system")
        result = f.wait_for(
            [Signal(0, time.time(), "kubernaut-system", name="rr-late")], timeout_s=10
        )
    assert result.followed[0].phase == "Completed"
    assert result.summary()["namespaces"] == ["kubernaut-system"]


def test_an_unreachable_api_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with KubeStandIn() as api:  # stopped before the follower starts: nobody answers
        path = api.kubeconfig(tmp_path / "kubeconfig")
    f = RemediationFollower.from_kubeconfig(path, [NS], mode="poll", poll_interval_s=0.05)
    with f:
        result = f.wait_for([Signal(0, time.time(), NS, name="rr-x")], timeout_s=0.5)
    assert result.timed_out and result.errors
    assert result.summary()["phases"]["not_found"] == 1


# ------------------------------------------------------------------ A1 and A4 end to end


def context(
    tmp_path: Path, test: str, kubeconfig: Path | str | None, **sections: Any
) -> TestContext:
    embedded = {"workers": 4, "service_ms": 2, "service_dist": "const",
                **sections.pop("embedded", {})}  # fmt: skip
    params = {
        "target": {"url": "embedded", "api": "kubernaut", "embedded": embedded},
        "remediation": {"timeout_min": 0.5, "mode": "watch"},
        "environment": {"kubeconfig": str(kubeconfig) if kubeconfig else None},
        **sections,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return TestContext.open(test, str(path), str(tmp_path / "session"))


#: The embedded gateway's remediations: phase means (processing, analyzing, executing,
#: verifying), each drawn between 0.5x and 1.5x; Completed comes at ~their sum.
PHASES_S = [0.05, 0.1, 0.05, 0.1]


def test_a1_reports_time_to_remediation_beside_webhook_latency(tmp_path: Path) -> None:
    """Against the embedded gateway and its own cluster (``kubeconfig: embedded``): every
    201's RR, created in the controller namespace, is followed to Completed."""
    ctx = context(
        tmp_path,
        "A1",
        "embedded",
        a1_response_time={
            "rate_per_min": 2400,
            "duration_min": 0.02,
            "types": ["high_memory", "pod_crash"],
        },
        alerts={"workloads": {"create": 60}},
        embedded={"remediation_phase_s": PHASES_S},
    )
    try:
        result = a1_response_time.run(ctx, progress=False)
    finally:
        ctx.close()
    accepted = int((result.records["outcome"] == "accepted").sum())
    assert accepted == len(result.records) == 48
    details = result.requirement.details
    assert "webhook latency" in details["judged_on"]
    ttr = details["time_to_remediation"]
    assert ttr["namespaces"] == ["kubernaut-system"]  # learned from the first 201
    assert ttr["followed"] == accepted and ttr["phases"]["Completed"] == accepted
    assert ttr["time_to_remediation_s"]["n"] == accepted
    # not seen before it can have happened: the phases' lower bound is half their means
    assert ttr["time_to_remediation_s"]["p50"] >= 0.5 * sum(PHASES_S)
    # webhook latency and time to remediation are different figures: the latter is longer
    assert ttr["time_to_remediation_s"]["p50"] > details["p50"]
    by_phase = ttr["time_to_phase_s"]  # from the RRs' own (whole-second) timestamps
    assert by_phase["Completed"]["n"] == accepted and by_phase["Executing"]["n"] == accepted
    assert by_phase["Executing"]["p50"] <= by_phase["Completed"]["p50"]
    assert (ctx.records_dir / "A1_remediation.csv").exists()
    assert result.remediation is not None and not result.remediation.timed_out


def test_a4_verify_kubernetes_counts_only_completed_remediations(tmp_path: Path) -> None:
    """A share of the embedded gateway's remediations fail at Executing: A4 counts only
    the Completed ones as executed, whatever the 201 said."""
    ctx = context(tmp_path, "A4", "embedded",
                  a4_actions={"actions": "all", "verify": "kubernetes"},
                  alerts={"workloads": {"create": 60}},
                  embedded={"remediation_phase_s": PHASES_S, "remediation_fail_rate": 0.1,
                            "seed": 11})  # fmt: skip
    try:
        result = a4_actions.run(ctx)
    finally:
        ctx.close()
    d = result.requirement.details
    frame = result.actions
    failed = sorted(frame.loc[frame["verified"] == "Failed", "action"])
    assert d["actions_tested"] == len(ACTIONS)
    assert 0 < len(failed) < len(ACTIONS) and d["failed_actions"] == failed
    assert d["actions_verified"] == len(ACTIONS) - len(failed)
    assert "RemediationRequest reached Completed" in d["judged_on"]
    assert d["time_to_remediation"]["phases"]["Failed"] == len(failed)
    assert set(frame["remediation"].dropna()) and all(
        str(n).startswith("rr-") for n in frame["remediation"].dropna() if n
    )
    assert set(frame["remediation_namespace"].dropna()) <= {"kubernaut-system", ""}


@pytest.mark.parametrize(
    ("api", "kubeconfig", "reason"),
    [
        ("kubernaut", False, "needs environment.kubeconfig"),
        ("webhook", True, "use target.api kubernaut"),
    ],
)
def test_a4_verify_kubernetes_without_its_prerequisites_is_inconclusive(
    tmp_path: Path, standin: Any, api: str, kubeconfig: bool, reason: str
) -> None:
    ctx = context(tmp_path, "A4", standin.kubeconfig_path if kubeconfig else None,
                  a4_actions={"actions": list(ACTIONS[:3]), "verify": "kubernetes"})  # fmt: skip
    ctx.params.target.api = api
    try:
        result = a4_actions.run(ctx)
    finally:
        ctx.close()
    assert result.requirement.status == "INCONCLUSIVE"
    assert any(reason in r for r in result.requirement.details["reasons"])


def test_the_followers_fault_lines_are_concerns_in_the_report() -> None:
    from kubetest.report.findings import findings_lists
    from kubetest.results import StoredResult, Summary

    line = "watch kn: not allowed to list/watch ... deploy/04-remediationrequests-role.yaml"
    a1 = StoredResult(title="A1", started=None, finished=None,
                      remediation={"followed": 1, "errors": [line]})  # fmt: skip
    _, concerns, _ = findings_lists(Summary(session="s", complete=True), {"A1": a1}, 5.0)
    assert concerns == [f"A1: RemediationRequest follower: {line}"]
