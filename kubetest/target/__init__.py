"""The reference target: a Kubernaut-compatible stand-in whose queueing truth is known.

``TargetConfig`` holds the model (workers, service-time law, errors, outages);
``create_app`` builds the ASGI app; ``serve`` runs it in the foreground; ``EmbeddedTarget``
runs it in a child process on a free loopback port for a session or a test.
"""

from kubetest.target.app import create_app
from kubetest.target.model import TargetConfig, make_sampler
from kubetest.target.server import (
    EmbeddedTarget,
    TargetStartError,
    build_parser,
    config_from_args,
    run_from_args,
    serve,
)

__all__ = [
    "EmbeddedTarget",
    "TargetConfig",
    "TargetStartError",
    "build_parser",
    "config_from_args",
    "create_app",
    "make_sampler",
    "run_from_args",
    "serve",
]
