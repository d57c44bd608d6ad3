"""The reference target's own small Kubernetes cluster, in memory (``kubernaut`` profile).

What the Kubernaut gateway reads and writes in a cluster, modelled on Kubernaut at commit
d5a4a87 (2026-08-22) and on the Kubernetes API server's own conventions:

* Namespaces (with labels), Deployments (``apps/v1``) and RemediationRequests
  (``kubernaut.ai/v1alpha1``, plural ``remediationrequests``) in the controller namespace
  (ADR-057, ``pkg/gateway/processing/crd_creator.go``).
* One global resourceVersion; a bounded log of RemediationRequest events for watches.
  A watch from a resourceVersion the log no longer holds gets ``410 Expired``;
  ``compact()`` forgets the whole log (and ends open watches with 410), as an API server
  does after an etcd compaction.
* A stand-in Remediation Orchestrator (its plan per object is ``orchestrator.py``): each
  RemediationRequest walks Pending → Processing → Analyzing → Executing → Verifying →
  Completed on a clock, with the phase timestamps the orchestrator writes
  (``internal/controller/remediationorchestrator/terminal_transitions.go``
  ``applyPhaseTransitionFields``, ``applyFailedTransitionFields``; ``reconcile_loop.go``
  sets Pending and ``status.startTime``); some fail at Executing
  (``status.completionStatus.failurePhase: WorkflowExecution``); some are Blocked
  (non-terminal, ``pkg/remediationorchestrator/phase/types.go``): a time-based block
  (``ConsecutiveFailures``, ``status.routingStatus.blockedUntil``) turns Failed with
  ``failurePhase: Blocked`` once it expires (``blocked_handler.go``
  ``handleCooldownExpired``); an event-based one (``ResourceBusy``) goes back to Analyzing
  and on to Completed. Timestamps are ``metav1.Time``: RFC 3339 to the second, UTC.
* What the API means (names, selectors, identities and their grants, ``Status``
  errors) is ``kube_rules``, which ``kube_api`` (the HTTP routes) applies as well.

Thread-safety: every method takes ``self.lock`` (a re-entrant lock), so the kube API, the
gateway and a test thread may share one cluster. Lifecycle steps are applied by
``advance()``, which every read calls first and a ticker (``run_ticker``) calls while a
server runs, so a watch sees phases move even when nobody else asks.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetest.errors import KubeError
from kubetest.target.kube_rules import (
    DEPLOYMENT_FIELDS,
    GROUP,
    RR_API_VERSION,
    RR_FIELDS,
    RR_KIND,
    RR_PLURAL,
    Identity,
    Requirement,
    bad_request,
    expired,
    fields_match,
    forbidden,
    is_dns_subdomain,
    labels_match,
    not_found,
    parse_field_selector,
    parse_label_selector,
    rfc3339,
)
from kubetest.target.orchestrator import lifecycle

#: The label the scope manager reads on a resource, then on its namespace
#: (``pkg/shared/scope/manager.go`` ``ManagedLabelKey``).
MANAGED_LABEL = "kubernaut.ai/managed"

#: Phases after which the gateway creates a new RemediationRequest for the fingerprint
#: (``pkg/gateway/processing/phase_checker.go`` ``IsTerminalPhase``).
TERMINAL_PHASES: frozenset[str] = frozenset(
    {"Completed", "Failed", "TimedOut", "Skipped", "Cancelled"}
)

#: RemediationRequest events kept for watches (older resourceVersions get 410).
EVENT_LOG_MAX = 10_000

# ---------------------------------------------------------------- the cluster


@dataclass(order=True)
class _Step:
    due: float
    seq: int
    key: tuple[str, str] = field(compare=False)
    phase: str = field(compare=False)
    status: dict[str, Any] = field(compare=False, default_factory=dict)
    act: bool = field(compare=False, default=False)  # record the action (hook)
    failure: str | None = field(compare=False, default=None)


#: ``on_action(context, rr_name, failure)``: the RemediationRequest executed its action
#: (``failure`` None) or ended without it working (the reason).
ActionHook = Callable[[Any, str, "str | None"], None]


class Cluster:
    """Namespaces, Deployments and RemediationRequests, a resourceVersion, an event log,
    tokens, and the stand-in orchestrator (see the module docstring).

    ``config`` is the target's ``TargetConfig`` (namespaces, controller namespace,
    phase durations, fail and blocked rates, ``seed``); ``clock`` gives epoch seconds
    (tests pass a fake one); ``on_action`` is called when a RemediationRequest reaches
    Executing (or fails without getting there).
    """

    def __init__(self, config: Any, *, clock: Callable[[], float] = time.time,
                 on_action: ActionHook | None = None, event_log_max: int = EVENT_LOG_MAX,
                 ) -> None:  # fmt: skip
        self.config = config
        self.clock = clock
        self.on_action = on_action
        self.lock = threading.RLock()
        self.controller_namespace: str = config.controller_namespace
        self.rv = 0
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.rrs: dict[tuple[str, str], dict[str, Any]] = {}
        self._context: dict[tuple[str, str], Any] = {}
        # spec.signalFingerprint -> RemediationRequests (the field index the gateway's
        # cache keeps, so a dedup lookup does not scan every object)
        self._by_fingerprint: dict[str, list[tuple[str, str]]] = {}
        self._steps: list[_Step] = []
        self._seq = 0
        self.events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=event_log_max)
        self._floor = 0  # events with resourceVersion <= this may be gone from the log
        self.generation = 0  # bumped by compact(): open watches end with 410
        self.closing = threading.Event()  # set when the server stops: open watches end
        self.tokens: dict[str, Identity] = {}
        seed = config.seed
        self._rng = random.Random(None if seed is None else seed + 3)
        self._names = random.Random(None if seed is None else seed + 4)
        for ns in ("kube-system", self.controller_namespace, *config.kube_namespaces):
            self.add_namespace(ns)
        for ns in config.managed_namespaces:
            self.add_namespace(ns, {MANAGED_LABEL: "true"})

    # -- bookkeeping

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _uid(self) -> str:
        r = self._names.getrandbits(128)
        h = f"{r:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def _log(self, kind: str, obj: dict[str, Any]) -> None:
        if len(self.events) == self.events.maxlen:
            self._floor = self.events[0][0]
        self.events.append((self.rv, kind, copy.deepcopy(obj)))

    def _meta(self, name: str, namespace: str, labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": self._uid(),
                                "resourceVersion": self._bump(), "generation": 1,
                                "creationTimestamp": rfc3339(self.clock())}  # fmt: skip
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        return meta

    # -- tokens

    def add_token(self, token: str, identity: Identity) -> None:
        with self.lock:
            self.tokens[token] = identity

    def authenticate(self, token: str | None) -> Identity | None:
        """TokenReview: the identity of a bearer token, ``None`` when unknown."""
        if not token:
            return None
        with self.lock:
            return self.tokens.get(token)

    def authorize(self, identity: Identity, verb: str, group: str, resource: str,
                  namespace: str = "", name: str = "") -> None:  # fmt: skip
        """Raise the 403 ``KubeError`` unless ``identity`` may do it."""
        if not identity.allows(verb, group, resource, namespace, name):
            raise forbidden(identity, verb, group, resource, namespace, name)

    # -- namespaces

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create (or relabel) a namespace; ``kubernetes.io/metadata.name`` as the API
        server adds it."""
        with self.lock:
            all_labels = {"kubernetes.io/metadata.name": name, **(labels or {})}
            ns = self.namespaces.get(name)
            if ns is None:
                meta = self._meta(name, "", all_labels)
                del meta["namespace"], meta["generation"]
                ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
                      "spec": {"finalizers": ["kubernetes"]},
                      "status": {"phase": "Active"}}  # fmt: skip
                self.namespaces[name] = ns
            else:
                ns["metadata"]["labels"] = {**ns["metadata"].get("labels", {}), **all_labels}
                ns["metadata"]["resourceVersion"] = self._bump()
            return copy.deepcopy(ns)

    def get_namespace(self, name: str) -> dict[str, Any]:
        with self.lock:
            ns = self.namespaces.get(name)
            if ns is None:
                raise not_found("namespaces", "", name)
            return copy.deepcopy(ns)

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels, ``None`` when it does not exist."""
        with self.lock:
            ns = self.namespaces.get(name)
            return None if ns is None else dict(ns["metadata"].get("labels") or {})

    # -- deployments

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a Deployment: 404 without the namespace, 409 when it exists, 422 when
        it is not a Deployment the API server would take (name, selector, template)."""
        if not isinstance(body, dict):
            raise bad_request("the body is not a JSON object")
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        if body.get("kind") not in (None, "Deployment") or body.get("apiVersion") not in (
            None,
            "apps/v1",
        ):
            raise bad_request(
                f"the API version in the data ({body.get('apiVersion')}) and "
                f"kind ({body.get('kind')}) do not match apps/v1 Deployment"
            )
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        with self.lock:
            if namespace not in self.namespaces:
                raise not_found("namespaces", "", namespace)
            name = meta.get("name") or ""
            if not name and meta.get("generateName"):
                name = meta["generateName"] + f"{self._names.getrandbits(25):05x}"[:5]
            problems = []
            if not name:
                problems.append("metadata.name: Required value: name or generateName is required")
            elif not is_dns_subdomain(name):
                problems.append(
                    f'metadata.name: Invalid value: "{name}": a lowercase RFC '
                    "1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.'"
                )
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get(
                "labels"
            ) or {}
            if not selector:
                problems.append("spec.selector: Required value")
            elif any(template_labels.get(k) != v for k, v in selector.items()):
                problems.append(
                    "spec.template.metadata.labels: Invalid value: selector "
                    "does not match template labels"
                )
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                problems.append("spec.replicas: Invalid value: must be a non-negative integer")
            if problems:
                raise KubeError(
                    422,
                    "Invalid",
                    f'Deployment.apps "{name}" is invalid: ' + "; ".join(problems),
                    {"name": name, "group": "apps", "kind": "Deployment"},
                )
            if (namespace, name) in self.deployments:
                raise KubeError(
                    409,
                    "AlreadyExists",
                    f'deployments.apps "{name}" already exists',
                    {"name": name, "group": "apps", "kind": "deployments"},
                )
            obj = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": self._meta(
                    name, namespace, meta.get("labels"), meta.get("annotations")
                ),
                "spec": {**copy.deepcopy(spec), "replicas": replicas},
                "status": _deployment_status(replicas),
            }
            self.deployments[(namespace, name)] = obj
            return copy.deepcopy(obj)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.deployments.get((namespace, name))
            if obj is None:
                raise not_found("deployments", "apps", name)
            return copy.deepcopy(obj)

    def deployment_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Deployment's labels, ``None`` when it does not exist."""
        with self.lock:
            obj = self.deployments.get((namespace, name))
            return None if obj is None else dict(obj["metadata"].get("labels") or {})

    def list_deployments(
        self, namespace: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict[str, Any]:
        reqs = parse_label_selector(label_selector)
        terms = parse_field_selector(field_selector, DEPLOYMENT_FIELDS)
        with self.lock:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self.deployments.items())
                     if ns == namespace and labels_match(reqs, o["metadata"].get("labels"))
                     and fields_match(terms, o)]  # fmt: skip
            return {
                "apiVersion": "apps/v1",
                "kind": "DeploymentList",
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }

    def delete_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """DELETE one: a success ``Status`` naming it (no finalizers, nothing to wait for)."""
        with self.lock:
            obj = self.deployments.pop((namespace, name), None)
            if obj is None:
                raise not_found("deployments", "apps", name)
            self._bump()
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": "apps", "kind": "deployments",
                                "uid": obj["metadata"]["uid"]}}  # fmt: skip

    def delete_deployments(
        self, namespace: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict[str, Any]:
        """DELETE the collection: the list of what was deleted, as the API server answers."""
        with self.lock:
            doc = self.list_deployments(namespace, label_selector, field_selector)
            for item in doc["items"]:
                self.deployments.pop((namespace, item["metadata"]["name"]), None)
            if doc["items"]:
                self._bump()
            doc["metadata"]["resourceVersion"] = str(self.rv)
            return doc

    # -- remediation requests

    def create_rr(
        self, obj: dict[str, Any], *, context: Any = None, failure: str | None = None
    ) -> dict[str, Any]:
        """Create a RemediationRequest (the gateway's ``CreateRemediationRequest``) and
        plan its lifecycle. ``status`` is dropped as the API server drops it on create for
        a CRD with a status subresource. ``failure`` forces it to fail at Executing
        (``None``: ``remediation_fail_rate`` decides); ``context`` goes to ``on_action``."""
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        with self.lock:
            if ns not in self.namespaces:
                raise not_found("namespaces", "", ns)
            if (ns, name) in self.rrs:
                raise KubeError(
                    409,
                    "AlreadyExists",
                    f'{RR_PLURAL}.{GROUP} "{name}" already exists',
                    {"name": name, "group": GROUP, "kind": RR_PLURAL},
                )
            rr = {"apiVersion": RR_API_VERSION, "kind": RR_KIND,
                  "metadata": self._meta(name, ns, meta.get("labels"), meta.get("annotations")),
                  "spec": copy.deepcopy(obj.get("spec") or {})}  # fmt: skip
            self.rrs[(ns, name)] = rr
            fingerprint = str(rr["spec"].get("signalFingerprint") or "")
            self._by_fingerprint.setdefault(fingerprint, []).append((ns, name))
            self._context[(ns, name)] = context
            self._log("ADDED", rr)
            self._plan((ns, name), self.clock(), failure)
            return copy.deepcopy(rr)

    def get_rr(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            self.advance()
            obj = self.rrs.get((namespace, name))
            if obj is None:
                raise not_found(RR_PLURAL, GROUP, name)
            return copy.deepcopy(obj)

    def _rr_items(self, namespace: str, reqs: tuple[Requirement, ...],
                  terms: tuple[tuple[str, bool, str], ...]) -> list[dict[str, Any]]:  # fmt: skip
        return [o for (ns, _), o in sorted(self.rrs.items())
                if ns == namespace and labels_match(reqs, o["metadata"].get("labels"))
                and fields_match(terms, o)]  # fmt: skip

    def list_rrs(
        self, namespace: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict[str, Any]:
        """LIST (sorted by name, as etcd keys are) with selectors, and the list's
        resourceVersion to watch from."""
        reqs = parse_label_selector(label_selector)
        terms = parse_field_selector(field_selector, RR_FIELDS)
        with self.lock:
            self.advance()
            items = [copy.deepcopy(o) for o in self._rr_items(namespace, reqs, terms)]
            return {
                "apiVersion": RR_API_VERSION,
                "kind": RR_KIND + "List",
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }

    def rrs_by_fingerprint(self, namespace: str, fingerprint: str) -> list[dict[str, Any]]:
        """The gateway's dedup lookup (``phase_checker.go``
        ``listRemediationRequestsByFingerprint``): live objects, call under ``lock``."""
        with self.lock:
            self.advance()
            keys = sorted(k for k in self._by_fingerprint.get(fingerprint, ()) if k[0] == namespace)
            return [self.rrs[k] for k in keys]

    def update_rr_status(
        self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """``Status().Update()``: ``change`` edits ``status`` in place; a MODIFIED event."""
        with self.lock:
            obj = self.rrs.get((namespace, name))
            if obj is None:
                raise not_found(RR_PLURAL, GROUP, name)
            status = obj.setdefault("status", {})
            change(status)
            obj["metadata"]["resourceVersion"] = self._bump()
            self._log("MODIFIED", obj)
            return copy.deepcopy(obj)

    # -- the stand-in orchestrator

    def _plan(self, key: tuple[str, str], t0: float, failure: str | None) -> None:
        for due, phase, status, act, fail in lifecycle(self.config, self._rng, t0, failure):
            self._seq += 1
            heapq.heappush(self._steps, _Step(due, self._seq, key, phase, status, act, fail))

    def _apply(self, step: _Step) -> None:
        obj = self.rrs.get(step.key)
        if obj is None:
            return
        status = obj.setdefault("status", {})
        stamp = rfc3339(step.due)
        status["overallPhase"] = step.phase
        for name, value in step.status.items():
            if value is None:
                status.pop(name, None)
            elif isinstance(value, dict):
                sub = status.setdefault(name, {})
                for k, v in value.items():
                    sub[k] = stamp if v is None else v
            else:
                status[name] = value
        if step.phase in TERMINAL_PHASES:
            status["completedAt"] = stamp
        obj["metadata"]["resourceVersion"] = self._bump()
        self._log("MODIFIED", obj)
        if step.act:
            context = self._context.pop(step.key, None)
            if self.on_action is not None:
                self.on_action(context, step.key[1], step.failure)
        elif step.phase in TERMINAL_PHASES:
            self._context.pop(step.key, None)

    def advance(self, now: float | None = None) -> int:
        """Apply every lifecycle step due by ``now`` (default: the clock); how many."""
        with self.lock:
            now = self.clock() if now is None else now
            n = 0
            while self._steps and self._steps[0].due <= now:
                self._apply(heapq.heappop(self._steps))
                n += 1
            return n

    async def run_ticker(self, interval_s: float = 0.02) -> None:
        """Advance every ``interval_s`` until cancelled (the serving loop runs this)."""
        while True:
            self.advance()
            await asyncio.sleep(interval_s)

    # -- watches

    def compact(self) -> None:
        """Forget the event log: watches from an older resourceVersion, and open ones,
        get 410 Expired (the client lists again)."""
        with self.lock:
            self._floor = self.rv
            self.events.clear()
            self.generation += 1

    def rr_events_since(
        self, since: int, namespace: str, generation: int | None = None
    ) -> tuple[list[tuple[int, str, dict[str, Any]]], int]:
        """RemediationRequest events after ``since`` in ``namespace`` (copies), and the
        resourceVersion they bring the reader up to; raises 410 when the log no longer
        covers ``since`` or ``compact()`` ran since ``generation``."""
        with self.lock:
            self.advance()
            if since < self._floor or (generation is not None and generation != self.generation):
                raise expired(since, self.rv)
            events = [(rv, kind, copy.deepcopy(obj)) for rv, kind, obj in self.events
                      if rv > since and obj["metadata"]["namespace"] == namespace]  # fmt: skip
            return events, self.rv


def _deployment_status(replicas: int) -> dict[str, Any]:
    """What the Deployment controller writes once the pods run (at once, here)."""
    if replicas == 0:
        return {"observedGeneration": 1}
    return {
        "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet has successfully progressed."},
        ],
    }  # fmt: skip
