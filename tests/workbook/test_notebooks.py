"""Notebooks are committed thin and without outputs, with a papermill parameters cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kubetest.session import NOTEBOOKS

NOTEBOOK_FILES = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOK_FILES}
    assert {"a1_response_time.ipynb", "report.ipynb"} <= names
    assert names - {"report.ipynb"} <= set(NOTEBOOKS.values())


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_has_one_parameters_cell_without_secrets(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert not any(word in tagged[0].source.lower() for word in ("password", "token", "secret"))


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_stays_thin(path: Path) -> None:
    """Logic lives in kubetest/: no function or class definitions, no loops in cells."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "for ", "while ")), line
