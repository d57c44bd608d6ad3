"""The pool of real Deployments that kubetest's alerts name (``alerts.workloads``).

The Kubernaut gateway resolves every alert's owner in the cluster and answers 400 to an
alert whose resource does not exist (``pkg/gateway/signal_ingestion.go``, owner resolution
in ``pkg/gateway/adapters/prometheus_adapter.go``, commit d5a4a87). So before any load,
kubetest either creates N harmless Deployments (replicas 0, labelled in scope with
``kubernaut.ai/managed=true`` and with its run token in ``kubetest.io/run``) or takes
existing ones by label selector. What it created it deletes afterwards, after Ctrl-C
too; ``kubetest cleanup`` finds what a killed run left behind by the run label.

Everything goes through the official ``kubernetes`` client, so it works against any API
server a kubeconfig reaches; every refusal becomes one line naming the fix.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubetest.errors import KubetestError, PoolError
from kubetest.params import MANAGED_LABEL, RUN_LABEL, Params

#: Where the session tells its notebooks the embedded target's kubeconfig lies (a private
#: temporary file; it holds a token, so it never goes under outputs/).
EMBEDDED_KUBECONFIG_ENV = "KUBETEST_EMBEDDED_KUBECONFIG"


def export_kubeconfig(endpoints: dict[str, str]) -> None:
    """Tell ``environment.kubeconfig: embedded`` (and the kernels, which inherit the
    environment) where the embedded target's kubeconfig lies."""
    if endpoints.get("kubeconfig"):
        os.environ[EMBEDDED_KUBECONFIG_ENV] = endpoints["kubeconfig"]


POOL_FILE = "pool.json"
RBAC_HINT = "grant it with deploy/03-workloads-role.yaml (kubectl apply -f deploy/)"


def kubeconfig_path(params: Params) -> str:
    """The kubeconfig file ``environment.kubeconfig`` names (``embedded``: the embedded
    target's, which the session or notebook context exported)."""
    env = params.environment
    value = env.kubeconfig if env else None
    if not value:
        raise PoolError("environment.kubeconfig is not set: name the cluster's kubeconfig")
    if value == "embedded":
        path = os.environ.get(EMBEDDED_KUBECONFIG_ENV)
        if not path:
            raise PoolError(
                "environment.kubeconfig: embedded needs the embedded target running: use "
                "kubetest run (or open the notebook through TestContext)"
            )
        return path
    return str(Path(value).expanduser())


def api_client(params: Params) -> Any:
    """A ``kubernetes.client.ApiClient`` for the params' kubeconfig (its current context)."""
    from kubernetes import config

    path = kubeconfig_path(params)
    if not Path(path).is_file():
        raise PoolError(f"kubeconfig {path} not found: check environment.kubeconfig")
    try:
        return config.new_client_from_config(config_file=path)
    except Exception as exc:  # the client raises ConfigException and friends
        raise PoolError(f"kubeconfig {path} is unusable: {str(exc).splitlines()[0]}") from None


@dataclass
class Pool:
    """The workloads of a run: their namespace and names; ``run`` is the token in their
    ``kubetest.io/run`` label when kubetest created them (``owned``)."""

    namespace: str
    names: list[str]
    owned: bool
    run: str = ""
    selector: str = ""
    #: how many of its Deployments the run deleted at its end (None: not deleted yet)
    deleted: int | None = None

    def save(self, session_dir: Path) -> Path:
        path = Path(session_dir) / POOL_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, session_dir: Path) -> Pool | None:
        path = Path(session_dir) / POOL_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))


def workload_name(run: str, i: int) -> str:
    return f"kubetest-{run}-{i}"


def _deployment(name: str, namespace: str, run: str, image: str) -> dict[str, Any]:
    """A Deployment that never runs a pod (replicas 0) but exists for owner resolution."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {MANAGED_LABEL: "true", RUN_LABEL: run,
                       "app.kubernetes.io/managed-by": "kubetest"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"kubetest.io/workload": name}},
            "template": {
                "metadata": {"labels": {"kubetest.io/workload": name}},
                "spec": {"containers": [{"name": "idle", "image": image}]},
            },
        },
    }  # fmt: skip


def _refusal(exc: Any, verb: str, namespace: str) -> PoolError:
    """One line for an ``ApiException`` from a deployments call."""
    status = getattr(exc, "status", None)
    if status == 403:
        return PoolError(
            f"not allowed to {verb} deployments (apps) in namespace {namespace}: the "
            f"kubeconfig's user needs verb {verb} on deployments there; {RBAC_HINT}"
        )
    if status == 401:
        return PoolError(
            "the Kubernetes API refused the kubeconfig's credentials (401): "
            "refresh the token in environment.kubeconfig"
        )
    if status == 404:
        return _missing_namespace(namespace)
    reason = getattr(exc, "reason", "") or type(exc).__name__
    return PoolError(f"cannot {verb} deployments in namespace {namespace}: {status} {reason}")


def _missing_namespace(namespace: str) -> PoolError:
    return PoolError(
        f"namespace {namespace} does not exist: create it (kubectl create namespace "
        f"{namespace}) or set alerts.namespace to one the gateway manages"
    )


def _names(apps: Any, namespace: str, selector: str) -> list[str]:
    return sorted(_labels_of(apps, namespace, selector))


def _labels_of(apps: Any, namespace: str, selector: str) -> dict[str, str]:
    """Deployment name → its run label, for the Deployments matching ``selector``."""
    from kubernetes.client.rest import ApiException

    try:
        items = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    except ApiException as exc:
        raise _refusal(exc, "list", namespace) from None
    return {d.metadata.name: (d.metadata.labels or {}).get(RUN_LABEL, "") for d in items}


def _check_namespace(api: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.CoreV1Api(api).read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise _missing_namespace(namespace) from None
        # 403: reading namespaces is not kubetest's to need; creating will tell


def create_pool(
    api: Any,
    namespace: str,
    count: int,
    run: str,
    *,
    image: str = "registry.k8s.io/pause:3.10",
    ready_timeout_s: float = 60.0,
    reuse: bool = False,
    echo: Callable[[str], None] = lambda line: None,
) -> Pool:
    """Create ``count`` Deployments for run ``run`` and wait until they all exist.

    Refuses (one line) when Deployments of another kubetest run are still there, unless
    ``reuse`` (``--resume``) and they are this run's. On any failure whatever this call
    created is deleted again: nothing half-made is left behind.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    apps = client.AppsV1Api(api)
    _check_namespace(api, namespace)
    existing = _labels_of(apps, namespace, RUN_LABEL)
    others = sorted({r for r in existing.values() if r != run})
    if others:
        left = sum(1 for r in existing.values() if r != run)
        raise PoolError(
            f"{left} Deployments of an earlier kubetest run ({RUN_LABEL}="
            f"{', '.join(others[:3])}) are still in namespace {namespace}: remove them with "
            "kubetest cleanup --params <your params file>"
        )
    mine = {n for n, r in existing.items() if r == run}
    if mine and not reuse:
        raise PoolError(
            f"{len(mine)} Deployments of run {run} already exist in {namespace}: continue "
            "that session with --resume, or remove them with kubetest cleanup"
        )
    names = [workload_name(run, i) for i in range(count)]
    made: list[str] = []
    try:
        for name in names:
            if name in mine:
                continue
            try:
                apps.create_namespaced_deployment(
                    namespace, _deployment(name, namespace, run, image)
                )
            except ApiException as exc:
                if exc.status == 409:  # already there (a retried create)
                    continue
                raise _refusal(exc, "create", namespace) from None
            made.append(name)
        _wait_exist(apps, namespace, run, set(names), ready_timeout_s)
    except BaseException:
        _delete_names(apps, namespace, made)
        raise
    echo(f"workload pool: {len(made)} Deployments created, {len(mine)} reused in {namespace}")
    return Pool(namespace, names, owned=True, run=run)


def _wait_exist(apps: Any, namespace: str, run: str, names: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = set(_names(apps, namespace, f"{RUN_LABEL}={run}"))
        if names <= seen:
            return
        if time.monotonic() >= deadline:
            raise PoolError(
                f"only {len(names & seen)} of {len(names)} Deployments appeared in {namespace} "
                f"within {timeout_s:g} s: raise alerts.workloads.ready_timeout_s or check "
                "the API server"
            )
        time.sleep(0.2)


def select_pool(api: Any, namespace: str, selector: str) -> Pool:
    """Existing Deployments matching ``selector``: used, never deleted."""
    from kubernetes import client

    _check_namespace(api, namespace)
    names = _names(client.AppsV1Api(api), namespace, selector)
    if not names:
        raise PoolError(
            f"no Deployment in namespace {namespace} matches {selector!r}: check "
            "alerts.workloads.selector (kubectl get deploy -n "
            f"{namespace} -l '{selector}')"
        )
    return Pool(namespace, names, owned=False, selector=selector)


def _delete_names(apps: Any, namespace: str, names: list[str]) -> list[str]:
    from kubernetes.client.rest import ApiException

    gone: list[str] = []
    for name in names:
        try:
            apps.delete_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _refusal(exc, "delete", namespace) from None
        gone.append(name)
    return gone


def delete_pool(api: Any, pool: Pool) -> list[str]:
    """Delete the Deployments kubetest created for ``pool`` (none for a selected pool)."""
    from kubernetes import client

    if not pool.owned or not pool.run:
        return []
    apps = client.AppsV1Api(api)
    names = _names(apps, pool.namespace, f"{RUN_LABEL}={pool.run}")
    return _delete_names(apps, pool.namespace, names)


def cleanup(api: Any, namespace: str) -> list[str]:
    """Delete every Deployment any kubetest run created in ``namespace`` (found by the
    ``kubetest.io/run`` label): what interrupted runs left behind."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    return _delete_names(apps, namespace, _names(apps, namespace, RUN_LABEL))


def pool_from_params(
    params: Params, run: str, *, reuse: bool = False, echo: Callable[[str], None] = print
) -> Pool | None:
    """The pool ``alerts.workloads`` asks for (created or selected), or None."""
    spec = params.alerts.workloads
    if spec is None:
        return None
    api = api_client(params)
    namespace = params.alerts.namespace
    if spec.selector:
        return select_pool(api, namespace, spec.selector)
    assert spec.create is not None
    echo(f"workload pool: creating {spec.create} Deployments in {namespace} ...")
    return create_pool(
        api, namespace, spec.create, run, image=spec.image,
        ready_timeout_s=spec.ready_timeout_s, reuse=reuse, echo=echo,
    )  # fmt: skip


def release_pool(
    params: Params, pool: Pool | None, echo: Callable[[str], None] = print
) -> list[str] | None:
    """Delete what kubetest created for ``pool``: the names deleted, or None (nothing of
    kubetest's, or a failure: reported, never raised, the run's results matter more, with
    the command that finishes the job)."""
    if pool is None or not pool.owned:
        return None
    try:
        gone = delete_pool(api_client(params), pool)
    except KubetestError as exc:
        echo(f"workload pool: not deleted ({exc}); run kubetest cleanup --params <file>")
        return None
    echo(f"workload pool: {len(gone)} Deployments deleted from {pool.namespace}")
    return gone
