"""The reference target's API profiles beyond the guide's ``webhook`` (``app``):
``kubernaut``, the current Kubernaut gateway (``kubernaut`` its HTTP side,
``kubernaut_signals`` what it does with a signal), and ``kubernaut-legacy``, its earlier
release (``legacy``). Each names the Kubernaut source it follows."""

from kubetest.target.profiles.kubernaut import KubernautGateway, go_not_found
from kubetest.target.profiles.kubernaut_signals import signal_fingerprint
from kubetest.target.profiles.legacy import legacy_routes

__all__ = ["KubernautGateway", "go_not_found", "legacy_routes", "signal_fingerprint"]
