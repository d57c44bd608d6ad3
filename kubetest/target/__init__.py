"""The reference target: a Kubernaut-compatible stand-in whose queueing truth is known.

``TargetConfig`` holds the model (workers, service-time law, errors, outages, the
kubernaut profile's cluster); ``create_app`` builds the webhook's ASGI app and
``create_apps`` every app (kubernaut: webhook, health, metrics, Kubernetes API);
``serve`` runs them in the foreground (``command``: its command line); ``EmbeddedTarget``
runs them in a child process on free loopback ports for a session or a test.
"""

from kubetest.errors import TargetStartError
from kubetest.target.app import TargetApps, create_app, create_apps
from kubetest.target.command import build_parser, config_from_args, run_from_args
from kubetest.target.embedded import EmbeddedTarget
from kubetest.target.model import TargetConfig, make_sampler
from kubetest.target.server import serve

__all__ = [
    "EmbeddedTarget",
    "TargetApps",
    "TargetConfig",
    "TargetStartError",
    "build_parser",
    "config_from_args",
    "create_app",
    "create_apps",
    "make_sampler",
    "run_from_args",
    "serve",
]
