"""Fixtures of the environment-check tests (``check_support.py``): a clean environment,
no kubeconfig, and Redis and PostgreSQL servers started on loopback."""

from check_support import _clean_env, no_kubeconfig, postgres_port, redis_open_port, redis_port  # noqa: F401  (fixtures)
