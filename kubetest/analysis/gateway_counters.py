"""The Kubernaut gateway's own counters against kubetest's counts, for one load test.

kubetest counts what the gateway answered; the gateway counts what it did. Over a load the
increase of each counter on its metrics endpoint must equal kubetest's count of the answer
it stands for (jordigilh/kubernaut at d5a4a870967312d98dbc302ac2ae3505087bfcb0, names in
``pkg/gateway/metrics/metrics.go``):

* ``gateway_crds_created_total{source_type,status}`` ↔ ``accepted`` (201): incremented once
  a RemediationRequest is created (``pkg/gateway/processing/crd_creator.go``);
* ``gateway_signals_deduplicated_total{signal_name}`` ↔ ``duplicate`` (202)
  (``handleDuplicateSignal``, ``pkg/gateway/signal_ingestion_process.go``);
* ``gateway_signals_rejected_total{reason}`` ↔ ``rejected`` (200, out of scope)
  (``validateScope``, ``pkg/gateway/signal_ingestion.go``).

Each is summed over its labels. A counter's children appear at their first increment, so
a series missing from a scrape before it first shows up was 0; a value that falls is a
restart (counted as Prometheus' ``increase`` does, and then a lower bound). What a
difference can honestly be put down to is not a finding: a reset or scrapes that did not
cover the whole load (the gateway counted fewer), other senders — the rise of
``gateway_signals_received_total`` beyond every signal kubetest could have delivered — or
requests kubetest got no answer to (the gateway counted more). Anything else is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from kubetest.analysis.service_metrics import GENERATOR_CPU, GENERATOR_TICK_LAG, parse_labels
from kubetest.analysis.verdicts import per_run

#: result key -> (gateway counter, kubetest outcome)
COUNTERS: dict[str, tuple[str, str]] = {
    "created": ("gateway_crds_created_total", "accepted"),
    "deduplicated": ("gateway_signals_deduplicated_total", "duplicate"),
    "rejected": ("gateway_signals_rejected_total", "rejected"),
}
RECEIVED = "gateway_signals_received_total"
#: Error classes after which the gateway may have done the work without kubetest seeing it.
UNANSWERED = ("timeout", "reset", "network", "other", "http_5xx", "bad_response", "alert_failed")


@dataclass
class Increase:
    """A counter's rise over the scrapes, summed over its label sets."""

    total: float = 0.0
    reset: bool = False
    by_label: dict[str, float] = field(default_factory=dict)


def service_epochs(frame: pd.DataFrame) -> list[float]:
    """The times the service itself was scraped (the generator's own rows left out)."""
    own = frame[~frame["metric"].isin([GENERATOR_CPU, GENERATOR_TICK_LAG])]
    return sorted(float(e) for e in own["epoch_s"].unique())


def increase(frame: pd.DataFrame, metric: str, epochs: list[float]) -> Increase:
    """The rise of ``metric`` across the service scrapes at ``epochs`` (see the module)."""
    rows = frame[frame["metric"] == metric]
    out = Increase()
    if rows.empty or not epochs:
        return out
    for labels, series in rows.groupby("labels", sort=True):
        values = series.groupby("epoch_s")["value"].last().reindex(epochs).fillna(0.0)
        steps = values.diff().iloc[1:]
        fell = steps < 0
        rise = float(steps.where(~fell, values.iloc[1:]).sum())
        out.reset = out.reset or bool(fell.any())
        key = ",".join(f"{k}={v}" for k, v in parse_labels(str(labels)).items()) or "(none)"
        out.by_label[key] = rise
        out.total += rise
    return out


@dataclass
class Comparison:
    """One counter against kubetest's count."""

    metric: str
    outcome: str
    gateway: int
    kubetest: int
    match: bool
    finding: bool = False
    why: str | None = None
    by_label: dict[str, int] = field(default_factory=dict)


def _explain(c: Comparison, *, lower_bound: str | None, other: int, unanswered: int) -> Comparison:
    diff = c.gateway - c.kubetest
    if diff == 0:
        return c
    name = c.metric
    if diff < 0:
        if lower_bound:
            c.why = f"{name} rose {-diff} less than kubetest counted {c.outcome}: {lower_bound}"
            return c
        c.finding = True
        c.why = (
            f"the gateway counted {-diff} fewer ({name}) than kubetest's {c.kubetest} "
            f"{c.outcome}: with several gateway replicas the metrics URL reaches one of "
            "them (scrape each pod, or use target.prometheus_url); otherwise the gateway "
            "lost count"
        )
        return c
    slack = other + unanswered
    if diff <= slack:
        c.why = (
            f"{name} rose {diff} more than kubetest's {c.kubetest} {c.outcome}: within "
            f"{other} signals from other senders and {unanswered} requests kubetest got "
            "no answer to"
        )
        return c
    c.finding = True
    c.why = (
        f"the gateway counted {diff} more ({name}) than kubetest's {c.kubetest} "
        f"{c.outcome}, beyond {other} signals from other senders and {unanswered} "
        "unanswered requests: kubetest misread answers, or the gateway counts twice"
    )
    return c


def cross_check(
    frame: pd.DataFrame, load: dict[str, Any], source: str = "scrape"
) -> dict[str, Any]:
    """``{"status", "reason", "created": {gateway, kubetest, match, ...}, "deduplicated",
    "rejected", "findings"}`` for one load (``load``: the engine's summary)."""
    epochs = service_epochs(frame) if not frame.empty else []
    if not epochs:
        return {"status": "unavailable", "reason": "the gateway's metrics were not scraped "
                "during this test (target.metrics_url)", "findings": []}  # fmt: skip
    if not frame["metric"].astype(str).str.startswith("gateway_").any():
        return {"status": "unavailable", "reason": "the scraped metrics hold no gateway_* "
                "counter: target.metrics_url is not the gateway's (:9090/metrics)",
                "findings": []}  # fmt: skip
    outcomes = load.get("outcomes") or {}
    errors = load.get("errors") or {}
    unanswered = sum(int(errors.get(c, 0)) for c in UNANSWERED)
    delivered = sum(int(outcomes.get(o, 0)) for _, o in COUNTERS.values()) + unanswered
    received = increase(frame, RECEIVED, epochs)
    other = max(0, round(received.total) - delivered)
    start, duration = load.get("start_epoch"), load.get("duration_s")
    lower_bound = None
    if source == "prometheus":
        lower_bound = "Prometheus may not have scraped the gateway since the load ended"
    elif isinstance(start, int | float) and (
        epochs[0] > start or (isinstance(duration, int | float) and epochs[-1] < start + duration)
    ):
        lower_bound = "the scrapes did not cover the whole load"
    out: dict[str, Any] = {"status": "checked", "reason": None, "source": source,
                           "other_senders": other, "unanswered": unanswered}  # fmt: skip
    findings: list[str] = []
    for key, (metric, outcome) in COUNTERS.items():
        inc = increase(frame, metric, epochs)
        why_low = lower_bound or (
            "the counter was reset during the test (a gateway restart)" if inc.reset else None
        )
        gateway, kubetest = round(inc.total), int(outcomes.get(outcome, 0))
        c = _explain(
            Comparison(metric, outcome, gateway, kubetest, gateway == kubetest,
                       by_label={k: round(v) for k, v in inc.by_label.items() if v}),
            lower_bound=why_low, other=other, unanswered=unanswered,
        )  # fmt: skip
        out[key] = asdict(c)
        if c.finding and c.why:
            findings.append(c.why)
    out["findings"] = findings
    return out


def counter_checks(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every cross-check of a session, labelled like the integrity checks: one per load
    test (``gateway_counters``), one per Phase B phase (as ``B1 phase 3``). ``results``:
    result dicts, or ``kubetest.results.TestResult`` models (read as the JSON they hold)."""
    return per_run(results, "gateway_counters")


def counter_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per test and counter, for the report's table."""
    rows = []
    for test, chk in counter_checks(results).items():
        if chk.get("status") != "checked":
            rows.append({"test": test, "counter": "—", "gateway": None, "kubetest": None,
                         "match": "not checked", "note": chk.get("reason") or ""})  # fmt: skip
            continue
        for key in COUNTERS:
            c = chk.get(key) or {}
            verdict = "yes" if c.get("match") else ("NO" if c.get("finding") else "explained")
            rows.append({"test": test, "counter": c.get("metric", key),
                         "gateway": c.get("gateway"), "kubetest": c.get("kubetest"),
                         "match": verdict, "note": c.get("why") or ""})  # fmt: skip
    return rows


def counter_findings(results: Mapping[str, Any]) -> list[str]:
    """The mismatches nothing explains, one sentence each, named by test."""
    return [f"{test}: {why}" for test, chk in counter_checks(results).items()
            for why in chk.get("findings") or []]  # fmt: skip
