"""The reference target's command line (``kubetest target``, ``python -m kubetest.target``):
the options and their checks, the ``TargetConfig`` they name (``config_from_args``), and
the way back, a config as the arguments of a child target (``child_arguments``); both
directions read one table (``CONFIG_OPTIONS``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kubetest.errors import ParamsError
from kubetest.target.app import KUBE_TOKEN_ENV
from kubetest.target.kube_rules import VERBS
from kubetest.target.model import SERVICE_DISTS, TARGET_APIS, TargetConfig
from kubetest.target.server import DEFAULT_PORTS, serve

#: Command-line options handed to ``server.serve`` under the same name.
SERVE_OPTIONS = (
    "log_level", "exit_on_stdin_eof", "health_port", "metrics_port", "kube_port", "kubeconfig",
    "tls_cert", "tls_key",
)  # fmt: skip


def _number(
    kind: type[int] | type[float],
    lo: float,
    hi: float,
    message: str,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """An argparse ``type`` that reads ``kind`` and refuses it outside ``lo``..``hi``.

    The bounds are closed unless ``lo_open``/``hi_open``; NaN is always refused. A refusal
    reads ``<message>, got <text>``, with the text as typed (``1e999`` rather than ``inf``).
    """
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, got {text!r}") from None
        above = lo < value if lo_open else lo <= value
        below = value < hi if hi_open else value <= hi
        if not (above and below):
            raise argparse.ArgumentTypeError(f"{message}, got {text}")
        return value

    return parse


_INF = float("inf")
_positive_int = _number(int, 1, _INF, "must be >= 1")
_port = _number(int, 0, 65535, "must be within 0..65535 (0: any free port)")
_positive_float = _number(float, 0, _INF, "must be > 0", lo_open=True, hi_open=True)
_fraction = _number(float, 0, 1, "must be within [0, 1]")
_non_negative_float = _number(float, 0, _INF, "must be >= 0", hi_open=True)


def _outage(text: str) -> tuple[float, float]:
    start, sep, duration = text.partition(":")
    try:
        if not sep:
            raise ValueError
        window = (float(start), float(duration))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be START_S:DURATION_S (seconds after start), got {text!r}"
        ) from None
    if not (window[0] >= 0 and 0 < window[1] < float("inf")):
        raise argparse.ArgumentTypeError(f"needs START_S >= 0 and DURATION_S > 0, got {text!r}")
    return window


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list (``""``: none)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _phases(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(
            f"must be PROCESSING,ANALYZING,EXECUTING,VERIFYING (4 numbers >= 0, seconds), "
            f"got {text!r}"
        )
    return values  # type: ignore[return-value]


def _denied(text: str) -> str:
    verb, sep, resource = text.partition(":")
    if not sep or verb not in VERBS or not resource:
        raise argparse.ArgumentTypeError(
            f"must be VERB:RESOURCE (e.g. delete:deployments), VERB one of "
            f"{', '.join(sorted(VERBS))}; got {text!r}"
        )
    return text


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the target's options to ``parser`` (e.g. a ``kubetest target`` subparser)."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="python -m kubetest.target",
            description="Run the kubetest reference target (a Kubernaut-compatible stand-in "
            "with a known M/G/c queueing model) in the foreground until interrupted.",
        )
    d = TargetConfig()
    add = parser.add_argument

    def knob(flag: str, text: str, **kwargs: Any) -> None:
        """An option defaulting to the ``TargetConfig`` field of its name, shown in --help."""
        default = getattr(d, flag.removeprefix("--").replace("-", "_"))
        add(flag, default=default, help=f"{text} (default: %(default)s)", **kwargs)

    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    add(
        "--port",
        type=_port,
        default=8080,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    knob("--workers", "concurrent analysers, the c of M/G/c", type=_positive_int)
    knob("--service-ms", "mean service time per alert in ms", type=_positive_float)
    knob("--service-dist", "service-time distribution", choices=SERVICE_DISTS)
    knob("--lognormal-sigma", "shape of the lognormal service time", type=_positive_float)
    knob("--error-rate", "probability that a webhook answers 500", type=_fraction)
    add(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="START_S:DURATION_S",
        help="answer 503 during this window after start; repeatable",
    )
    add("--seed", type=int, default=None, help="random seed for service times and errors")
    add(
        "--max-body-bytes",
        type=_positive_int,
        default=None,
        help="larger webhook bodies get 413 (default: 1048576; kubernaut: 262144)",
    )
    knob("--max-alerts", "webhooks with more alerts get 413", type=_positive_int)
    knob(
        "--api",
        "API profile: webhook (POST /webhook/prometheus, the guide's), kubernaut "
        "(POST /api/v1/signals/prometheus: 201/202/207, dedup, 429), kubernaut-legacy "
        "(POST /alerts: 200, cooldown 500, rate limit 429)",
        choices=TARGET_APIS,
    )
    add(
        "--auth-token-env",
        metavar="NAME",
        default=None,
        help="require Authorization: Bearer <value of $NAME> on the webhook (401 otherwise)",
    )
    add(
        "--max-concurrent-requests",
        type=_positive_int,
        default=None,
        help="webhook requests in flight before 429 (default: kubernaut 100, others no limit)",
    )
    add(
        "--managed-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="kubernaut: a namespace of the target's cluster labelled kubernaut.ai/managed="
        "true (alerts about its Deployments are in scope); repeatable (default: none)",
    )
    add(
        "--kube-namespaces",
        type=_names,
        default=d.kube_namespaces,
        metavar="NS,NS",
        help="kubernaut: the cluster's other namespaces, unlabelled (default: "
        + ",".join(d.kube_namespaces)
        + ")",
    )
    add(
        "--controller-namespace",
        default=d.controller_namespace,
        metavar="NS",
        help="kubernaut: where RemediationRequests are created (default: %(default)s)",
    )
    add(
        "--remediation-phase-s",
        type=_phases,
        default=d.remediation_phase_s,
        metavar="P,A,E,V",
        help="kubernaut: mean seconds a RemediationRequest spends Processing, Analyzing, "
        "Executing and Verifying (default: "
        + ",".join(f"{p:g}" for p in d.remediation_phase_s)
        + ")",
    )
    knob(
        "--remediation-fail-rate",
        "kubernaut: share of RemediationRequests that fail at Executing",
        type=_fraction,
    )
    knob(
        "--blocked-rate",
        "kubernaut: share of RemediationRequests Blocked (non-terminal) for "
        "--blocked-s, then Failed (if failing) or on to Completed",
        type=_fraction,
    )
    knob(
        "--blocked-s",
        "kubernaut: how long a Blocked RemediationRequest stays Blocked",
        type=_non_negative_float,
    )
    add(
        "--kube-deny",
        type=_denied,
        action="append",
        default=[],
        metavar="VERB:RESOURCE",
        help="kubernaut: take this grant from kubetest's kube API token (e.g. "
        "delete:deployments); repeatable",
    )
    for server, what in (
        ("health", "/healthz and /readyz"),
        ("metrics", "/metrics"),
        ("kube", "the cluster's Kubernetes API"),
    ):
        add(
            f"--{server}-port",
            type=_port,
            default=DEFAULT_PORTS[server],
            help=f"kubernaut: port of {what} (default: %(default)s)",
        )
    add(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubernaut: write a kubeconfig for the kube API there (mode 0600); its token is "
        f"${KUBE_TOKEN_ENV} when set, else a random one",
    )
    knob(
        "--future-tolerance-s",
        "kubernaut: refuse alerts whose startsAt is further ahead",
        type=_non_negative_float,
    )
    add(
        "--rate-limit",
        type=_positive_float,
        default=None,
        metavar="PER_S",
        help="answer 429 above this many webhook requests per second (default: none)",
    )
    knob(
        "--cooldown-s",
        "kubernaut-legacy: 500 for an alertname/namespace pair seen within this many seconds",
        type=_non_negative_float,
    )
    knob(
        "--lose-rate",
        "integrity fault: share of accepted alerts silently left out of the action history",
        type=_fraction,
    )
    knob(
        "--duplicate-rate",
        "integrity fault: share of accepted alerts recorded twice in the action history",
        type=_fraction,
    )
    add(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="warning",
        help="server log level (default: %(default)s)",
    )
    add("--tls-cert", help="serve HTTPS with this certificate chain (PEM); needs --tls-key")
    add("--tls-key", help="the private key (PEM) of --tls-cert")
    add(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (used by a parent process that owns this target)",
    )
    return parser


#: Every ``TargetConfig`` field the command line sets, with its option's ``dest`` (the
#: option is ``--`` + dest with ``-`` for ``_``). ``config_from_args`` reads these options,
#: ``child_arguments`` writes them: one list, so a new knob cannot reach one and not the other.
CONFIG_OPTIONS: dict[str, str] = {
    "workers": "workers",
    "service_ms": "service_ms",
    "service_dist": "service_dist",
    "error_rate": "error_rate",
    "outages": "outage",
    "lognormal_sigma": "lognormal_sigma",
    "seed": "seed",
    "max_body_bytes": "max_body_bytes",
    "max_alerts": "max_alerts",
    "api": "api",
    "auth_token_env": "auth_token_env",  # the token's name: the child inherits its value
    "max_concurrent_requests": "max_concurrent_requests",
    "managed_namespaces": "managed_namespace",
    "kube_namespaces": "kube_namespaces",
    "controller_namespace": "controller_namespace",
    "remediation_phase_s": "remediation_phase_s",
    "remediation_fail_rate": "remediation_fail_rate",
    "blocked_rate": "blocked_rate",
    "blocked_s": "blocked_s",
    "kube_denied": "kube_deny",
    "future_tolerance_s": "future_tolerance_s",
    "rate_limit_per_s": "rate_limit",
    "cooldown_s": "cooldown_s",
    "lose_rate": "lose_rate",
    "duplicate_rate": "duplicate_rate",
}
#: Options given once per item (``action="append"``).
_REPEATED = frozenset({"outages", "managed_namespaces", "kube_denied"})
#: Options that take their items comma-separated.
_COMMA_LISTS = frozenset({"kube_namespaces", "remediation_phase_s"})


def config_from_args(args: argparse.Namespace) -> TargetConfig:
    """The ``TargetConfig`` named by options parsed with ``build_parser``.

    Raises ``ParamsError`` (one line) when the options are inconsistent.
    """
    try:
        config = TargetConfig(
            **{field: getattr(args, dest) for field, dest in CONFIG_OPTIONS.items()}
        )
    except ValueError as exc:
        raise ParamsError(f"target: {exc}") from None
    if config.auth_token_env and not os.environ.get(config.auth_token_env):
        raise ParamsError(
            f"target: --auth-token-env names ${config.auth_token_env}, which is not set: "
            "export the token first"
        )
    return config


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with options parsed by ``build_parser`` until interrupted; the exit code.

    For ``kubetest target`` as well as ``python -m kubetest.target``.
    """
    config = config_from_args(args)
    tls_files = [f for f in (args.tls_cert, args.tls_key) if f]
    if len(tls_files) == 1 or any(not os.path.isfile(f) for f in tls_files):
        raise ParamsError("target: HTTPS needs both --tls-cert and --tls-key, existing PEM files")
    serve(config, args.host, args.port, **{name: getattr(args, name) for name in SERVE_OPTIONS})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config_from_args(args)
    except ParamsError as exc:
        parser.error(str(exc))
    return run_from_args(args)


def _text(value: Any) -> str:
    """A value as its option reads it back: floats exactly (``repr``), an outage window
    as ``START:DURATION``."""
    if isinstance(value, tuple):
        return ":".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def child_arguments(config: TargetConfig, host: str) -> list[str]:
    """The command line of a child target serving ``config`` on ``host``: every port 0
    (the kernel picks), and stop when stdin closes (``EmbeddedTarget``)."""
    args = ["--host", host, "--port", "0"]
    for field, dest in CONFIG_OPTIONS.items():
        value = getattr(config, field)
        flag = "--" + dest.replace("_", "-")
        if field in _REPEATED:
            for item in value:
                args += [flag, _text(item)]
        elif field in _COMMA_LISTS:
            args += [flag, ",".join(_text(v) for v in value)]
        elif value is not None:
            args += [flag, _text(value)]
    args += ["--health-port", "0", "--metrics-port", "0", "--kube-port", "0"]
    return [*args, "--exit-on-stdin-eof"]
