from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from engine_servers import Handler, WebServer
from fake_gateway import FakeGateway
from kube_standin import KubeStandIn

REPO = Path(__file__).resolve().parents[1]

#: Modules that check a measured latency or rate against queueing theory or a tight time
#: bound: under `make test` (pytest-xdist, two workers) they share one worker, one at a
#: time, so no two of them load the machine together.
TIMING_MODULES = frozenset({
    "tests/analysis/test_search.py", "tests/analysis/test_capacity.py",
    "tests/analysis/test_availability.py", "tests/engine/test_open_loop.py",
    "tests/engine/test_fastclient.py", "tests/target/test_app.py",
})  # fmt: skip


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under pytest-xdist each module runs on one worker (its module-scoped fixtures, such
    as the smoke session, run once) and the timing modules all on the same one."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "timing" if module in TIMING_MODULES else module

    return ByModule(config, log)


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
