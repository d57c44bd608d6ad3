"""The shareable report of a session: what it shows (``view``), as HTML (``html``, the
report notebook rendered with nbconvert) and as Markdown (``markdown``,
``FINAL_TEST_REPORT.md``), all from the session folder's files.

``build_report`` is imported on first use, so the report notebook's
``from kubetest.report.view import ReportView`` does not load nbconvert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetest.report.html import build_report

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from kubetest.report.html import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
