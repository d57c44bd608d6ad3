"""What following remediation found: the signals followed, what was observed of each
RemediationRequest, and the statistics the report shows (time to remediation, to each
phase, phase counts).

Apart from the follower (``remediation``), which talks to the Kubernetes API: these are
plain data and pure functions of it, read by A1, A4 and the report. The RR's own
timestamps (``status.phaseProgress.*StartTime``, ``status.completedAt``, whole seconds on
the server's clock) give the time from creation to Processing, Analyzing, Executing and
Completed; time to remediation is measured on kubetest's clock (see ``remediation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from kubetest.params import TERMINAL_PHASES as _TERMINAL
from kubetest.params import WAITING_PHASES as _WAITING

#: Phases after which the gateway accepts a new signal for the owner (see the docstring).
TERMINAL_PHASES: tuple[str, ...] = tuple(_TERMINAL)
#: Non-terminal phases that can wait indefinitely (a cooldown, a human's approval).
WAITING_PHASES: tuple[str, ...] = tuple(_WAITING)
COMPLETED = "Completed"
#: Phase start times in an RR's status (``api/remediation/v1alpha1``), creation-relative.
PHASE_TIMES: dict[str, str] = {
    "Processing": "processingStartTime",
    "Analyzing": "analyzingStartTime",
    "Executing": "executingStartTime",
}
FINGERPRINT_LABEL = "kubernaut.ai/signal-fingerprint"
RUN_LABEL, SEQ_LABEL = "kubetest_run", "kubetest_seq"


@dataclass(frozen=True)
class Signal:
    """A created signal to follow: ``sent_epoch`` on kubetest's clock, and at least one
    way to find its RemediationRequest (``name``, ``fingerprint``, or ``run`` + ``seq``)."""

    seq: int
    sent_epoch: float
    namespace: str
    name: str | None = None
    fingerprint: str | None = None
    run: str | None = None


@dataclass
class Observation:
    """What the follower saw of one RemediationRequest (times on kubetest's clock)."""

    namespace: str
    name: str
    phase: str = ""
    fingerprint: str = ""
    run: str = ""
    seq: int | None = None
    first_seen_epoch: float = 0.0
    terminal_epoch: float | None = None
    before_start: bool = False  # already terminal when the follower first listed it
    phases: list[str] = field(default_factory=list)
    created: str = ""  # metadata.creationTimestamp (server clock)
    completed: str = ""  # status.completedAt (server clock)
    # seconds from creation to each phase's start (and to completedAt), server clock
    phase_offsets: dict[str, float] = field(default_factory=dict)


def parse_epoch(text: Any) -> float | None:
    """An RFC 3339 time (as Kubernetes writes ``metav1.Time``) in Unix seconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def phase_offsets(obj: dict[str, Any]) -> dict[str, float]:
    """Seconds from ``metadata.creationTimestamp`` to each phase the RR's status dates."""
    created = parse_epoch((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return {}
    status = obj.get("status") or {}
    progress = status.get("phaseProgress") or {}
    stamps = {phase: progress.get(key) for phase, key in PHASE_TIMES.items()}
    if status.get("overallPhase") == COMPLETED:
        stamps[COMPLETED] = status.get("completedAt")
    out: dict[str, float] = {}
    for phase, text in stamps.items():
        ts = parse_epoch(text)
        if ts is not None:
            out[phase] = max(0.0, ts - created)
    return out


def new_observation(obj: dict[str, Any], now: float) -> Observation:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    signal_labels = spec.get("signalLabels") or {}
    seq_text = signal_labels.get(SEQ_LABEL)
    try:
        seq = int(seq_text) if seq_text is not None else None
    except ValueError:
        seq = None
    return Observation(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        # the spec holds the whole fingerprint; the label is cut to 63 characters
        fingerprint=str(spec.get("signalFingerprint") or labels.get(FINGERPRINT_LABEL) or ""),
        run=str(signal_labels.get(RUN_LABEL) or ""),
        seq=seq,
        first_seen_epoch=now,
        created=str(meta.get("creationTimestamp") or ""),
    )


@dataclass
class Followed:
    """One signal joined to its RemediationRequest (``observation`` None: never seen)."""

    signal: Signal
    observation: Observation | None

    @property
    def phase(self) -> str:
        return self.observation.phase if self.observation else ""

    @property
    def time_to_terminal_s(self) -> float | None:
        obs = self.observation
        if obs is None or obs.terminal_epoch is None or obs.before_start:
            return None
        return max(0.0, obs.terminal_epoch - self.signal.sent_epoch)


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"n": len(values), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(arr.max()), "mean": float(arr.mean())}  # fmt: skip


@dataclass
class FollowResult:
    """Every followed signal, and the figures the report shows beside webhook latency."""

    followed: list[Followed]
    mode: str
    resolution_s: float
    waited_s: float
    timed_out: bool
    api_calls: int
    errors: list[str]
    terminal: tuple[str, ...] = TERMINAL_PHASES
    waiting: tuple[str, ...] = WAITING_PHASES
    namespaces: tuple[str, ...] = ()

    def phase_counts(self) -> dict[str, int]:
        """Terminal phases, ``waiting`` (Blocked, AwaitingApproval: may wait for ever),
        ``pending`` (seen, still moving) and ``not_found``."""
        counts = dict.fromkeys(self.terminal, 0) | {"waiting": 0, "pending": 0, "not_found": 0}
        for f in self.followed:
            if f.observation is None:
                counts["not_found"] += 1
            elif f.phase in self.terminal:
                counts[f.phase] += 1
            elif f.phase in self.waiting:
                counts["waiting"] += 1
            else:
                counts["pending"] += 1
        return counts

    def waiting_phases(self) -> dict[str, int]:
        """How many followed RRs stand in each waiting phase (Blocked, AwaitingApproval)."""
        return {w: sum(f.phase == w for f in self.followed) for w in self.waiting}

    def time_to_phase(self) -> dict[str, Any]:
        """Percentiles of seconds from an RR's creation to the start of Processing,
        Analyzing, Executing and to Completed, from the RR's own timestamps (server
        clock, whole seconds: ``resolution_s`` 1). Completed includes verification."""
        out: dict[str, Any] = {}
        for phase in (*PHASE_TIMES, COMPLETED):
            values = [f.observation.phase_offsets[phase] for f in self.followed
                      if f.observation and phase in f.observation.phase_offsets]  # fmt: skip
            out[phase] = _percentiles(values)
        out["measured_as"] = "RR timestamp - metadata.creationTimestamp, server clock"
        out["resolution_s"] = 1.0
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts, time-to-remediation (Completed) and time-to-terminal (any
        terminal phase) percentiles in seconds, and how they were measured."""
        done = [f.time_to_terminal_s for f in self.followed if f.phase == COMPLETED]
        ended = [f.time_to_terminal_s for f in self.followed if f.phase in self.terminal]
        return {
            "followed": len(self.followed),
            "phases": self.phase_counts(),
            "completed_rate": (
                sum(f.phase == COMPLETED for f in self.followed) / len(self.followed)
                if self.followed
                else None
            ),
            "time_to_remediation_s": _percentiles([v for v in done if v is not None]),
            "time_to_terminal_s": _percentiles([v for v in ended if v is not None]),
            "measured_as": "terminal phase observed - request sent, on kubetest's clock",
            "time_to_phase_s": self.time_to_phase(),
            "waiting": self.waiting_phases(),
            "namespaces": list(self.namespaces),
            "mode": self.mode,
            "resolution_s": self.resolution_s,
            "waited_s": self.waited_s,
            "timed_out": self.timed_out,
            "api_calls": self.api_calls,
            "errors": self.errors[:5],
        }

    def frame(self) -> pd.DataFrame:
        rows = []
        for f in self.followed:
            obs = f.observation
            rows.append({
                "seq": f.signal.seq, "namespace": f.signal.namespace,
                "remediation": obs.name if obs else "", "phase": f.phase,
                "phases": " > ".join(obs.phases) if obs else "",
                "time_to_terminal_s": f.time_to_terminal_s,
            })  # fmt: skip
        return pd.DataFrame(rows)
