"""docs/params.md is generated from the params models and cannot drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubetest.errors import ParamsError
from kubetest.params import Params, parse_params
from kubetest.params_doc import render, type_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "params.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    assert DOC.read_text() == render(), (
        "docs/params.md is out of date: .venv/bin/python -m kubetest.params_doc > docs/params.md"
    )


def _keys(model: type, prefix: str = "") -> list[str]:
    from kubetest.params_doc import _section_model

    out = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        out.append(prefix + name)
        sub, suffix = _section_model(field.annotation)
        if sub is not None:
            out += _keys(sub, f"{prefix}{name}{suffix}.")
    return out


def test_every_key_has_a_row_with_a_meaning() -> None:
    text = DOC.read_text()
    keys = _keys(Params)
    assert "a4_actions.min_actions" in keys and "external_suites[].command" in keys
    for key in keys:
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        assert row.rstrip(" |").split(" | ")[-1].strip(), f"{key} has no meaning"


def test_types_and_defaults_read_as_a_yaml_writer_needs_them() -> None:
    from kubetest.params import A3Availability, Slo

    assert (
        type_name(
            Slo.model_fields["success_rate"].annotation,
            list(Slo.model_fields["success_rate"].metadata),
        )
        == "float (0..1)"
    )
    target = A3Availability.model_fields["target"]
    assert type_name(target.annotation, list(target.metadata)) == "float (> 0, < 1)"
    text = DOC.read_text()
    assert "| `slo.success_rate` | float (0..1) | `0.95` |" in text
    assert "| `external_suites[].name` | string (pattern) | required |" in text
    api = '"webhook" \\| "kubernaut" \\| "kubernaut-legacy"'
    assert f'| `target.api` | {api} | `"webhook"` |' in text


def test_an_unknown_key_points_to_the_reference() -> None:
    with pytest.raises(ParamsError) as err:
        parse_params({"a4_actions": {"min_action": 18}})
    assert str(err.value) == (
        "params: a4_actions.min_action: unknown key; remove it or check "
        "its spelling (every key: docs/params.md)"
    )


def test_the_module_prints_the_reference() -> None:
    out = subprocess.run([sys.executable, "-m", "kubetest.params_doc"], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout == render()
