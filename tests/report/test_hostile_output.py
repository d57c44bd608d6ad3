"""What a hostile service or suite writes is shown as text, never run: report.html, the
per-test pages and FINAL_TEST_REPORT.md, as a browser sees them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mistune
import pytest
import yaml

from kubetest.report.markdown import _bullets, _cell

pytestmark = pytest.mark.timeout(300)

#: Each piece, if it ran, would mark the page; escaped, it shows as text.
SCRIPT = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"
IMG = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">"
LINK = "[click](javascript:alert(1)) ![pic](javascript:alert(2))"
HOSTILE = f"{SCRIPT} {IMG} {LINK}"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def _dom(page: Path, profile: Path) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/system-deps.sh installs it (TEST_DEBS)")
        pytest.skip("chromium not installed: apt-get install chromium")
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def _assert_inert(dom: str) -> None:
    assert "data-pwned=" not in dom, "hostile script or handler ran"
    assert not re.search(r"<[a-z]+[^>]*\sonerror=", dom), "an element carries onerror"
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", dom, flags=re.S)
    assert not any("data-pwned" in s for s in scripts), "hostile <script> element"
    assert not re.search(r"href=\"javascript:", dom, flags=re.I)
    assert "&lt;script&gt;document.documentElement" in dom, "the text is not shown"


def test_markdown_cells_and_bullets_are_inert() -> None:
    cell, (bullet,) = _cell(HOSTILE + " | x\ny"), _bullets([HOSTILE + "\nmore"])
    assert "\n" not in cell and "\n" not in bullet and "\\|" in cell
    render = mistune.create_markdown(escape=False, plugins=["table"])
    page = render(f"| a |\n|---|\n| {cell} |\n\n{bullet}\n")
    assert "<script" not in page and "<img" not in page and "<a " not in page
    assert page.count("&lt;script&gt;") == 2 and page.count("javascript:alert(1)") == 2


def test_a_hostile_suite_leaves_no_live_markup_in_the_reports(tmp_path: Path) -> None:
    """A suite that prints markup on stderr and exits 127, and one whose JUnit root tag
    is <script>: report.html, the EXT page and the Markdown report show it as text."""
    from kubetest.session import run_session

    junit = tmp_path / "r.xml"
    junit.write_text(SCRIPT)
    say = f"import sys; sys.stderr.write({HOSTILE!r} + '\\n'); sys.exit(127)"
    params = {
        "target": {"url": "embedded", "embedded": {"workers": 2, "service_ms": 5}},
        "external_suites": [
            {"name": "stderr", "command": [sys.executable, "-c", say]},
            {"name": "junit", "command": ["true"], "junit_path": str(junit)},
        ],
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = run_session(path, session="s", outputs=tmp_path / "out", echo=lambda _l: None)
    assert result.report is not None
    raw = result.report.read_text()
    assert SCRIPT not in raw and "root element is &lt;script&gt;" in raw
    _assert_inert(_dom(result.report, tmp_path / "p1"))
    md = (result.session_dir / "FINAL_TEST_REPORT.md").read_text()
    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md), "a live Markdown link"
    page = tmp_path / "md.html"
    page.write_text(mistune.create_markdown(escape=False, plugins=["table"])(md))
    _assert_inert(_dom(page, tmp_path / "p2"))
    _assert_inert(_dom(result.session_dir / "html" / "external_suites.html", tmp_path / "p3"))


def _hostile_session(root: Path, name: str, median_s: float, types: list[str]) -> Path:
    """A session whose test key (the result's ``test``) and a param are hostile text."""
    import json

    import numpy as np
    import pandas as pd

    from kubetest.analysis.latency import summarise
    from kubetest.engine.records import COLUMNS
    from kubetest.summary import write_summary

    session = root / name
    (session / "records").mkdir(parents=True)
    (session / "results").mkdir()
    (session / "state.json").write_text("{}")
    (session / "params.yaml").write_text(yaml.safe_dump({"target": {"url": "http://127.0.0.1:9"}}))
    t = np.arange(400) / 20.0
    lat = median_s * np.exp(0.1 * np.random.default_rng(len(name)).normal(size=t.size))
    recs = pd.DataFrame({"seq": range(t.size), "worker": 0, "intended_s": t, "sent_s": t,
                         "done_s": t + lat, "latency_s": lat, "service_s": lat, "lag_s": 0.0,
                         "status": 500, "outcome": "accepted", "error": HOSTILE,
                         "alert_type": HOSTILE, "fingerprint": HOSTILE})[list(COLUMNS)]  # fmt: skip
    for key, params in ((HOSTILE, {"rate_per_min": 1200}), ("A2", {"types": types})):
        recs.to_csv(session / "records" / f"{len(key)}.csv", index=False)
        result = {"test": key, "title": HOSTILE, "complete": True, "params": params,
                  "latency": summarise(recs).as_dict(), "load": {"saturated": False},
                  "records": f"records/{len(key)}.csv"}  # fmt: skip
        (session / "results" / f"{len(key)}.json").write_text(json.dumps(result))
    write_summary(session, complete=True)
    return session


def test_a_hostile_comparison_leaves_no_live_markup(tmp_path: Path) -> None:
    """compare.html and compare.md show a hostile test name, params and error texts as
    text (issue 20): the same escaping as the report's."""
    from kubetest.compare.core import compare_sessions
    from kubetest.compare.render import write_comparison

    base = _hostile_session(tmp_path, "base", 0.05, ["x"])
    new = _hostile_session(tmp_path, "new", 0.07, [HOSTILE])
    comparison = compare_sessions(base, new)
    tests = {m["test"] for m in comparison.metrics}
    assert HOSTILE in tests and any(SCRIPT in m.get("reason", "") for m in comparison.metrics)
    paths = write_comparison(comparison, tmp_path / "out")
    raw = paths["compare.html"].read_text()
    assert SCRIPT not in raw and "&lt;script&gt;document.documentElement" in raw
    _assert_inert(_dom(paths["compare.html"], tmp_path / "p1"))
    md = paths["compare.md"].read_text()
    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md), "a live Markdown link"
    page = tmp_path / "md.html"
    page.write_text(mistune.create_markdown(escape=False, plugins=["table"])(md))
    _assert_inert(_dom(page, tmp_path / "p2"))
