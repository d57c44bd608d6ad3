"""What a test notebook needs to run: params, the session folder, the target's URL.

Notebooks receive only paths and a URL from papermill (never secrets); everything else is
read here. Run by hand in JupyterLab with no session, notebooks share one session folder
under the user's outputs folder (``sessions.hand_session``: ``KUBETEST_SESSION``, else the
newest ``lab_*``) and each starts, for an embedded target, its own reference target.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubetest import endpoints
from kubetest.endpoints import origin
from kubetest.files import read_endpoints, target_endpoints, write_json
from kubetest.params import TESTS, Params, load_params
from kubetest.results import validate_result
from kubetest.sessions import hand_session, mark_lab_session
from kubetest.workloads import export_kubeconfig


def result_head(title: str, started: datetime, complete: bool) -> dict[str, Any]:
    """The keys every result file opens with; ``finished`` is now."""
    return {
        "title": title,
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "complete": complete,
    }


@dataclass
class TestContext:
    """One test's view of a session: params, folders, and where to send load."""

    __test__ = False  # not a pytest class, despite the name

    test: str
    params: Params
    session_dir: Path
    target_url: str
    _owned_target: Any = field(default=None, repr=False)
    params_path: Path | None = None  # relative paths in params (suite cwd) start from here
    # what an embedded target reported (health, metrics, kube URLs): session's target.json
    reported: dict[str, str] = field(default_factory=dict)
    _owned_pool: Any = field(default=None, repr=False)

    @classmethod
    def open(
        cls, test: str, params_path: str, session_dir: str = "", target_url: str = ""
    ) -> TestContext:
        if test not in TESTS:
            raise ValueError(f"unknown test {test!r}; known: {', '.join(TESTS)}")
        params = load_params(params_path)
        if session_dir:
            session = Path(session_dir)
        else:  # run by hand: the shared session; the opening line says which, and why
            session, why = hand_session()
            print(f"writing to {session} ({why})", flush=True)
            text = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
            mark_lab_session(session, Path(params_path).resolve(), text)
        session.mkdir(parents=True, exist_ok=True)
        owned = None
        reported = read_endpoints(session)
        if not target_url:
            if params.target.is_embedded:
                from kubetest.target.embedded import EmbeddedTarget
                from kubetest.target.model import TargetConfig

                owned = EmbeddedTarget(TargetConfig.from_params(params.target.embedded)).start()
                atexit.register(owned.stop)
                target_url = owned.webhook_url
                reported = target_endpoints(owned)
                export_kubeconfig(reported)
            else:
                target_url = params.target.url
        return cls(test, params, session, target_url, owned, Path(params_path).resolve(), reported)

    def pool(self) -> Any:
        """The session's workload pool (``pool.json``), or one made for this notebook run by
        hand (deleted again when the context closes); None without ``alerts.workloads``."""
        from kubetest.workloads import Pool

        if self.params.alerts.workloads is None:
            return None
        pool = Pool.load(self.session_dir) or self._owned_pool
        if pool is None:
            from kubetest.alerts import new_run_token
            from kubetest.workloads import pool_from_params

            pool = self._owned_pool = pool_from_params(self.params, new_run_token())
            atexit.register(self.close)
        return pool

    @property
    def section(self) -> Any:
        return getattr(self.params, TESTS[self.test])

    @property
    def base_url(self) -> str:
        return origin(self.target_url)

    def _resolved(self, resolve: Callable[..., str], reported: str) -> str:
        """An endpoint of this run's target, the target's own report (``reported``) first."""
        return resolve(self.params.target, self.target_url, override=self.reported.get(reported))

    @property
    def health_url(self) -> str:
        return self._resolved(endpoints.health_url, "health")

    @property
    def actions_url(self) -> str:
        return self.params.target.actions_url or self.base_url + "/api/v1/actions"

    @property
    def metrics_url(self) -> str:
        return self._resolved(endpoints.metrics_url, "metrics")

    @property
    def records_dir(self) -> Path:
        return self.session_dir / "records"

    @property
    def result_path(self) -> Path:
        return self.session_dir / "results" / f"{self.test}.json"

    def save_result(self, data: dict[str, Any]) -> Path:
        """Write ``results/<TEST>.json``, validated against ``kubetest.results.TestResult``
        first: a malformed result raises ``ResultError`` naming the field, and nothing is
        written. The file holds the keys given (in their order), plus ``test``."""
        data = {"test": self.test, **data}
        typed = validate_result(data, f"{self.test}'s result").as_dict()
        write_json(self.result_path, {k: typed[k] for k in data if k in typed})
        return self.result_path

    def close(self) -> None:
        if self._owned_pool is not None:
            from kubetest.workloads import release_pool

            pool, self._owned_pool = self._owned_pool, None
            release_pool(self.params, pool)
        if self._owned_target is not None:
            self._owned_target.stop()
            self._owned_target = None
