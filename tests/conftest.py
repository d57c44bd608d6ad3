from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True, scope="module")
def _close_dask_after_module() -> object:
    """The engine caches one local Dask cluster per process (workers stay warm between a
    notebook's runs); in the suite its idle workers would tick on beside every later
    test's generator and skew its schedule lag, so each module that started one closes it."""
    yield
    import sys

    cluster = sys.modules.get("kubetest.engine.cluster")
    if cluster is not None and cluster.local_client() is not None:
        cluster.close_local_cluster()


@pytest.fixture(params=["fast", "aiohttp"])
def engine_client(request: pytest.FixtureRequest) -> str:
    """The load client (``generator.client``): a test that takes it runs against both, so
    records, outcomes and error classes are checked alike for each."""
    return request.param
