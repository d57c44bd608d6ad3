"""Files every layer writes or finds: atomic JSON, the repository's root, session folder
names, and the target's ``target.json``.

Its own module so that the session, the summary and the report (below ``workbook/``) need
nothing from the notebooks' helpers, and so that every JSON file kubetest writes is written
the same way (atomically, NaN as null).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The embedded target's URLs, as it reported them, in the session folder.
TARGET_FILE = "target.json"


def new_session_name(prefix: str = "session") -> str:
    return f"{prefix}_{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}"


def jsonable(obj: Any) -> Any:
    """Plain JSON values: NaN and infinities become null (they are not JSON), numpy scalars
    Python ones, pydantic models their JSON dump, paths strings, keys strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "model_dump"):  # a pydantic model (results, params)
        return jsonable(obj.model_dump(mode="json", exclude_unset=True))
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def target_endpoints(target: Any) -> dict[str, str]:
    """The URLs an embedded target reported (no secrets: the kubeconfig is a path)."""
    keys = ("webhook_url", "health_url", "metrics_url", "actions_url", "kube_url",
            "kubeconfig_path")  # fmt: skip
    out = {}
    for key in keys:
        value = getattr(target, key, None)
        if value:
            out[key.removesuffix("_url").removesuffix("_path")] = str(value)
    return out


def read_endpoints(session_dir: Path) -> dict[str, str]:
    path = Path(session_dir) / TARGET_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
