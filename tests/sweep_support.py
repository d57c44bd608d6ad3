"""Phase B sweeps end to end against the embedded reference target, whose queueing model
is known (``kubetest.target.model``): one way to open their context and run them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubetest.workbook.context import TestContext


def embedded_context(
    tmp_path: Path, test: str, embedded: dict[str, Any], slo: dict[str, Any], **sections: Any
) -> TestContext:
    """``test``'s context against the embedded target ``embedded`` (workers, service_ms,
    service_dist), with ``slo`` and the given params sections, in ``tmp_path/session``."""
    path = tmp_path / f"{test}.yaml"
    doc = {"target": {"url": "embedded", "embedded": embedded}, "slo": slo, **sections}
    path.write_text(yaml.safe_dump(doc))
    return TestContext.open(test, str(path), str(tmp_path / "session"))


def run_sweep(ctx: TestContext, module: Any) -> Any:
    """Run B1 or B2 (``module``) quietly in ``ctx`` and close it."""
    try:
        return module.run(ctx, progress=False, echo=lambda _: None)
    finally:
        ctx.close()
