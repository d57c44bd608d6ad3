"""Environment checks together: the table, the ENV notebook's result, ``kubetest check``,
and A4's action plan. (Per service: ``test_services.py``, ``test_kube_checks.py``.)

Redis and PostgreSQL are Debian's own servers (``make test`` installs them through
``scripts/system-deps.sh``); the LLM and Kubernetes APIs are small fakes that answer the
endpoints the checks read. Every secret is planted in the environment and must never show
up in a table, a detail, a fix or a result file.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from check_support import (
    KUBE_ROUTES,
    KUBE_TOKEN,
    OLLAMA_TAGS,
    PG_PW,
    REDIS_PW,
    FakeAPI,
    _dsn,
    assert_no_secret,
    cli_check,
    free_port,
    kubeconfig,
    run_environment,
    write_params,
    written,
)
from fake_gateway import FakeGateway

from kubetest.checks import (
    FAILED,
    NOT_CONFIGURED,
    OK,
    Check,
    check_kubernetes,
    checks_table,
    collect,
    redact,
)
from kubetest.params import Params, parse_params

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- all together


def test_nothing_configured_is_not_required(no_kubeconfig: None) -> None:
    checks = collect(Params())
    assert [c.name for c in checks] == ["target", "llm", "redis", "postgresql", "kubernetes"]
    assert [c.status for c in checks] == [OK] + [NOT_CONFIGURED] * 4
    assert not any(c.blocking for c in checks)
    assert list(checks_table(checks).columns) == ["check", "status", "required", "detail", "fix"]


def test_redact_scrubs_plain_and_url_quoted_secrets() -> None:
    secret = "p@ss/w0rd!"
    text = f"a {secret} b p%40ss%2Fw0rd%21 c"
    assert redact(text, [secret]) == "a *** b *** c"
    assert redact("x", ["abc"]) == "x"


def test_environment_notebook_result_has_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_port: int, postgres_port: int
) -> None:
    """The whole environment test on the embedded target, every dependency configured."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KT_REDIS_PW", REDIS_PW)
    monkeypatch.setenv("KT_PG_DSN", _dsn(postgres_port, PG_PW))
    with FakeAPI({"/api/tags": (200, OLLAMA_TAGS), **KUBE_ROUTES}) as api:
        kube = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        ctx, result = run_environment(tmp_path, {
            "target": {"url": "embedded", "embedded": {"workers": 2, "service_ms": 5}},
            "environment": {
                "llm_url": api.url,
                "llm_model": "granite3.1-dense:8b",
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "redis_password_env": "KT_REDIS_PW",
                "postgres_dsn_env": "KT_PG_DSN",
                "kubeconfig": str(kube),
            },
        })  # fmt: skip
    statuses = dict(zip(result.table["check"], result.table["status"], strict=True))
    assert statuses == dict.fromkeys(["target", "llm", "redis", "postgresql", "kubernetes"], OK)
    assert ctx.health_url in result.checks[0].detail  # the running target, probed for real
    assert result.required_failed == [] and result.verdict.startswith("READY")
    saved = json.loads(ctx.result_path.read_text())
    assert saved["test"] == "ENV" and "requirements" not in saved
    assert {"title", "started", "finished", "complete", "checks"} <= saved.keys()
    assert len(saved["checks"]) == 5
    for text in written(ctx, result):
        assert_no_secret(text)


def test_environment_result_scrubs_a_failing_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_port: int
) -> None:
    """A wrong password planted in the env: failed, and the value is nowhere."""
    wrong = "kt-planted-" + secrets.token_hex(8)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KT_REDIS_PW", wrong)
    with FakeAPI({"/health": (200, {})}) as api:
        ctx, result = run_environment(tmp_path, {
            "target": {"url": api.url + "/webhook/prometheus"},
            "environment": {
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "redis_password_env": "KT_REDIS_PW",
            },
        })  # fmt: skip
    assert result.required_failed == ["redis"]
    for text in written(ctx, result):
        assert wrong not in text


def test_cli_check_exits_1_on_a_required_failure(tmp_path: Path) -> None:
    out = cli_check(tmp_path, {"target": {"url": f"http://127.0.0.1:{free_port()}/x"}})
    assert out.returncode == 1, out
    assert out.stdout.count("status") == 1  # one table
    assert "failed" in out.stdout and "not configured" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert "target" in out.stderr  # names the failed required check


def test_cli_check_exits_0_when_only_unconfigured(tmp_path: Path) -> None:
    out = cli_check(tmp_path, {"target": {"url": "embedded"}, "environment": {}})
    assert out.returncode == 0, out
    assert out.stdout.count("not configured") == 4


def test_check_dataclass_blocking() -> None:
    assert Check("x", FAILED, True, "").blocking
    assert not Check("x", FAILED, False, "").blocking
    assert not Check("x", OK, True, "").blocking


# --------------------------------------------------------------------------- A4's action plan


def _kubernaut_a4(**over: object) -> Params:
    """params/kubernaut.yaml's A4 against a real (non-embedded) gateway URL."""
    shipped = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "params/kubernaut.yaml").read_text()
    )
    return parse_params({"target": {"url": "http://127.0.0.1:9", "api": "kubernaut"},
                         "a4_actions": {**shipped["a4_actions"], **over}})  # fmt: skip


def test_the_shipped_kubernaut_params_cannot_judge_br_pa_011_and_check_says_so() -> None:
    from kubetest.checks import WARNING, check_a4_actions

    [row] = check_a4_actions(_kubernaut_a4())
    assert (row.name, row.status, row.required) == ("a4_actions", WARNING, False)
    assert row.detail == (
        "18 of 27 actions will run (9 destructive held back by the guard); "
        "BR-PA-011 needs 25: A4 will be INCONCLUSIVE"
    )
    assert "a4_actions.allow_destructive: true" in row.fix
    assert "a4_actions.namespaces" in row.fix and "a4_actions.min_actions: 18" in row.fix


def test_opting_in_or_lowering_the_count_makes_br_pa_011_judgeable() -> None:
    from kubetest.checks import check_a4_actions

    [opted] = check_a4_actions(_kubernaut_a4(allow_destructive=True))
    assert opted.status == OK and opted.detail.startswith("27 of 27 actions will run")
    [lowered] = check_a4_actions(_kubernaut_a4(min_actions=18))
    assert lowered.status == OK
    assert "needs 18 (a4_actions.min_actions 18, lowered from BR-PA-011's 25)" in lowered.detail
    assert check_a4_actions(parse_params({})) == []  # no A4, no row


def test_a_lowered_count_is_named_in_the_a4_verdict() -> None:
    import pandas as pd

    from kubetest.workbook.a4_actions import judge

    frame = pd.DataFrame({"action": [f"a{i}" for i in range(18)] + ["drain_node"],
                          "outcome": ["accepted"] * 18 + ["skipped"],
                          "error": [""] * 18 + ["destructive: set a4_actions.allow_destructive"],
                          "verified": ["executed"] * 18 + [""]})  # fmt: skip
    assert judge(frame, "kubernetes").status == "INCONCLUSIVE"
    req = judge(frame, "kubernetes", min_actions=18)
    assert req.status == "PASS" and req.details["min_actions"] == 18
    assert req.threshold.startswith(
        "≥ 18 actions (a4_actions.min_actions, lowered from BR-PA-011's 25)"
    )


def test_cli_check_warns_about_a4_and_wants_a_kubeconfig_for_verify_kubernetes(
    fake_gateway: Callable[..., FakeGateway],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_kubeconfig: None,
) -> None:

    from kubetest.cli import main

    gw = fake_gateway()
    path = write_params(tmp_path, {
        "target": {"url": gw.url, "api": "kubernaut", "health_url": gw.health_url,
                   "metrics_url": gw.metrics_url},
        "environment": {},
        "a4_actions": {"actions": "kubernaut", "verify": "kubernetes"},
    })  # fmt: skip
    rc = main(["check", "--params", str(path)])
    out = capsys.readouterr()
    assert rc == 1
    rows = {ln.split()[0]: ln for ln in out.out.splitlines()[2:]}
    assert rows["a4_actions"].split()[1:3] == ["warning", "no"]
    assert rows["kubernetes"].split()[1:3] == ["failed", "yes"]
    assert "history" not in rows["kubernetes"]  # A4 verifies through Kubernetes here
    assert "A4 (verify: kubernetes)" in rows["kubernetes"]
    err = out.err.splitlines()
    assert "kubetest check: warning: a4_actions: 18 of 27 actions will run" in err[0]
    assert "kubetest check: required check failed: kubernetes" in err


def test_the_kubeconfig_hint_fits_the_plan(no_kubeconfig: None) -> None:
    history = check_kubernetes(parse_params({"environment": {}, "a4_actions": {}}))
    assert history.status == NOT_CONFIGURED and "action history" in history.fix
    none = check_kubernetes(parse_params({"environment": {}}))
    assert none.status == NOT_CONFIGURED and "history" not in none.fix
