"""Follow created signals to the end of their remediation, through the Kubernetes API.

The current Kubernaut gateway answers 201 as soon as it has created a
``RemediationRequest`` (group ``kubernaut.ai``, version ``v1alpha1``) in its *controller*
namespace (``remediationRequestNamespace`` in the 201 body; ``pkg/gateway/processing/
crd_creator.go`` at commit d5a4a87); the remediation itself (analysis, approval,
execution, verification) happens afterwards. Webhook latency alone therefore says nothing
about how long an alert takes to be *remediated*. The follower watches (or polls, at a
bounded rate) the RemediationRequests of the controller namespace (given, or added when
the first 201 names it), notes on kubetest's own clock when each one reaches a terminal
``status.overallPhase``, and joins them to the requests that created them: by the name in
the 201 body, by ``spec.signalFingerprint``, or by the labels ``kubetest_run`` +
``kubetest_seq`` that every kubetest alert carries (the gateway copies alert labels into
``spec.signalLabels``). Time to remediation = terminal phase observed − request sent, both
on one clock, so cluster clock skew does not enter it; its resolution is the event delivery
(watch) or the poll interval. What was found, and its statistics, are in
``remediation_result``. Beside it, the RR's own timestamps (``status.phaseProgress.*
StartTime``, ``status.completedAt``, whole seconds on the server's clock) give the time
from creation to Processing, Analyzing, Executing and Completed; "Completed" includes the
verification window, so the time to Executing is the one that says when the action ran.

Terminal phases are the gateway's (``IsTerminalPhase``, ``pkg/gateway/processing/
phase_checker.go``): Completed, Failed, TimedOut, Skipped, Cancelled. ``Blocked`` and
``AwaitingApproval`` are not terminal and can last indefinitely: they are counted apart as
"waiting". Listeners (``on_phase``) hear every phase change, which is how the workload
scheduler frees a workload whose RR ended.

Written against the official ``kubernetes`` client (``CustomObjectsApi``), so it runs
against any API server a kubeconfig reaches; the tests use a small stand-in server.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubetest.remediation_result import (
    TERMINAL_PHASES,
    WAITING_PHASES,
    Followed,
    FollowResult,
    Observation,
    Signal,
    new_observation,
    parse_epoch,
    phase_offsets,
)
from kubetest.secrets import scrub_then_cut

GROUP, VERSION, PLURAL = "kubernaut.ai", "v1alpha1", "remediationrequests"

#: Longest single watch request; the loop re-watches from the last resourceVersion.
WATCH_CHUNK_S = 30
#: How long every RR must have stood still in a terminal or waiting phase before
#: ``wait_for`` stops waiting for the waiting ones (a human may never approve).
WAITING_GRACE_S = 30.0


class _Pacer:
    """At most ``per_s`` API calls a second across the follower's threads, in bursts of
    up to ``burst`` (a list and the watch that goes on from it are one step)."""

    def __init__(self, per_s: float, burst: int = 2) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()
        self.calls = 0

    def wait(self, stop: threading.Event) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
            self.stamp = now
            self.tokens -= 1.0  # may go negative: the debt is the wait
            delay = -self.tokens / self.per_s if self.tokens < 0 else 0.0
            self.calls += 1
        return not stop.wait(delay)


class RemediationFollower:
    """Watches (or polls) the RemediationRequests of some namespaces in the background.

    ``with RemediationFollower(api, ["test-workloads"]) as f: ...send...;
    result = f.wait_for(signals, timeout_s)``. ``api`` is a ``kubernetes.client.
    CustomObjectsApi`` (``from_kubeconfig`` builds one). API calls are paced to at most
    ``max_requests_per_s``; a watch holds one request open per namespace.
    """

    def __init__(
        self,
        api: Any,
        namespaces: Iterable[str],
        *,
        group: str = GROUP,
        version: str = VERSION,
        plural: str = PLURAL,
        mode: str = "watch",
        poll_interval_s: float = 2.0,
        max_requests_per_s: float = 5.0,
        terminal: tuple[str, ...] = TERMINAL_PHASES,
        waiting: tuple[str, ...] = WAITING_PHASES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("watch", "poll"):
            raise ValueError(f"mode must be 'watch' or 'poll', got {mode!r}")
        if poll_interval_s <= 0 or max_requests_per_s <= 0:
            raise ValueError("poll_interval_s and max_requests_per_s must be > 0")
        self.api = api
        # may start empty: the controller namespace is then added from the first 201
        self.namespaces = sorted(set(namespaces))
        self.group, self.version, self.plural = group, version, plural
        self.mode = mode
        self.max_requests_per_s = max_requests_per_s
        self.poll_interval_s = max(
            poll_interval_s, max(1, len(self.namespaces)) / max_requests_per_s
        )
        self.terminal = terminal
        self.waiting = waiting
        self.clock = clock
        self._listeners: list[Callable[[Observation], None]] = []
        self._pacer = _Pacer(max_requests_per_s, burst=2 * max(1, len(self.namespaces)))
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._seen: dict[tuple[str, str], Observation] = {}
        self._listed: set[str] = set()  # namespaces whose first list is done
        self._started = False
        self._late: set[str] = set()  # namespaces added once following had started
        self._threads: list[threading.Thread] = []
        self._open: set[Any] = set()  # watch responses being read
        self.errors: list[str] = []
        self.started_epoch = 0.0

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, namespaces: Iterable[str], *, context: str | None = None,
        **kwargs: Any,
    ) -> RemediationFollower:  # fmt: skip
        """A follower whose client comes from a kubeconfig file (its current context)."""
        from kubernetes import client, config

        api_client = config.new_client_from_config(
            config_file=str(Path(path).expanduser()), context=context
        )
        return cls(client.CustomObjectsApi(api_client), namespaces, **kwargs)

    # -- lifetime

    def on_phase(self, listener: Callable[[Observation], None]) -> None:
        """Call ``listener(observation)`` (from a follower thread, outside its lock) each
        time an RR is seen in a new phase; the RRs already seen are replayed to it now."""
        with self._changed:
            self._listeners.append(listener)
            seen = [replace(o, phases=list(o.phases)) for o in self._seen.values()]
        for obs in seen:
            listener(obs)

    def lifetime_s(self) -> float | None:
        """Mean seconds from first sight to a terminal phase of the RRs that both appeared
        and ended while followed: how long a workload stays busy (for pool sizing)."""
        with self._changed:
            spans = [o.terminal_epoch - o.first_seen_epoch for o in self._seen.values()
                     if o.terminal_epoch is not None and not o.before_start
                     and o.first_seen_epoch >= self.started_epoch]  # fmt: skip
        return sum(spans) / len(spans) if spans else None

    def start(self) -> RemediationFollower:
        """Start following; returns once every namespace has been listed once (or failed)."""
        if self._started:
            return self
        self._started = True
        self.started_epoch = self.clock()
        if self.mode == "watch":
            for ns in self.namespaces:
                self._spawn(self._watch_loop, ns)
        else:
            self._spawn(self._poll_loop)
        self._await_listed(self.namespaces)
        return self

    def add_namespace(self, namespace: str) -> None:
        """Follow one more namespace from now on (the controller namespace, once the
        first 201 names it). Never blocks (the engine's loop calls it); safe from any
        thread, and again for a namespace already followed."""
        with self._changed:
            if namespace in self.namespaces:
                return
            if self._started:
                self._late.add(namespace)
            self.namespaces = sorted({*self.namespaces, namespace})
            self.poll_interval_s = max(
                self.poll_interval_s, len(self.namespaces) / self.max_requests_per_s
            )
            self._pacer.burst = float(2 * len(self.namespaces))
        if self._started and self.mode == "watch":
            self._spawn(self._watch_loop, namespace)
        # poll mode: the running poll loop picks the new namespace up on its next round

    def _await_listed(self, namespaces: list[str]) -> None:
        deadline = time.monotonic() + 30.0
        with self._changed:
            while not set(namespaces) <= self._listed and time.monotonic() < deadline:
                if self._stop.is_set() or not any(t.is_alive() for t in self._threads):
                    break
                self._changed.wait(0.1)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name="kubetest-follow", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            open_watches = list(self._open)
        for resp in open_watches:  # wake a thread blocked reading its watch
            with contextlib.suppress(Exception):
                shutdown = getattr(resp, "shutdown", None)
                if shutdown is not None:
                    shutdown()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        self._started = False

    def __enter__(self) -> RemediationFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what was seen

    def _update(self, obj: dict[str, Any], initial: bool = False) -> None:
        now = self.clock()
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        status = obj.get("status") or {}
        phase = str(status.get("overallPhase") or "")
        with self._changed:
            obs = self._seen.get(key)
            if obs is None:
                obs = self._seen[key] = new_observation(obj, now)
            changed = bool(phase) and (not obs.phases or obs.phases[-1] != phase)
            if changed:
                obs.phases.append(phase)
            obs.phase = phase
            obs.completed = str(status.get("completedAt") or obs.completed)
            obs.phase_offsets = phase_offsets(obj) or obs.phase_offsets
            if phase in self.terminal and obs.terminal_epoch is None:
                obs.terminal_epoch = now
                obs.before_start = initial and self._older_than_start(key[0], obj)
            elif phase not in self.terminal:
                obs.terminal_epoch = None  # a phase may move on again (Blocked, retried)
            snapshot = replace(obs, phases=list(obs.phases)) if changed else None
            self._changed.notify_all()
        if snapshot is not None:
            for listener in self._listeners:
                listener(snapshot)

    def _older_than_start(self, namespace: str, obj: dict[str, Any]) -> bool:
        """Whether an RR terminal at its first listing ended before following started. In
        a namespace followed from the start, yes; in one added later (learned from a 201),
        only if it was created before the start (whole-second timestamps: 1 s slack)."""
        if namespace not in self._late:
            return True
        created = parse_epoch((obj.get("metadata") or {}).get("creationTimestamp"))
        return created is None or created < self.started_epoch - 1.0

    def _note_error(self, what: str, exc: BaseException, ns: str = "") -> None:
        """One line per distinct fault, naming what went wrong and the fix (an API
        refusal) or the exception's first line (anything else)."""
        text = fault_line(what, exc, ns, f"{self.plural}.{self.group}")
        if text is None:
            lines = str(exc).strip().splitlines()
            text = f"{what}: {type(exc).__name__}: {lines[0] if lines else ''}"
        self._note(text)

    def _note(self, text: str) -> None:
        text = scrub_then_cut(text, 300)
        with self._changed:
            if text not in self.errors and len(self.errors) < 50:
                self.errors.append(text)
            self._changed.notify_all()

    def _expired(self, ns: str, rv: str) -> None:
        """A watch answered 410 Gone: the API server no longer holds ``rv``. The follower
        lists again (no phase is lost: the list holds every RR's current phase)."""
        self._note(
            f"watch {self.plural} in {ns}: expired (410 Gone, resourceVersion {rv} is "
            "older than the API server keeps): listed again from the current state; if "
            "it repeats, set remediation.mode: poll"
        )

    def _list(self, ns: str, initial: bool) -> str | None:
        """List the namespace's RemediationRequests; the list's resourceVersion."""
        if not self._pacer.wait(self._stop):
            return None
        doc = self.api.list_namespaced_custom_object(
            self.group, self.version, ns, self.plural, _request_timeout=30
        )
        for item in doc.get("items") or []:
            item.setdefault("metadata", {}).setdefault("namespace", ns)
            self._update(item, initial=initial)
        with self._changed:
            self._listed.add(ns)
            self._changed.notify_all()
        return str((doc.get("metadata") or {}).get("resourceVersion") or "") or None

    def _watch_loop(self, ns: str) -> None:
        from kubernetes.client.rest import ApiException

        rv: str | None = None
        initial = True
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list(ns, initial)
                    initial = False
                    if rv is None:
                        continue
                if not self._pacer.wait(self._stop):
                    break
                rv = self._watch_once(ns, rv)
            except ApiException as exc:
                if exc.status == 410 and rv is not None:
                    self._expired(ns, rv)
                else:
                    self._note_error(f"watch {ns}", exc, ns)
                rv = None
                self._stop.wait(self.poll_interval_s)
            except Exception as exc:  # a dropped connection: list again, paced
                if not self._stop.is_set():
                    self._note_error(f"watch {ns}", exc)
                rv = None
                self._stop.wait(self.poll_interval_s)
            finally:
                with self._changed:
                    self._listed.add(ns)  # listed, or failed trying: start() need not wait
                    self._changed.notify_all()

    def _watch_once(self, ns: str, rv: str) -> str | None:
        """One watch request from ``rv``; the resourceVersion to go on from (``None``:
        list again, the server no longer has ``rv``). The response is kept where ``stop``
        can shut it, so stopping never waits for the server's watch timeout."""
        from kubernetes.watch.watch import iter_resp_lines

        resp = self.api.list_namespaced_custom_object(
            self.group, self.version, ns, self.plural, watch=True, resource_version=rv,
            timeout_seconds=WATCH_CHUNK_S, allow_watch_bookmarks=True,
            _preload_content=False, _request_timeout=WATCH_CHUNK_S + 10,
        )  # fmt: skip
        with self._changed:
            self._open.add(resp)
        try:
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # resourceVersion too old: list again
                        self._expired(ns, rv)
                        return None
                    raise RuntimeError(f"watch ERROR {obj.get('code')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    rv = str(version)
                if kind in ("ADDED", "MODIFIED"):
                    obj.setdefault("metadata", {}).setdefault("namespace", ns)
                    self._update(obj)
                if self._stop.is_set():
                    break
        finally:
            with self._changed:
                self._open.discard(resp)
            resp.close()
            with contextlib.suppress(Exception):
                resp.release_conn()
        return rv

    def _poll_loop(self) -> None:
        listed: set[str] = set()
        while not self._stop.is_set():
            t0 = time.monotonic()
            for ns in list(self.namespaces):
                initial = ns not in listed
                listed.add(ns)
                try:
                    self._list(ns, initial)
                except Exception as exc:
                    self._note_error(f"list {ns}", exc, ns)
                    with self._changed:
                        self._listed.add(ns)
                        self._changed.notify_all()
            self._stop.wait(max(0.0, self.poll_interval_s - (time.monotonic() - t0)))

    # -- joining

    def _match(self, signals: list[Signal]) -> list[Followed]:
        """Join each signal to an observed RemediationRequest (name, fingerprint, run+seq)."""
        with self._changed:
            seen = list(self._seen.values())
        by_name = {(o.namespace, o.name): o for o in seen}
        by_fp: dict[tuple[str, str], list[Observation]] = {}
        by_seq: dict[tuple[str, int], Observation] = {}
        for o in sorted(seen, key=lambda o: (o.created, o.first_seen_epoch)):
            if o.fingerprint:
                by_fp.setdefault((o.namespace, o.fingerprint[:63]), []).append(o)
            if o.run and o.seq is not None:
                by_seq[(o.run, o.seq)] = o
        used: set[tuple[str, str]] = set()
        out: list[Followed] = []
        for s in sorted(signals, key=lambda s: s.sent_epoch):
            obs = by_name.get((s.namespace, s.name)) if s.name else None
            if obs is None and s.run:
                obs = by_seq.get((s.run, s.seq))
            if obs is None and s.fingerprint:
                candidates = by_fp.get((s.namespace, s.fingerprint[:63]), [])
                obs = next((o for o in candidates if (o.namespace, o.name) not in used), None)
            if obs is not None:
                used.add((obs.namespace, obs.name))
            out.append(Followed(s, obs))
        return out

    def _settled(self, followed: list[Followed], also: tuple[str, ...] = ()) -> bool:
        ended = (*self.terminal, *also)
        return all(f.observation is not None and f.phase in ended for f in followed)

    def wait_for(self, signals: list[Signal], timeout_s: float) -> FollowResult:
        """Block until every signal's RemediationRequest is terminal, or ``timeout_s``.
        RRs in a waiting phase (Blocked, AwaitingApproval) may wait for a human: once
        every RR is terminal or waiting and nothing has moved for ``WAITING_GRACE_S``,
        the wait ends early and the waiting ones are counted as such."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        followed = self._match(signals)
        last = [f.phase for f in followed]
        still_since = time.monotonic()
        while not self._settled(followed) and time.monotonic() < deadline:
            if self._threads and not any(t.is_alive() for t in self._threads):
                break
            if not self._threads and not self.namespaces:
                break  # nothing to follow: no RR was ever created
            with self._changed:
                self._changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            followed = self._match(signals)
            phases = [f.phase for f in followed]
            if phases != last:
                last, still_since = phases, time.monotonic()
            elif (
                self._settled(followed, self.waiting)
                and time.monotonic() - still_since >= WAITING_GRACE_S
            ):
                break
        resolution = 0.0 if self.mode == "watch" else self.poll_interval_s
        with self._changed:  # a snapshot: the follower may go on updating what it saw
            errors = list(self.errors)
            followed = [
                Followed(f.signal, replace(f.observation, phases=list(f.observation.phases))
                         if f.observation else None)
                for f in followed
            ]  # fmt: skip
        return FollowResult(
            followed, self.mode, resolution, time.monotonic() - t0,
            not self._settled(followed, self.waiting), self._pacer.calls, errors,
            self.terminal, self.waiting, tuple(self.namespaces),
        )  # fmt: skip


def fault_line(what: str, exc: BaseException, ns: str, resource: str) -> str | None:
    """One line for the Kubernetes API's refusal of a list or watch of ``resource``
    (``remediationrequests.kubernaut.ai``) in ``ns``, naming the fix; None when ``exc``
    is not an API answer this knows."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or not ns:
        return None
    if status == 403:
        return (
            f"{what}: not allowed to list/watch {resource} in namespace {ns} (403): the "
            "kubeconfig's user needs verbs get, list, watch on them there; grant them with "
            "deploy/04-remediationrequests-role.yaml (kubectl apply -f deploy/)"
        )
    if status == 401:
        return (
            f"{what}: the Kubernetes API refused the kubeconfig's credentials (401): "
            "refresh the token in environment.kubeconfig"
        )
    if status == 404:
        return (
            f"{what}: {resource} not found in namespace {ns} (404): check "
            "remediation.namespace (the controller namespace) and remediation.group/version "
            "(the RemediationRequest CRD installed)"
        )
    return None


def follower_from_params(
    params: Any, namespaces: Iterable[str] | None = None, *, force: bool = False
) -> RemediationFollower | None:
    """A follower when the params ask for one (kubernaut profile, ``environment.kubeconfig``
    and ``remediation.follow``, or ``force``: A4's ``verify: kubernetes``), else ``None``.
    It follows ``namespaces`` if given, else ``remediation.namespace`` (the controller
    namespace) if set, else, with a workload pool, none until ``add_namespace`` (the
    first 201 names it), else ``alerts.namespace`` (releases that created RRs there)."""
    from kubetest.workloads import kubeconfig_path

    env = params.environment
    rem = params.remediation
    if params.target.api != "kubernaut" or env is None or not env.kubeconfig:
        return None
    if not (rem.follow or force):
        return None
    if namespaces is None:  # a pool's first 201 names the controller namespace
        namespaces = (
            [rem.namespace]
            if rem.namespace
            else ([] if params.alerts.workloads is not None else [params.alerts.namespace])
        )
    return RemediationFollower.from_kubeconfig(
        kubeconfig_path(params), namespaces, group=rem.group, version=rem.version,
        plural=rem.plural, mode=rem.mode, poll_interval_s=rem.poll_interval_s,
        max_requests_per_s=rem.max_requests_per_s, terminal=tuple(rem.terminal_phases),
        waiting=tuple(rem.waiting_phases),
    )  # fmt: skip
