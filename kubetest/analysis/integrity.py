"""Integrity: every accepted alert handled exactly once (the guide's "no data corruption").

A 2xx only says the service took the alert. After each load test the alerts it accepted
(records with outcome ``accepted``: their ``seq`` and fingerprint) are reconciled with
what the service recorded having handled — the action history at ``target.actions_url``
(webhook and legacy profiles, and the embedded target whatever its profile), or the
RemediationRequests of the alerts' namespace through ``environment.kubeconfig``
(``kubernaut`` profile: one is created per accepted signal):

* ``lost``: accepted, never handled;
* ``duplicated``: handled more than once (alerts, not extra copies);
* ``unexpected``: handled under this run's ``kubetest_run`` label, never sent by it;
* ``handled``: the entries of this run the service recorded (every copy counted), so
  ``handled = accepted - lost + extra copies + unexpected + handled_unaccepted``.

Entries are this run's when their fingerprint is one the run sent (Alertmanager
fingerprints cover the ``kubetest_run`` and ``kubetest_seq`` labels, so they are unique
to a run and a request) or when they carry the run's token (``run`` in the action
history, ``spec.signalLabels.kubetest_run`` on a RemediationRequest) and a sent ``seq``.
The history is read from the count it had before the load (``since``), page by page, and
polled for a bounded time until every accepted alert shows up or nothing new arrives
for ``SETTLE_S`` seconds (an asynchronous service may still be processing).
"""

from __future__ import annotations

import os
import ssl
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import pandas as pd

from kubetest import control
from kubetest.analysis.verdicts import INTEGRITY_ID, Requirement, Status, per_run
from kubetest.engine.client import GENERATOR_ERRORS
from kubetest.errors import HistoryUnavailable
from kubetest.secrets import scrub_then_cut
from kubetest.tls import verify

#: Stop polling once the run's entries stopped growing for this long (or all showed up).
SETTLE_S = 5.0
#: History entries per page, and at most this many read per check (memory bound).
PAGE = 5_000
MAX_ENTRIES = 2_000_000
#: Seqs listed per category in the details (the counts are exact; the lists are samples).
SAMPLE = 20

TITLE = "Every accepted alert handled exactly once (no data corruption)"
THRESHOLD = "0 lost and 0 duplicated accepted alerts"
COUNT_KEYS = ("accepted", "handled", "lost", "duplicated", "unexpected")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Reconciliation:
    """What was accepted against what the service handled, for one run."""

    accepted: int
    handled: int
    lost: int
    duplicated: int
    unexpected: int
    extra_copies: int = 0
    handled_unaccepted: int = 0
    foreign: int = 0
    lost_seqs: list[int] = field(default_factory=list)
    duplicated_seqs: list[int] = field(default_factory=list)
    unexpected_samples: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in COUNT_KEYS}


def reconcile(records: pd.DataFrame, entries: list[dict[str, Any]], run: str) -> Reconciliation:
    """Count lost, duplicated and unexpected entries (see the module docstring)."""
    rec = records
    # cancelled requests were sent (a stop or an SLO abort cut their wait): the service may
    # have handled them, as ones accepted elsewhere, never as "never sent"
    sent = rec[~rec["error"].isin(list(GENERATOR_ERRORS - {"cancelled"}))] if len(rec) else rec
    accepted = {int(s) for s in rec.loc[rec["outcome"] == "accepted", "seq"]} if len(rec) else set()
    by_fp = {str(fp): int(seq) for fp, seq in zip(sent["fingerprint"], sent["seq"], strict=True)
             if isinstance(fp, str) and fp}  # fmt: skip
    sent_seqs = {int(s) for s in sent["seq"]}
    copies: Counter[int] = Counter()
    unexpected: list[dict[str, Any]] = []
    foreign = 0
    for e in entries:
        seq = by_fp.get(str(e.get("fingerprint") or ""))
        ours = run and str(e.get("run") or "") == run
        if seq is None and ours:
            seq = _int(e.get("seq"))
            if seq not in sent_seqs:
                unexpected.append({k: e.get(k) for k in ("seq", "fingerprint", "name", "index")
                                   if e.get(k) is not None})  # fmt: skip
                continue
        if seq is None:
            foreign += 1
            continue
        copies[seq] += 1
    lost = sorted(s for s in accepted if copies[s] == 0)
    dup = sorted(s for s, n in copies.items() if n > 1)
    return Reconciliation(
        accepted=len(accepted), handled=sum(copies.values()) + len(unexpected),
        lost=len(lost), duplicated=len(dup), unexpected=len(unexpected),
        extra_copies=sum(n - 1 for n in copies.values() if n > 1),
        handled_unaccepted=sum(1 for s in copies if s not in accepted), foreign=foreign,
        lost_seqs=lost[:SAMPLE], duplicated_seqs=dup[:SAMPLE],
        unexpected_samples=unexpected[:SAMPLE],
    )  # fmt: skip


# -- where the service says what it handled -----------------------------------------------


class History(Protocol):
    """A source of handled-alert entries (dicts with fingerprint / run / seq)."""

    method: str

    def mark(self) -> int | None: ...
    def read(self, since: int | None) -> list[dict[str, Any]]: ...


class ActionHistory:
    """``GET actions_url?since=&limit=``: a JSON list (or ``{"items": [...]}``); entries
    with an ``index`` are paged from ``since``, others are read in one request."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        proxy: control.Proxy = "none",
    ):
        self.url = url
        self.method = f"action history GET {url}"
        self.client = control.client(
            timeout_s=timeout_s, headers=headers, verify=verify, proxy=proxy
        )
        self.requests = 0

    def _get(self, params: dict[str, int]) -> tuple[list[dict[str, Any]], httpx.Response]:
        self.requests += 1
        try:
            resp = self.client.get(self.url, params=params)
        except control.ResponseTooLarge as exc:  # a flood will not turn into a history
            raise HistoryUnavailable(f"GET {self.url} is not an action history ({exc})") from None
        if resp.status_code in (404, 405, 501):
            raise HistoryUnavailable(
                f"no action history: GET {self.url} answered {resp.status_code}"
            )
        resp.raise_for_status()
        data = resp.json()
        items = data if isinstance(data, list) else (data or {}).get("items")
        if not isinstance(items, list):
            raise HistoryUnavailable(
                f"GET {self.url} is not an action history (a JSON list expected)"
            )
        return [e for e in items if isinstance(e, dict)], resp

    def mark(self) -> int | None:
        """The history's length before the load (``X-Total-Count``), if it says."""
        _, resp = self._get({"since": 0, "limit": 0})
        return _int(resp.headers.get("x-total-count"))

    def read(self, since: int | None) -> list[dict[str, Any]]:
        start = since or 0
        page, _ = self._get({"since": start, "limit": PAGE})
        if not any("index" in e for e in page):
            return page if since is None else self._get({})[0]  # not paged: read it all
        out: dict[int, dict[str, Any]] = {}
        while page:
            for e in page:
                idx = _int(e.get("index"))
                if idx is not None and idx >= start:
                    out[idx] = e  # by index: overlapping pages never make duplicates
            last = max((_int(e.get("index")) or -1) for e in page)
            if len(page) < PAGE or last < start or len(out) >= MAX_ENTRIES:
                break
            start = last + 1
            page, _ = self._get({"since": start, "limit": PAGE})
        return [out[i] for i in sorted(out)]

    def close(self) -> None:
        self.client.close()


class RemediationHistory:
    """The RemediationRequests of one namespace (kubernaut profile), listed through a
    kubeconfig; each becomes an entry with the alert's run and seq from ``signalLabels``.
    The gateway creates them in its controller namespace, which a load with a workload
    pool learns from its first 201 (``retarget``)."""

    def __init__(self, params: Any, namespace: str) -> None:
        from kubernetes import client

        from kubetest.workloads import api_client

        rem = params.remediation
        self.api = client.CustomObjectsApi(api_client(params))
        self.group, self.version, self.plural = rem.group, rem.version, rem.plural
        self.requests = 0
        self.retarget(namespace)

    def retarget(self, namespace: str) -> None:
        self.namespace = namespace
        self.method = (
            f"RemediationRequests ({self.group}/{self.version}) in namespace "
            f"{namespace}, through environment.kubeconfig"
        )

    def mark(self) -> int | None:
        return None

    def read(self, since: int | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            self.requests += 1
            kwargs: dict[str, Any] = {"limit": 500, "_request_timeout": 30}
            if token:
                kwargs["_continue"] = token
            doc = self.api.list_namespaced_custom_object(
                self.group, self.version, self.namespace, self.plural, **kwargs
            )
            for item in doc.get("items") or []:
                meta, spec = item.get("metadata") or {}, item.get("spec") or {}
                labels = spec.get("signalLabels") or {}
                out.append({"name": meta.get("name"), "run": labels.get("kubetest_run"),
                            "seq": labels.get("kubetest_seq"),
                            "fingerprint": spec.get("signalFingerprint")})  # fmt: skip
            token = (doc.get("metadata") or {}).get("continue")
            if not token or len(out) >= MAX_ENTRIES:
                return out

    def close(self) -> None:
        pass


# -- one test's check -------------------------------------------------------------------


@dataclass
class IntegrityCheck:
    """The outcome of one reconciliation: ``checked`` (with its counts) or ``unavailable``."""

    status: str
    method: str
    reason: str | None = None
    reconciliation: Reconciliation | None = None
    waited_s: float = 0.0
    polls: int = 0
    settled: bool = True
    errors: list[str] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return self.reconciliation is not None

    def counts(self) -> dict[str, int] | None:
        """``{accepted, handled, lost, duplicated, unexpected}``, or None when unchecked."""
        return self.reconciliation.counts() if self.reconciliation else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reconciliation"] = asdict(self.reconciliation) if self.reconciliation else None
        return d


def _headers(params: Any) -> dict[str, str]:
    env = params.target.auth_token_env
    return {"Authorization": f"Bearer {os.environ[env]}"} if env and env in os.environ else {}


class IntegrityWatch:
    """Begun before a load (the history's mark), checked after it.

    ``watch = IntegrityWatch.begin(ctx)`` never raises: a missing history makes every
    check ``unavailable`` with the reason.
    """

    def __init__(self, history: History | None, reason: str | None, method: str = "") -> None:
        self.history = history
        self.reason = reason
        self.method = method or (history.method if history else "none")
        self.since: int | None = None
        if history is not None:
            try:
                self.since = history.mark()
            except HistoryUnavailable as exc:
                self.history, self.reason = None, str(exc)
            except Exception as exc:  # read again after the load; the check will tell
                why = f"history mark failed: {type(exc).__name__}: {exc}"
                self.reason = scrub_then_cut(why, 300)

    @classmethod
    def begin(cls, ctx: Any) -> IntegrityWatch:
        params = ctx.params
        target = params.target
        if target.api == "kubernaut":
            env = params.environment
            if env is not None and env.kubeconfig:
                namespace = params.remediation.namespace or params.alerts.namespace
                try:
                    return cls(RemediationHistory(params, namespace), None)
                except Exception as exc:
                    return cls(
                        None,
                        scrub_then_cut(
                            f"cannot read environment.kubeconfig: {type(exc).__name__}: {exc}", 300
                        ),
                        "RemediationRequests",
                    )
            if not (target.is_embedded or target.actions_url):
                return cls(None, "the kubernaut profile records handled alerts as "
                           "RemediationRequests: set environment.kubeconfig to reconcile them "
                           "(or target.actions_url to an action history)",
                           "RemediationRequests")  # fmt: skip
        history = ActionHistory(
            ctx.actions_url,
            _headers(params),
            target.timeout_s,
            verify(target.tls),
            proxy=target.proxy,
        )
        return cls(history, None)

    def check(
        self, records: pd.DataFrame, run: str, wait_s: float, namespace: str | None = None
    ) -> IntegrityCheck:
        """Poll the history (at most ``wait_s`` s, about once a second) and reconcile;
        ``namespace``: where the RemediationRequests turned out to be (from a 201)."""
        if self.history is None:
            return IntegrityCheck("unavailable", self.method, self.reason)
        if namespace and isinstance(self.history, RemediationHistory):
            self.history.retarget(namespace)
            self.method = self.history.method
        t0 = time.monotonic()
        deadline = t0 + wait_s
        settle = min(SETTLE_S, wait_s)
        errors: list[str] = [self.reason] if self.reason else []
        result: Reconciliation | None = None
        seen, changed, polls = -1, t0, 0
        while True:
            polls += 1
            try:
                result = reconcile(records, self.history.read(self.since), run)
            except HistoryUnavailable as exc:
                return IntegrityCheck("unavailable", self.method, str(exc), polls=polls)
            except Exception as exc:
                if len(errors) < 10:
                    errors.append(scrub_then_cut(f"{type(exc).__name__}: {exc}", 300))
            now = time.monotonic()
            if result is not None:
                if result.lost == 0:
                    break
                mine = result.handled
                if mine != seen:
                    seen, changed = mine, now
                elif now - changed >= settle:
                    break
            if now >= deadline:
                break
            time.sleep(min(1.0, max(0.05, deadline - now)))
        self._close()
        waited = time.monotonic() - t0
        if result is None:
            return IntegrityCheck("unavailable", self.method,
                                  f"history unreadable: {errors[-1] if errors else '?'}",
                                  waited_s=waited, polls=polls, errors=errors)  # fmt: skip
        return IntegrityCheck("checked", self.method, None, result, waited, polls,
                              settled=result.lost == 0 or time.monotonic() < deadline,
                              errors=errors)  # fmt: skip

    def _close(self) -> None:
        close = getattr(self.history, "close", None)
        if close is not None:
            close()


# -- the session's requirement row ------------------------------------------------------


def integrity_checks(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every reconciliation of a session, labelled: one per load test (``integrity_check``),
    one per Phase B phase (``phases_service[].integrity_check``, as ``B1 phase 3``)."""
    return per_run(results, "integrity_check")


def integrity_requirement(
    results: dict[str, dict[str, Any]], failures: dict[str, str] | None = None
) -> Requirement:
    """``DATA-INTEGRITY`` over every test result holding an ``integrity_check``: FAIL on any
    lost or duplicated accepted alert; PASS when every such test was reconciled and none
    was; INCONCLUSIVE when a history was missing or nothing was accepted; NOT_RUN when no
    load test ran."""
    checks = integrity_checks(results)
    totals = dict.fromkeys(COUNT_KEYS, 0)
    per_test: dict[str, Any] = {}
    reasons: list[str] = []
    unchecked: list[str] = []
    for test, chk in checks.items():
        counts = (chk.get("reconciliation") or {}) if chk.get("status") == "checked" else None
        if counts is None:
            unchecked.append(test)
            reasons.append(f"{test}: not reconciled: {chk.get('reason')}")
            per_test[test] = {"status": "unavailable", "reason": chk.get("reason")}
            continue
        for k in COUNT_KEYS:
            totals[k] += int(counts.get(k) or 0)
        per_test[test] = {"method": chk.get("method"), **{k: counts.get(k) for k in COUNT_KEYS},
                          "lost_seqs": counts.get("lost_seqs"),
                          "duplicated_seqs": counts.get("duplicated_seqs")}  # fmt: skip
        if not chk.get("settled", True):
            reasons.append(f"{test}: the history was still growing when the wait ended")
    checked = [t for t in checks if t not in unchecked]
    details: dict[str, Any] = {"title": TITLE, "per_test": per_test, **totals,
                               "reconciled": len(checked), "reasons": reasons}  # fmt: skip
    measured = float(totals["lost"] + totals["duplicated"]) if checked else None
    status: Status
    if not checks:
        failed = sorted(failures or {})
        status = "INCONCLUSIVE" if failed else "NOT_RUN"
        details["reason"] = (f"load test notebook failed: {', '.join(failed)}" if failed
                             else "no load test (A1, A2, B1, B2) ran")  # fmt: skip
    elif measured:
        status = "FAIL"
        reasons.insert(
            0,
            f"{totals['lost']} accepted alerts lost, {totals['duplicated']} handled more than once",
        )
    elif unchecked or not totals["accepted"]:
        status = "INCONCLUSIVE"
        if checked and not totals["accepted"]:
            reasons.append("no alert was accepted: nothing to reconcile")
    else:
        status = "PASS"
    if totals["unexpected"]:
        reasons.append(f"{totals['unexpected']} entries of this session's runs were never sent")
    return Requirement(INTEGRITY_ID, measured, "count", THRESHOLD, status, details)
