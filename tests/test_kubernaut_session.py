"""`kubetest run` end to end in the kubernaut profile, against the embedded target.

tests/params/kubernaut_smoke.yaml is the smoke profile speaking Kubernaut's current API;
here A1 (201 answers, all accepted, each RemediationRequest followed to Completed) and B2
(a level above the target's in-flight limit: 429s, counted as throttled) run through
papermill as a real session does, with a workload pool the session makes in the target's
own cluster before the first test and hands to the notebooks (pool.json, target.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(240)

PARAMS = Path(__file__).parent / "params" / "kubernaut_smoke.yaml"


def test_kubernaut_profile_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kubetest", "run", "--params", str(PARAMS), "--only", "A1,B2",
         "--outputs", str(tmp_path), "--session", "k"],
        capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    session = tmp_path / "k"
    summary = json.loads((session / "summary.json").read_text())
    a1 = next(r for r in summary["requirements"] if r["id"] == "BR-PA-003")
    outcomes = a1["details"]["outcomes"]
    assert outcomes["accepted"] == 60 and outcomes["duplicate"] == outcomes["failed"] == 0
    assert "webhook latency" in a1["details"]["judged_on"]
    ttr = a1["details"]["time_to_remediation"]
    assert ttr["followed"] == 60 and ttr["phases"]["Completed"] == 60
    pool = json.loads((session / "pool.json").read_text())
    assert pool["owned"] and len(pool["names"]) == 80
    result = json.loads((session / "results" / "A1.json").read_text())
    assert result["workload_pool"]["to_busy"] == 0
    assert result["workload_pool"]["controller_namespace"] == "kubernaut-system"
    endpoints = json.loads((session / "target.json").read_text())
    assert {"webhook", "health", "metrics", "kube"} <= set(endpoints)
    assert "80 Deployments deleted" in out.stderr  # before the target (and its cluster) went
    assert json.loads((session / "pool.json").read_text())["deleted"] == 80  # and recorded
    b2 = json.loads((session / "results" / "B2.json").read_text())
    by_level = {p["concurrency"]: p for p in b2["phases"]}
    assert by_level[4]["outcomes"]["throttled"] == 0 and by_level[4]["outcomes"]["accepted"] > 0
    assert by_level[32]["outcomes"]["throttled"] > 0  # 32 in flight > the target's limit, 16
    records = pd.read_csv(session / "records" / Path(by_level[32]["records"]).name)
    assert set(records.loc[records["outcome"] == "throttled", "status"]) == {429}
    assert (session / "report.html").exists()
