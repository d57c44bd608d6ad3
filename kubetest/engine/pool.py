"""Which workload each alert names, so deduplication does not hide the load.

The Kubernaut gateway keys deduplication on an alert's owner (``namespace:Deployment:name``,
SHA-256) and answers 202 for as long as that owner's RemediationRequest is not terminal
(``pkg/gateway/processing/phase_checker.go`` and ``pkg/gateway/types/fingerprint.go`` at
commit d5a4a87). A load that names a busy workload measures the dedup path, not
processing. So each request is handed a *free* workload: one that never had a
RemediationRequest, or whose last one is terminal. The scheduler learns from the answers
(201: the workload now has a live RR; a refusal or failure: it got none) and from the
RemediationRequest follower (terminal: free again; a live RR from an earlier run: busy).

When no workload is free the request is still sent (the loop stays open, the schedule is
kept) to the one least recently used, and is expected back as a duplicate; the count of
such requests tells the report the pool was too small (see ``needed_workloads``).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any


def owner_fingerprint(
    namespace: str, name: str, kind: str = "Deployment", cluster: str = ""
) -> str:
    """The gateway's fingerprint of an owner: SHA-256 of ``[cluster:]namespace:kind:name``
    (``CalculateClusterAwareFingerprint``)."""
    text = f"{cluster}:{namespace}:{kind}:{name}" if cluster else f"{namespace}:{kind}:{name}"
    return hashlib.sha256(text.encode()).hexdigest()


def needed_workloads(rate_per_s: float, time_to_terminal_s: float) -> int:
    """Little's law: workloads busy at once = arrival rate × time each stays busy."""
    if rate_per_s <= 0 or not math.isfinite(time_to_terminal_s) or time_to_terminal_s <= 0:
        return 0
    return math.ceil(rate_per_s * time_to_terminal_s)


@dataclass
class _Slot:
    in_flight: int = 0
    rr: str | None = None  # the live (non-terminal) RemediationRequest's name, "" if unnamed
    queued: bool = False  # in the free queue


@dataclass
class PoolStats:
    """What the scheduler did: requests sent to a free workload or, for lack of one, to a
    busy one; answers that created or joined a RemediationRequest; workloads freed."""

    workloads: int
    to_free: int = 0
    to_busy: int = 0
    created: int = 0
    duplicate: int = 0
    freed: int = 0
    busy_at_start: int = 0
    controller_namespace: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workloads": self.workloads, "to_free": self.to_free, "to_busy": self.to_busy,
            "created": self.created, "duplicate": self.duplicate, "freed": self.freed,
            "busy_at_start": self.busy_at_start,
            "controller_namespace": self.controller_namespace,
        }  # fmt: skip


class WorkloadScheduler:
    """Hands out workload names, free ones first; thread-safe (the follower's threads tell
    it about RemediationRequests while the engine's loop sends)."""

    def __init__(self, names: list[str], namespace: str) -> None:
        if not names:
            raise ValueError("a workload pool needs at least one workload")
        self.namespace = namespace
        self.names = list(dict.fromkeys(names))
        self._lock = threading.Lock()
        self._slots = {n: _Slot(queued=True) for n in self.names}
        self._free: deque[str] = deque(self.names)
        self._round = cycle(self.names)
        self._by_fp: dict[str, str] = {}
        for n in self.names:  # the RR's label holds the fingerprint cut to 63 characters
            fp = owner_fingerprint(namespace, n)
            self._by_fp[fp] = self._by_fp[fp[:63]] = n
        self._ended: set[str] = set()  # RemediationRequests seen terminal (by name)
        self._started = False
        self._on_namespace: list[Any] = []
        self.stats = PoolStats(len(self.names))

    # -- the engine's side

    def acquire(self) -> str:
        """A free workload, else the next one round-robin (its answer will be a 202)."""
        with self._lock:
            self._started = True
            while self._free:
                name = self._free.popleft()
                slot = self._slots[name]
                slot.queued = False
                if slot.in_flight == 0 and slot.rr is None:
                    slot.in_flight += 1
                    self.stats.to_free += 1
                    return name
            name = next(self._round)
            self._slots[name].in_flight += 1
            self.stats.to_busy += 1
            return name

    def answered(self, name: str, outcome: str, body: bytes = b"") -> None:
        """The service's answer to a request that named ``name``. ``accepted`` (201) and
        ``duplicate`` (202) mean a live RemediationRequest (named in the body); anything
        else leaves the workload as it was."""
        rr: str | None = None
        namespace: str | None = None
        if outcome in ("accepted", "duplicate"):
            rr, namespace = _remediation_ref(body)
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return
            slot.in_flight = max(0, slot.in_flight - 1)
            if outcome == "accepted":
                self.stats.created += 1
            elif outcome == "duplicate":
                self.stats.duplicate += 1
            if outcome in ("accepted", "duplicate") and (rr is None or rr not in self._ended):
                slot.rr = rr or ""
            self._requeue(name, slot)
            fresh = namespace and self.stats.controller_namespace is None
            if fresh:
                self.stats.controller_namespace = namespace
            listeners = list(self._on_namespace) if fresh else []
        for listener in listeners:
            listener(namespace)

    # -- the follower's side

    def on_controller_namespace(self, listener: Any) -> None:
        """Call ``listener(namespace)`` once the first 201/202 names the namespace the
        gateway creates RemediationRequests in (now, if already known)."""
        with self._lock:
            known = self.stats.controller_namespace
            self._on_namespace.append(listener)
        if known:
            listener(known)

    def remediation(self, fingerprint: str, name: str, terminal: bool) -> None:
        """A RemediationRequest of owner ``fingerprint`` was seen in a phase: a terminal one
        frees its workload, a live one keeps it busy (one from an earlier run included)."""
        workload = self._by_fp.get(fingerprint)
        if workload is None:
            return
        with self._lock:
            slot = self._slots[workload]
            if terminal:
                self._ended.add(name)
                if slot.rr is not None and slot.rr in (name, ""):
                    slot.rr = None
                    self.stats.freed += 1
                    self._requeue(workload, slot)
            elif name not in self._ended and slot.rr != name:
                if slot.rr is None and not self._started:
                    self.stats.busy_at_start += 1
                slot.rr = name

    def _requeue(self, name: str, slot: _Slot) -> None:
        if slot.in_flight == 0 and slot.rr is None and not slot.queued:
            slot.queued = True
            self._free.append(name)

    def free_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.in_flight == 0 and s.rr is None)


def _remediation_ref(body: bytes) -> tuple[str | None, str | None]:
    """``remediationRequestName`` and ``remediationRequestNamespace`` of a 201/202 body
    (``pkg/gateway/response_types.go``); a 207's results carry neither."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    name, namespace = doc.get("remediationRequestName"), doc.get("remediationRequestNamespace")
    return (
        name if isinstance(name, str) and name else None,
        namespace if isinstance(namespace, str) and namespace else None,
    )
