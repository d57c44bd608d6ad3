"""The workload scheduler: free workloads first, busy ones only when none is free."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from kubetest.engine.pool import WorkloadScheduler, needed_workloads, owner_fingerprint

NS = "test-workloads"


def created(rr: str, namespace: str = "kubernaut-system") -> bytes:
    return json.dumps({"status": "created", "remediationRequestName": rr,
                       "remediationRequestNamespace": namespace}).encode()  # fmt: skip


def test_owner_fingerprint_is_the_gateways() -> None:
    # pkg/gateway/types/fingerprint.go: SHA256("prod:Deployment:payment-api")
    want = hashlib.sha256(b"prod:Deployment:payment-api").hexdigest()
    assert owner_fingerprint("prod", "payment-api") == want
    assert (
        owner_fingerprint("prod", "payment-api", cluster="east")
        == hashlib.sha256(b"east:prod:Deployment:payment-api").hexdigest()
    )


def test_free_workloads_first_then_round_robin_over_busy_ones() -> None:
    s = WorkloadScheduler(["a", "b", "c"], NS)
    got = [s.acquire() for _ in range(3)]
    assert sorted(got) == ["a", "b", "c"] and s.stats.to_free == 3
    for i, name in enumerate(got):
        s.answered(name, "accepted", created(f"rr-{i}"))
    assert s.free_count() == 0
    extra = s.acquire()
    assert extra in got and s.stats.to_busy == 1
    s.answered(extra, "duplicate", b"{}")
    assert s.stats.created == 3 and s.stats.duplicate == 1


def test_a_terminal_remediation_frees_its_workload() -> None:
    s = WorkloadScheduler(["a", "b"], NS)
    a = s.acquire()
    s.answered(a, "accepted", created("rr-a"))
    b = s.acquire()
    s.answered(b, "accepted", created("rr-b"))
    s.remediation(owner_fingerprint(NS, a), "rr-a", terminal=False)  # Processing
    assert s.free_count() == 0
    s.remediation(owner_fingerprint(NS, a), "rr-a", terminal=True)
    assert s.free_count() == 1 and s.acquire() == a and s.stats.to_busy == 0
    assert s.stats.freed == 1


def test_a_refused_request_leaves_its_workload_free() -> None:
    s = WorkloadScheduler(["a"], NS)
    for outcome in ("failed", "throttled", "rejected"):
        name = s.acquire()
        s.answered(name, outcome, b"")
        assert s.free_count() == 1
    assert s.stats.to_busy == 0


def test_terminal_seen_before_the_201_keeps_the_workload_free() -> None:
    """A fast remediation can end before its 201 is read: the late answer must not
    mark the workload busy for ever."""
    s = WorkloadScheduler(["a"], NS)
    name = s.acquire()
    s.remediation(owner_fingerprint(NS, name), "rr-x", terminal=True)
    s.answered(name, "accepted", created("rr-x"))
    assert s.free_count() == 1


def test_an_older_runs_terminal_rr_does_not_free_a_new_one() -> None:
    s = WorkloadScheduler(["a"], NS)
    name = s.acquire()
    s.answered(name, "accepted", created("rr-new"))
    s.remediation(owner_fingerprint(NS, name), "rr-old", terminal=True)
    assert s.free_count() == 0


def test_a_live_rr_from_before_the_run_makes_its_workload_busy() -> None:
    s = WorkloadScheduler(["a", "b"], NS)
    s.remediation(owner_fingerprint(NS, "a"), "rr-left-over", terminal=False)
    assert s.stats.busy_at_start == 1
    assert [s.acquire(), s.acquire()] == ["b", "a"]  # b is free; a only when nothing is
    assert s.stats.to_busy == 1


def test_other_owners_are_ignored() -> None:
    s = WorkloadScheduler(["a"], NS)
    s.remediation(owner_fingerprint("elsewhere", "a"), "rr", terminal=False)
    assert s.free_count() == 1


def test_the_controller_namespace_comes_from_the_first_answer() -> None:
    s = WorkloadScheduler(["a", "b"], NS)
    seen: list[str] = []
    s.on_controller_namespace(seen.append)
    s.answered(s.acquire(), "accepted", created("rr-1", "kubernaut-system"))
    s.answered(s.acquire(), "accepted", created("rr-2", "other"))
    assert seen == ["kubernaut-system"] and s.stats.controller_namespace == "kubernaut-system"
    late: list[str] = []
    s.on_controller_namespace(late.append)
    assert late == ["kubernaut-system"]


@pytest.mark.parametrize("seed", range(20))
def test_never_a_busy_workload_while_a_free_one_exists(seed: int) -> None:
    """Random interleavings of sends, answers and remediation events: whenever the
    scheduler hands out a busy workload, none was free."""
    rng = random.Random(seed)
    names = [f"w{i}" for i in range(rng.randint(1, 6))]
    s = WorkloadScheduler(names, NS)
    in_flight: list[str] = []
    live: dict[str, str] = {}  # workload -> rr name
    counter = 0
    for _ in range(400):
        step = rng.random()
        if step < 0.45:
            free_before = s.free_count()
            busy_before = s.stats.to_busy
            name = s.acquire()
            if s.stats.to_busy > busy_before:
                assert free_before == 0
            else:
                assert name not in in_flight and name not in live
            in_flight.append(name)
        elif step < 0.8 and in_flight:
            name = in_flight.pop(rng.randrange(len(in_flight)))
            if name in live:
                s.answered(name, "duplicate", b"")
            elif rng.random() < 0.8:
                counter += 1
                live[name] = f"rr-{counter}"
                s.answered(name, "accepted", created(live[name]))
            else:
                s.answered(name, "failed", b"")
        elif live:
            name = rng.choice(sorted(live))
            s.remediation(owner_fingerprint(NS, name), live.pop(name), terminal=True)


def test_needed_workloads_is_littles_law() -> None:
    assert needed_workloads(10.0, 4.2) == 42
    assert needed_workloads(10.0, 0.0) == 0
    assert needed_workloads(0.0, 3.0) == 0


def test_the_pool_report_sizes_the_pool_on_created_remediations() -> None:
    """Little's law on the rate of alerts taken in (201 and 202: a 202 would have been a
    201 with a free workload); 429s answered at once keep no workload busy."""
    from kubetest.workbook.loadtest import pool_report

    s = WorkloadScheduler(["a", "b"], NS)
    for _ in range(3):
        s.answered(s.acquire(), "accepted", created("rr"))
    summary = {"duration_s": 10.0, "achieved_rate_per_s": 5000.0,
               "outcomes": {"accepted": 60, "duplicate": 40, "throttled": 49_900}}  # fmt: skip
    report = pool_report(s, summary, lifetime_s=3.0)
    assert report["needed"] == 30 and report["to_busy"] == 1
    assert report["finding"].startswith(
        "pool too small: 2 workloads, rate × time to terminal ≈ 30 needed"
    )
    quiet = WorkloadScheduler(["a"], NS)
    assert "finding" not in pool_report(quiet, summary, None)
    unknown = pool_report(s, summary, None)
    assert unknown["needed"] is None and "time to terminal unknown" in unknown["finding"]
