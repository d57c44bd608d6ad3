from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from engine_servers import Handler, WebServer
from fake_gateway import FakeGateway
from kube_standin import KubeStandIn

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


# -- shared loopback servers and stand-ins (each on 127.0.0.1, stopped when the test ends)


@pytest.fixture
def web_server() -> Iterator[Callable[[Handler], WebServer]]:
    """``web_server(handler)``: an aiohttp server on a loopback port answering with
    ``handler`` (``engine_servers.ok_handler(...)`` and friends), stopped after the test."""
    with ExitStack() as stack:
        yield lambda handler: stack.enter_context(WebServer(handler))


@pytest.fixture
def kube_api() -> Iterator[Callable[..., KubeStandIn]]:
    """``kube_api(**options)``: the stand-in Kubernetes API server (``kube_standin.py``,
    built from the API conventions it names), running until the test ends."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(KubeStandIn(**options))


@pytest.fixture
def fake_gateway() -> Iterator[Callable[..., FakeGateway]]:
    """``fake_gateway(**options)``: the stand-in Kubernaut gateway's auth, readiness and
    counters (``fake_gateway.py``), running until the test ends."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(FakeGateway(**options))


@pytest.fixture(params=["fast", "aiohttp"])
def engine_client(request: pytest.FixtureRequest) -> str:
    """The load client (``generator.client``): a test that takes it runs against both, so
    records, outcomes and error classes are checked alike for each."""
    return request.param
