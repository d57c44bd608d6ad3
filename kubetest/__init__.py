"""kubetest: decide, with measurements a reviewer can trust, whether an alert-remediation
service is ready for production."""

__version__ = "0.1.0"
