"""The cluster rows: the kubeconfig's API server and A4's namespaces (``kubernetes``),
kubetest's own RBAC rights there (``rbac``, SelfSubjectAccessReviews), and whether A4 can
judge BR-PA-011 with the actions its section lets run (``a4_actions``)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from kubetest import control, rbac
from kubetest.checks.base import (
    TIMEOUT_S,
    WARNING,
    Check,
    Deadline,
    failed,
    not_configured,
    ok,
    one_line,
    scrub,
)
from kubetest.errors import KubeconfigError
from kubetest.params import A4Actions, Environment, Params

# --------------------------------------------------------------------------- Kubernetes


@dataclass
class KubeAccess:
    """What a kubeconfig's current context says about reaching the API server."""

    path: Path
    context: str
    server: str
    namespace: str
    headers: dict[str, str] = field(default_factory=dict)
    ssl: ssl.SSLContext | bool = True
    secrets: list[str] = field(default_factory=list)


def find_kubeconfig(env: Environment | None) -> tuple[Path | None, str]:
    """The kubeconfig to use and where it came from: the param, $KUBECONFIG, ~/.kube/config.
    ``embedded``: the running embedded target's (``(None, "embedded")`` before it runs)."""
    if env and env.kubeconfig == "embedded":
        from kubetest.workloads import EMBEDDED_KUBECONFIG_ENV

        running = os.environ.get(EMBEDDED_KUBECONFIG_ENV)
        return (Path(running), "the embedded target") if running else (None, "embedded")
    if env and env.kubeconfig:
        return Path(env.kubeconfig).expanduser(), "environment.kubeconfig"
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return Path(entry).expanduser(), "$KUBECONFIG"
    default = Path.home() / ".kube" / "config"
    return (default, "~/.kube/config") if default.is_file() else (None, "")


def _named(items: Any, name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(kind) or {}
    raise KubeconfigError(f"{kind} {name!r} is not defined in the kubeconfig")


def _write_temp(tmp: Path, name: str, b64: str) -> Path:
    """Inline ``*-data`` (base64 PEM) as a 0600 file, for ``ssl`` which only loads files."""
    import base64

    path = tmp / name
    path.write_bytes(base64.b64decode(b64))
    path.chmod(0o600)
    return path


def _pem(section: dict[str, Any], key: str, base: Path, tmp: Path) -> Path | None:
    """``key`` (a path, relative to the kubeconfig) or ``key-data`` (inline base64)."""
    if section.get(f"{key}-data"):
        return _write_temp(tmp, key, section[f"{key}-data"])
    if section.get(key):
        return (base / Path(section[key]).expanduser()).resolve()
    return None


def _exec_credential(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run a client-go exec credential plugin (EKS, GKE, OIDC helpers) and read its status."""
    command = [spec["command"], *[str(a) for a in spec.get("args") or []]]
    env = os.environ | {e["name"]: str(e["value"]) for e in spec.get("env") or []}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    out = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if out.returncode != 0:
        raise KubeconfigError(f"exec credential plugin {spec['command']!r} exited {out.returncode}")
    return json.loads(out.stdout).get("status") or {}


def load_kube_access(path: Path, tmp: Path, timeout_s: float = TIMEOUT_S) -> KubeAccess:
    """Parse a kubeconfig's current context into a server URL, TLS settings and auth header."""
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise KubeconfigError("not a kubeconfig (top level is not a mapping)")
    name = cfg.get("current-context")
    if not name:
        raise KubeconfigError("no current-context: run kubectl config use-context <name>")
    ctx = _named(cfg.get("contexts"), name, "context")
    cluster = _named(cfg.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(cfg.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server URL")
    access = KubeAccess(path, name, server, ctx.get("namespace") or "default")
    base = path.parent
    if user.get("exec"):
        status = _exec_credential(user["exec"], timeout_s)
        user = user | {"token": status.get("token")}
        for key, pem in (
            ("client-certificate-data", "clientCertificateData"),
            ("client-key-data", "clientKeyData"),
        ):
            if status.get(pem):
                import base64

                user[key] = base64.b64encode(status[pem].encode()).decode()
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    if token:
        access.headers["Authorization"] = f"Bearer {token}"
        access.secrets.append(token)
    elif user.get("username") and user.get("password"):
        import base64

        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        access.headers["Authorization"] = f"Basic {basic}"
        access.secrets += [user["password"], basic]
    if server.startswith("https://"):
        access.ssl = _tls_context(cluster, user, base, tmp)
    return access


def _tls_context(
    cluster: dict[str, Any], user: dict[str, Any], base: Path, tmp: Path
) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority", base, tmp)
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = _pem(user, "client-certificate", base, tmp)
    key = _pem(user, "client-key", base, tmp)
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _kube_namespaces(params: Params) -> list[str]:
    """The namespaces A4 may act in (its allow-list; the guide's test-workloads by default)."""
    return list((params.a4_actions or A4Actions()).namespaces)


def check_kubernetes(params: Params, timeout_s: float = TIMEOUT_S) -> Check:
    """The kubeconfig's cluster answers ``/version`` and A4's namespaces exist."""
    path, source = find_kubeconfig(params.environment)
    if path is None and source == "embedded":
        return ok("kubernetes", "environment.kubeconfig is 'embedded': the embedded target's "
                   "own cluster, started for each run")  # fmt: skip
    if path is None:
        return _no_kubeconfig(params)
    if not path.is_file():
        return failed(
            "kubernetes",
            f"kubeconfig {path} ({source}) does not exist",
            "fix environment.kubeconfig",
        )
    secrets: list[str] = []
    deadline = Deadline(timeout_s)
    with tempfile.TemporaryDirectory(prefix="kubetest-kube-") as tmp:
        try:
            access = load_kube_access(path, Path(tmp), deadline.left())
        except (
            KubeconfigError,
            OSError,
            ValueError,
            KeyError,
            TypeError,
            yaml.YAMLError,
            ssl.SSLError,
            subprocess.SubprocessError,
        ) as exc:
            return failed(
                "kubernetes",
                f"kubeconfig {path}: {one_line(exc)}",
                "fix the kubeconfig (kubectl config view)",
            )
        secrets = access.secrets
        check = _probe_cluster(access, _kube_namespaces(params), deadline)
    return scrub(check, secrets)


def _no_kubeconfig(params: Params) -> Check:
    """No cluster to check: a failure when A4 verifies through it, else optional (and the
    hint names what the cluster would be used for with these params)."""
    where = "no kubeconfig (environment.kubeconfig, $KUBECONFIG, ~/.kube/config)"
    a4 = params.a4_actions
    if a4 is not None and a4.verify == "kubernetes":
        return failed(
            "kubernetes",
            where,
            "set environment.kubeconfig: A4 (verify: kubernetes) counts an action "
            "only when its RemediationRequest, read through it, is Completed",
        )
    if a4 is not None and a4.verify == "history":
        use = "A4 verifies actions through the service's action history"
    elif params.target.api == "kubernaut":
        use = "it lets A1 follow RemediationRequests to time to remediation"
    else:
        use = "nothing in this plan needs it"
    return not_configured(
        "kubernetes", where, f"set environment.kubeconfig to check the cluster (optional: {use})"
    )


def check_a4_actions(params: Params) -> list[Check]:
    """Whether A4 can judge BR-PA-011 as configured: enough actions must get past the
    destructive guard (``kubernaut``'s 27 leave 18 without ``allow_destructive``), or the
    verdict is INCONCLUSIVE after the whole run. No row without an A4 section."""
    from kubetest.actions import BR_MIN_ACTIONS, planned_actions

    section = params.a4_actions
    if section is None:
        return []
    run, skipped = planned_actions(params, section)
    held = [a for a, why in skipped.items() if why.startswith("destructive")]
    unknown = [a for a, why in skipped.items() if why == "unknown action"]
    need = section.min_actions
    lowered = (f" (a4_actions.min_actions {need}, lowered from BR-PA-011's {BR_MIN_ACTIONS})"
               if need < BR_MIN_ACTIONS else "")  # fmt: skip
    what = f"{len(run)} of {len(run) + len(skipped)} actions will run"
    if held:
        what += f" ({len(held)} destructive held back by the guard)"
    if unknown:
        what += f" ({len(unknown)} unknown: {', '.join(unknown[:3])})"
    if len(run) >= need:
        return [ok("a4_actions", f"{what}; BR-PA-011 needs {need}{lowered}")]
    if held:
        fix = (
            f"opt in: a4_actions.allow_destructive: true with a4_actions.namespaces "
            f"listing only test namespaces; or judge the safe ones: a4_actions.min_actions: "
            f"{len(run)} (a lowered count, named as such in the verdict)"
        )
    else:
        fix = (
            f"list at least {need} actions in a4_actions.actions (or actions: all), or "
            f"a4_actions.min_actions: {len(run)}"
        )
    return [
        Check(
            "a4_actions",
            WARNING,
            False,
            f"{what}; BR-PA-011 needs {need}{lowered}: A4 will be INCONCLUSIVE",
            fix,
        )
    ]


def _probe_cluster(access: KubeAccess, namespaces: list[str], deadline: Deadline) -> Check:
    where = f"context {access.context} → {access.server}"
    try:
        with control.client(
            base_url=access.server,
            headers=access.headers,
            verify=access.ssl,
            timeout_s=deadline.left(),
            proxy="env",
        ) as client:
            resp = client.get("/version", timeout=deadline.left())
            if resp.status_code != 200:
                return failed(
                    "kubernetes",
                    f"{where}: /version answered HTTP {resp.status_code}",
                    _kube_fix(resp.status_code),
                )
            version = str(resp.json().get("gitVersion", "?"))
            missing, other = [], []
            for ns in namespaces:
                r = client.get(f"/api/v1/namespaces/{quote(ns, safe='')}", timeout=deadline.left())
                if r.status_code == 404:
                    missing.append(ns)
                elif r.status_code != 200:
                    other.append((ns, r.status_code))
    except (httpx.HTTPError, ValueError, ssl.SSLError) as exc:
        return failed(
            "kubernetes",
            f"{where}: {one_line(exc)}",
            "start the cluster (kind create cluster) or fix the kubeconfig",
        )
    where += f" (Kubernetes {version})"
    if other:
        ns, code = other[0]
        return failed("kubernetes", f"{where}: namespace {ns}: HTTP {code}", _kube_fix(code))
    if missing:
        return failed(
            "kubernetes",
            f"{where}: namespace {', '.join(missing)} not found",
            "; ".join(f"kubectl create namespace {ns}" for ns in missing),
        )
    return ok("kubernetes", f"{where}: namespace {', '.join(namespaces)} present")


def _kube_fix(status: int) -> str:
    if status == 401:
        return "the credentials were rejected: refresh the token or client certificate"
    if status == 403:
        return "the user may not read namespaces: grant get on namespaces (RBAC)"
    return "see the API server's logs"


# --------------------------------------------------------------------------- RBAC


def check_rbac(params: Params, timeout_s: float = TIMEOUT_S) -> list[Check]:
    """kubetest's own rights in the cluster (``kubernaut`` profile with
    ``environment.kubeconfig``), asked with SelfSubjectAccessReviews: one row per denied
    permission or missing namespace, else one ``ok`` row; ``[]`` when not applicable."""
    env = params.environment
    kubeconfig = env.kubeconfig if env else None
    if params.target.api != "kubernaut" or not kubeconfig:
        return []
    needs = rbac.required_permissions(params)
    rows = [
        not_configured("rbac", why, "set remediation.namespace to check it before the run")
        for why in needs.unknown
    ]
    path, source = find_kubeconfig(env)
    if path is None:  # embedded, and the target is not running (kubetest check alone)
        return [not_configured("rbac", "environment.kubeconfig is 'embedded': the embedded "
                                "target's own cluster, checked when a run starts it", ""),
                *rows]  # fmt: skip
    if not path.is_file():  # the kubernetes row says so already
        return [
            failed("rbac", f"kubeconfig {path} does not exist", "fix environment.kubeconfig"),
            *rows,
        ]
    return _review_all(path, needs, Deadline(timeout_s)) + rows


def _review_all(path: Path, needs: rbac.Needs, deadline: Deadline) -> list[Check]:
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    try:
        api_client = config.new_client_from_config(config_file=str(path))
    except Exception as exc:
        return [failed("rbac", f"kubeconfig {path}: {one_line(exc)}",
                        "fix the kubeconfig (kubectl config view)")]  # fmt: skip
    rows: list[Check] = []
    allowed: list[rbac.Permission] = []
    try:
        missing = set()
        for ns, (param, fix) in needs.namespaces.items():
            if rbac.namespace_exists(api_client, ns, deadline.left()) is False:
                missing.add(ns)
                rows.append(failed("rbac", f"namespace {ns} ({param}) does not exist", fix))
        for perm in needs.permissions:
            if perm.namespace in missing:
                continue
            answer = rbac.review(api_client, perm, deadline.left())
            if answer.allowed:
                allowed.append(perm)
                continue
            reason = f" ({answer.reason})" if answer.reason else ""
            rows.append(
                failed(
                    "rbac",
                    f"denied: {perm.verb} {perm.qualified} {perm.where}{reason}: {perm.why}",
                    perm.fix(),
                )
            )
    except ApiException as exc:
        said = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        rows.append(
            failed("rbac", f"SelfSubjectAccessReview failed: {said}", _kube_fix(exc.status or 0))
        )
    except Exception as exc:
        rows.append(failed("rbac", f"SelfSubjectAccessReview failed: {one_line(exc)}",
                            "start the cluster or fix the kubeconfig"))  # fmt: skip
    finally:
        api_client.close()
    if not rows:
        rows.append(ok("rbac", f"{len(allowed)} permissions allowed: " + _grouped(allowed)))
    return [scrub(r, _client_secrets(api_client)) for r in rows]


def _client_secrets(api_client: Any) -> list[str]:
    """The credentials the kubernetes client loaded (a library message must not show them)."""
    cfg = api_client.configuration
    keys = [str(v).removeprefix("Bearer ") for v in (cfg.api_key or {}).values()]
    return [s for s in (*keys, cfg.password or "") if s]


def _grouped(perms: list[rbac.Permission]) -> str:
    """``deployments.apps get/list in namespace x; ...`` (verbs of one resource together)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in perms:
        groups.setdefault((p.qualified, p.where), []).append(p.verb)
    return "; ".join(f"{res} {'/'.join(verbs)} {where}" for (res, where), verbs in groups.items())
