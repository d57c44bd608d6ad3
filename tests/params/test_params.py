"""Params validation: every mistake is refused with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetest.errors import ParamsError
from kubetest.params import load_params, parse_params


@pytest.mark.parametrize("profile", ["local", "smoke", "kubernaut"])
def test_shipped_profiles_are_valid(repo: Path, profile: str) -> None:
    params = load_params(repo / "params" / f"{profile}.yaml")
    assert "A1" in params.selected_tests()


def test_kubernaut_profile_has_the_guides_durations(repo: Path) -> None:
    p = load_params(repo / "params" / "kubernaut.yaml")
    assert (p.a1_response_time.rate_per_min, p.a1_response_time.duration_min) == (60, 10)
    assert (p.a2_concurrent.concurrency, p.a2_concurrent.duration_min) == (100, 5)
    assert p.a3_availability.duration_min == 30
    assert [r for r, _ in p.b1_capacity.phases] == [500, 1000, 2000, 5000, 10000]


def test_absent_sections_are_not_run() -> None:
    p = parse_params({"a1_response_time": {}})
    assert p.selected_tests() == ["A1"]
    assert p.a2_concurrent is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"targt": {}}, "targt: unknown key"),
        ({"target": {"urll": "x"}}, "target.urll: unknown key"),
        ({"a1_response_time": {"rate_per_min": -5}}, "a1_response_time.rate_per_min"),
        ({"a1_response_time": {"rate_per_min": "fast"}}, "a1_response_time.rate_per_min"),
        ({"a1_response_time": {"duration_min": 0}}, "a1_response_time.duration_min"),
        ({"a1_response_time": {"types": ["nope"]}}, "a1_response_time.types.0"),
        ({"target": {"url": "ftp://host/x"}}, "target.url: must be 'embedded' or an http(s)"),
        ({"target": {"url": "localhost:8080"}}, "target.url"),
        ({"target": {"health_url": "file:///etc/passwd"}}, "target.health_url"),
        ({"target": {"api": "graphql"}}, "target.api"),
        ({"slo": {"success_rate": 1.5}}, "slo.success_rate"),
        ({"a3_availability": {"target": 1.0}}, "a3_availability.target"),
        ({"b1_capacity": {"phases": [[500]]}}, "b1_capacity.phases.0"),
        ({"b2_concurrency": {"levels": [0]}}, "b2_concurrency.levels.0"),
        ({"generator": {"scheduler": "host:8786"}}, "generator.scheduler"),
        ({"target": {"embedded": {"service_dist": "pareto"}}}, "target.embedded.service_dist"),
        ({"target": {"auth_token_env": "KUBETEST_SURELY_UNSET_VAR"}}, "KUBETEST_SURELY_UNSET_VAR"),
        ({"environment": {"redis_url": "redis://:hunter2@127.0.0.1:6379/0"}}, "redis_password_env"),
        ({"environment": {"redis_url": "http://127.0.0.1:6379"}}, "environment.redis_url"),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_bad_values_are_refused_with_one_line_naming_the_key(data: object, expected: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(data, source="p.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith("p.yaml: ")
    assert "hunter2" not in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: {url: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_cli_refuses_bad_params_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"a1_response_time": {"rate_per_min": -1}}))
    proc = subprocess.run(
        [sys.executable, "-m", "kubetest", "run", "--params", str(bad), "--outputs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "a1_response_time.rate_per_min" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.glob("session_*")), "nothing may start before params are valid"


def test_cli_bad_arguments_print_usage(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubetest", "load", "--url", "http://127.0.0.1:9/x",
         "--rate", "-3", "--duration", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
