"""The target row and its token probe: the health endpoint answers (or, on TLS, which
certificate fails and what to set), and the webhook takes kubetest's bearer token; with
``preflight_auth``/``preflight_tls``, the same probes a load test runs before its minutes."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from kubetest import control, endpoints, rbac
from kubetest.checks.base import (
    FAILED,
    OK,
    TIMEOUT_S,
    Check,
    env_secrets,
    failed,
    ok,
    one_line,
    scrub,
)
from kubetest.endpoints import origin
from kubetest.errors import AuthError
from kubetest.params import Params
from kubetest.tls import FIXES as TLS_FIXES
from kubetest.tls import TlsError, tls_problem, verify

# --------------------------------------------------------------------------- target


def check_target(
    params: Params,
    timeout_s: float = TIMEOUT_S,
    health_url: str | None = None,
    webhook_url: str | None = None,
) -> Check:
    """The target's health endpoint answers 2xx, and its webhook takes kubetest's token.

    ``health_url`` is the URL of the target actually under test (a notebook's context, with
    the embedded target it started); without it an embedded target is not running yet.
    ``webhook_url``: its webhook, when not on the health URL's origin (the embedded
    kubernaut target serves health on a port of its own).
    Once healthy, a service kubetest did not start (or one given a token) gets one
    deliberately invalid alert (``check_auth``): a 401/403 fails this check as
    "authentication failed", before any load phase wastes its minutes on it.
    """
    if health_url is None and params.target.is_embedded:
        return ok("target", "embedded reference target: started for each run")
    url = health_url or endpoints.health_url(params.target)
    try:
        resp = control.get(
            url, timeout_s=timeout_s, verify=verify(params.target.tls), proxy=params.target.proxy
        )
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            return failed("target", f"{url}: {problem.what}", problem.fix)
        if isinstance(exc, control.ResponseTooLarge | control.DeadlineExceeded):
            return failed(
                "target", f"{url}: {control.error_class(exc)}: {one_line(exc)}", HOSTILE_FIX
            )
        return failed("target", f"{url}: {one_line(exc)}", _unreachable_fix(params, url))
    if not resp.is_success:
        return _unhealthy(params, url, resp)
    healthy = ok("target", f"{url}: HTTP {resp.status_code}")
    var = params.target.auth_token_env
    if params.target.is_embedded and not var:
        return healthy
    auth = check_auth(params, timeout_s, webhook_url or webhook_url_for(params, health_url))
    if auth.status == FAILED and (is_auth_failure(auth) or is_tls_failure(auth)):
        return replace(auth, name="target")
    if var and auth.status == OK:
        return replace(healthy, detail=f"{healthy.detail}; {auth.detail}")
    return healthy


def _gateway_ports(params: Params) -> bool:
    """The health URL is the Kubernaut gateway's own port (``kubetest.endpoints``)."""
    t = params.target
    return t.api == "kubernaut" and not t.is_embedded and not t.health_url


#: The fix for a health URL that floods or trickles (``kubetest.control`` caps it).
HOSTILE_FIX = (
    "point target.health_url at the service's health endpoint (a short answer within "
    "target.timeout_s)"
)


def _unreachable_fix(params: Params, url: str) -> str:
    if _gateway_ports(params):
        return (
            f"the gateway serves {endpoints.GATEWAY_HEALTH_PATH} on its own port "
            f"{endpoints.GATEWAY_HEALTH_PORT} (metrics on {endpoints.GATEWAY_METRICS_PORT}): "
            "reach it too (kubectl -n <kubernaut namespace> port-forward svc/gateway-service "
            "8080 8081 9090) or set target.health_url"
        )
    return "start the service or fix target.url / target.health_url"


def _unhealthy(params: Params, url: str, resp: httpx.Response) -> Check:
    """Not 2xx: the gateway's ``/readyz`` says which dependency is down in an RFC 7807
    ``detail`` (``writeReadinessUnavailable`` in ``pkg/gateway/server.go``; plain
    ``starting up`` from the bootstrap server, ``pkg/shared/health/server.go``; kubernaut
    at d5a4a870967312d98dbc302ac2ae3505087bfcb0)."""
    from kubetest.engine.client import problem_detail

    said = problem_detail(resp.content, secrets=env_secrets(params))
    detail = f"{url}: HTTP {resp.status_code}" + (f": {said}" if said else "")
    if resp.status_code == 404 and _gateway_ports(params):
        return failed("target", detail, _unreachable_fix(params, url))
    if resp.status_code == 503 and params.target.api == "kubernaut":
        return failed("target", detail + " (the gateway is not ready)",
                       "bring back what the detail names (the Kubernetes API, DataStorage, "
                       "the fleet backend) or wait for the informer cache to sync; see the "
                       "gateway's log")  # fmt: skip
    return failed("target", detail, "the service answers but is not healthy: see its logs")


# --------------------------------------------------------------------------- auth

#: Token help for the README's "Pointing it at a real Kubernaut".
TOKEN_FIX = (
    "export {var}=$(kubectl create token <service-account> -n <namespace>) "
    "(a token the gateway's TokenReview accepts)"
)


def _probe_body() -> dict[str, Any]:
    """A webhook whose one alert lacks ``alertname``: a service that checks the token first
    answers 401/403 to a bad one and 400 to a good one, and creates nothing either way."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {"status": "firing", "labels": {"kubetest_probe": "auth"}, "annotations": {},
             "startsAt": now, "endsAt": "0001-01-01T00:00:00Z"}  # fmt: skip
    return {"version": "4", "status": "firing", "receiver": "kubetest-auth-probe",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "", "groupKey": "{}:{kubetest_probe=\"auth\"}",
            "truncatedAlerts": 0, "alerts": [alert]}  # fmt: skip


def webhook_url_for(params: Params, health_url: str | None = None) -> str | None:
    """The webhook under test: ``target.url``, or for an embedded target the profile's path
    on the origin of the health URL it runs at (``None``: not started yet)."""
    if not params.target.is_embedded:
        return params.target.url
    if health_url is None:
        return None
    from kubetest.params import API_PATHS

    return origin(health_url) + API_PATHS[params.target.api]


def check_auth(
    params: Params, timeout_s: float = TIMEOUT_S, webhook_url: str | None = None
) -> Check:
    """One deliberately invalid alert, with the bearer token when one is configured:
    401/403 is "authentication/authorization failed" (before any load wastes its minutes);
    for the Kubernaut gateway each says which of its two reviews refused, and the fix."""
    var = params.target.auth_token_env
    url = webhook_url or webhook_url_for(params)
    if url is None:
        how = f"token from ${var}" if var else "no token"
        return ok("auth", f"embedded reference target ({how}): checked when it starts")
    headers = {"Content-Type": "application/json"}
    token = ""
    if var:
        token = os.environ.get(var, "")
        if not token:
            return failed(
                "auth", f"${var} (target.auth_token_env) is not set", TOKEN_FIX.format(var=var)
            )
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = control.post(
            url, json=_probe_body(), headers=headers, timeout_s=timeout_s,
            verify=verify(params.target.tls), proxy=params.target.proxy,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            return failed("auth", f"{url}: {problem.what}", problem.fix)
        return failed("auth", f"POST {url}: {one_line(exc)}", "start the service or fix target.url")
    from kubetest.engine.client import problem_detail

    code = resp.status_code
    said = problem_detail(resp.content, secrets=env_secrets(params))
    said = f" ({said})" if said else ""
    if code in (401, 403) and var and params.target.api == "kubernaut":
        return _gateway_refusal(params, url, code, said, var, token)
    if code in (401, 403):
        what = "rejected" if code == 401 else "not allowed"
        if var:
            return failed(
                "auth",
                f"authentication failed: POST {url} answered {code}{said}: the token in "
                f"${var} was {what}",
                TOKEN_FIX.format(var=var)
                if code == 401
                else "grant the token's service account the gateway's RBAC role",
            )
        return failed(
            "auth",
            f"authentication failed: POST {url} answered {code}{said}: the service wants a "
            "bearer token and target.auth_token_env is not set",
            "set target.auth_token_env to the name of an env var; "
            + TOKEN_FIX.format(var="KUBERNAUT_TOKEN"),
        )
    if code in (404, 405):
        return failed(
            "auth",
            f"POST {url} answered {code}: no webhook there for target.api {params.target.api}",
            "fix target.url or target.api (kubernaut: /api/v1/signals/prometheus, "
            "kubernaut-legacy: /alerts, webhook: /webhook/prometheus)",
        )
    if code >= 500:
        return failed(
            "auth", f"POST {url} answered {code}{said} to the token probe", "see the service's logs"
        )
    how = f"token from ${var} accepted" if var else "no token needed"
    return ok("auth", f"POST {url}: {how} (HTTP {code} to a deliberately invalid alert)")


def _gateway_refusal(params: Params, url: str, code: int, said: str, var: str, token: str) -> Check:
    """The Kubernaut gateway's 401 (its TokenReview did not authenticate the token) or 403
    (its SubjectAccessReview found no grant), explained with the fix; the gateway's side is
    in ``kubetest.rbac`` with its source files and commit."""
    info = rbac.token_info(token)
    who = info.subject if info else f"the token in ${var}"
    if code == 401:
        why = f"the token in ${var} is not valid for the cluster's TokenReview" + (
            f" ({who}, expired {info.expires:%Y-%m-%d %H:%M} UTC)" if info and info.expired else ""
        )
        return failed("auth", f"authentication failed: POST {url} answered 401{said}: {why}",
                       rbac.token_fix(var, info))  # fmt: skip
    ns = params.remediation.namespace
    return failed(
        "auth",
        f"authorization failed: POST {url} answered 403{said}: {who} is authenticated but "
        f"lacks the gateway's grant ({rbac.gateway_grant(ns)})",
        rbac.signal_source_fix(ns, info),
    )


def is_auth_failure(check: Check) -> bool:
    """A failed ``check_auth`` that is about the token (not reachability or the path)."""
    return check.status == FAILED and (
        check.detail.startswith(("authentication failed", "authorization failed"))
        or "auth_token_env" in check.detail
    )


def is_tls_failure(check: Check) -> bool:
    """A failed check whose cause is the service's certificate (its fix says what to set)."""
    return check.status == FAILED and check.fix in TLS_FIXES


def preflight_auth(params: Params, url: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise ``AuthError`` (one line) when the webhook at ``url`` refuses kubetest's token,
    or ``TlsError`` when its certificate is refused, so a load test fails in a second
    instead of measuring ten minutes of 401s or handshake failures. Other problems are left
    to the load itself (it records them as outcomes)."""
    if params.target.is_embedded and not params.target.auth_token_env:
        return
    check = scrub(check_auth(params, timeout_s, webhook_url=url), env_secrets(params))
    if is_auth_failure(check):
        raise AuthError(f"{check.detail}; fix: {check.fix}")
    if is_tls_failure(check):
        raise TlsError(f"{check.detail}: {check.fix}")


def preflight_tls(params: Params, url: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise ``TlsError`` (one line) when an HTTPS ``url`` of the service refuses the
    handshake: a test that only probes (A3) fails now, not after its whole window."""
    if urlsplit(url).scheme != "https":
        return
    try:
        control.get(
            url, timeout_s=timeout_s, verify=verify(params.target.tls), proxy=params.target.proxy
        )
    except httpx.HTTPError as exc:
        problem = tls_problem(exc)
        if problem is not None:
            raise TlsError(problem.line(url)) from None
