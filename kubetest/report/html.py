"""report.html: execute the report notebook on a session, render it with nbconvert.

The HTML is self-contained: code hidden, figures embedded as data URIs, and a template
(``templates/kubetest``) that fetches nothing from the network. Each executed test
notebook is rendered beside it (``html/``) and linked from the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from kubetest.files import REPO_ROOT

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "report.ipynb"


def render_html(notebook: Path, html: Path, title: str | None = None) -> Path:
    """Render an executed notebook to offline HTML with the code hidden."""
    exporter = HTMLExporter(
        template_name="kubetest", extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        embed_images=True,
    )  # fmt: skip
    nb = nbformat.read(str(notebook), as_version=4)
    if title:
        nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


def build_report(session_dir: Path, execute: Callable[..., None] | None = None) -> Path:
    """Execute the report notebook over a session's files and write ``report.html``.

    ``execute`` runs a notebook (``kubetest.notebook_run.execute_notebook`` by default); a run
    passes one that a stop signal can interrupt."""
    from kubetest.notebook_run import execute_notebook
    from kubetest.report.markdown import write_markdown

    execute = execute or execute_notebook
    session_dir = Path(session_dir).resolve()
    write_markdown(session_dir)  # FINAL_TEST_REPORT.md, the guide's file, from the same data
    nb_dir = session_dir / "notebooks"
    for executed in sorted(nb_dir.glob("*.ipynb")):
        if executed.name != REPORT_NOTEBOOK.name:
            render_html(executed, session_dir / "html" / (executed.stem + ".html"))
    out_nb = nb_dir / REPORT_NOTEBOOK.name
    nb_dir.mkdir(parents=True, exist_ok=True)
    execute(REPORT_NOTEBOOK, out_nb, {"session_dir": str(session_dir)}, session_dir)
    return render_html(
        out_nb, session_dir / "report.html", title=f"kubetest report — {session_dir.name}"
    )
