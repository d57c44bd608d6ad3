"""The stand-in Remediation Orchestrator's plan for one RemediationRequest.

Which phases a RemediationRequest walks through, when, and with which status fields, as
Kubernaut's orchestrator writes them (commit d5a4a87, 2026-08-22):
``internal/controller/remediationorchestrator/terminal_transitions.go``
(``applyPhaseTransitionFields``, ``applyFailedTransitionFields``), ``reconcile_loop.go``
(Pending and ``status.startTime``), ``blocked_handler.go`` (``handleCooldownExpired``) and
``pkg/remediationorchestrator/phase/types.go`` (Blocked is not terminal). The in-memory
cluster (``target/cluster.py``) applies the steps on its clock.
"""

from __future__ import annotations

import random
from typing import Any

from kubetest.target.kube_rules import rfc3339

#: How long a new RemediationRequest stays Pending before the orchestrator starts
#: SignalProcessing (one reconcile; not a knob).
PENDING_S = 0.05

#: One lifecycle step: (due, phase, status fields, runs the action, failure reason).
#: A status value of ``None`` removes the field; a nested ``None`` is stamped with ``due``.
Step = tuple[float, str, dict[str, Any], bool, "str | None"]


def _draw(rng: random.Random, mean: float) -> float:
    """A phase duration: uniform on [mean/2, 3·mean/2] (mean ``mean``), reproducible
    with the target's ``seed``."""
    return mean * (0.5 + rng.random())


def lifecycle(cfg: Any, rng: random.Random, t0: float, failure: str | None) -> list[Step]:
    """The steps of one RemediationRequest created at ``t0``.

    ``cfg`` is the target's config (``remediation_phase_s``, ``blocked_rate``,
    ``blocked_s``, ``remediation_fail_rate``); ``failure`` forces a failure at Executing.
    The draws from ``rng`` come in a fixed order so a seeded target replays exactly."""
    processing, analyzing, executing, verifying = (_draw(rng, d) for d in cfg.remediation_phase_s)
    blocked = rng.random() < cfg.blocked_rate
    u_fail = rng.random()
    if failure is None and u_fail < cfg.remediation_fail_rate:
        failure = "workflow execution failed (injected: remediation_fail_rate)"
    steps: list[Step] = [(t0, "Pending", {"startTime": rfc3339(t0)}, False, None)]
    t = t0 + PENDING_S
    if blocked and failure is not None:
        # A time-based block (checked before SignalProcessing): Failed when it expires.
        until = t + cfg.blocked_s
        routing = {
            "blockReason": "ConsecutiveFailures",
            "blockMessage": "consecutive failures for this fingerprint: cooling down",
            "blockedUntil": rfc3339(until),
        }
        steps.append((t, "Blocked", {"routingStatus": routing}, False, None))
        reason = "cooldown expired after blocking due to ConsecutiveFailures"
        completion = {"failurePhase": "Blocked", "failureReason": reason}
        steps.append(
            (until, "Failed", {"completionStatus": completion}, True, f"blocked: {reason}")
        )
        return steps
    steps.append((t, "Processing", {"phaseProgress": {"processingStartTime": None}}, False, None))
    t += processing
    steps.append((t, "Analyzing", {"phaseProgress": {"analyzingStartTime": None}}, False, None))
    t += analyzing
    if blocked:
        # An event-based block before the workflow (another one holds the target):
        # back to Analyzing once it clears, then on as usual.
        routing = {
            "blockReason": "ResourceBusy",
            "blockMessage": "another WorkflowExecution is running on the target",
        }
        steps.append((t, "Blocked", {"routingStatus": routing}, False, None))
        t += cfg.blocked_s
        again = {"phaseProgress": {"analyzingStartTime": None}, "routingStatus": None}
        steps.append((t, "Analyzing", again, False, None))
    steps.append((t, "Executing", {"phaseProgress": {"executingStartTime": None}}, True, failure))
    t += executing
    if failure is not None:
        completion = {"failurePhase": "WorkflowExecution", "failureReason": failure}
        steps.append((t, "Failed", {"completionStatus": completion}, False, None))
        return steps
    steps.append((t, "Verifying", {}, False, None))
    t += verifying
    steps.append((t, "Completed", {"completionStatus": {"outcome": "Remediated"}}, False, None))
    return steps
