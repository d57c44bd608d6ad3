"""``kubetest load``, the guide's ``generate_synthetic_alerts.py``: its plan, its JSON, and
what it says on the terminal: the plan before, the summary after, and one warning when the
service mostly refused, so a run never ends in a silent bad number.

Units are spelled out in every line (alerts/min, minutes) because the guide's generator
takes per-minute rates and minutes, and a user reading "60, 10" expects neither.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from kubetest.engine.client import GENERATOR_ERRORS
from kubetest.engine.plan import LoadPlan, public_url
from kubetest.engine.run import run_load
from kubetest.engine.schedule import constant, poisson
from kubetest.errors import KubetestError
from kubetest.payloads import PayloadFactory
from kubetest.tls import TlsSettings

#: Below this share of answers accepted (or duplicates) ``kubetest load`` warns and exits 1.
MIN_GOOD_SHARE = 0.5


def _num(value: float) -> str:
    """A rate or duration as typed: 600, 0.5, 12.25 (no trailing zeros)."""
    if 0 < abs(value) < 0.01:
        return f"{value:g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def header_line(url: str, rate_per_min: float, duration_min: float, alerts: int) -> str:
    """The first line: what will be sent, in the units the arguments were read in."""
    return (
        f"kubetest load: {_num(rate_per_min)} alerts/min for {_num(duration_min)} min "
        f"({alerts:,} alerts) to {url}"
    )


def _latency(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def summary_line(doc: dict[str, Any]) -> str:
    """The last word on a run: sent, success (a percentage), p50/p95/p99, achieved rate."""
    rate = doc.get("success_rate")
    success = "-" if rate is None else f"{rate * 100:.1f} %"
    achieved = doc.get("achieved_rate_per_min")
    pace = "-" if achieved is None else f"{_num(achieved)} alerts/min"
    return (
        f"kubetest load: sent {doc['sent_count']:,}, success {success}, "
        f"p50 {_latency(doc.get('p50'))}, p95 {_latency(doc.get('p95'))}, "
        f"p99 {_latency(doc.get('p99'))}, achieved {pace}"
    )


def low_success_warning(doc: dict[str, Any]) -> str | None:
    """One line when fewer than ``MIN_GOOD_SHARE`` of the answers were accepted or
    duplicates (``--no-unique`` runs expect duplicates), naming what came back instead;
    ``None`` for a run that mostly worked or sent nothing."""
    outcomes: dict[str, int] = doc.get("outcomes") or {}  # answers and network errors
    errors: dict[str, int] = doc.get("errors") or {}
    answered = sum(outcomes.values())
    if not answered:
        if not doc.get("sent_count"):
            return None
        return (
            f"kubetest load: warning: none of {doc['sent_count']:,} alerts got an "
            "answer: check the URL and that the service is up"
        )
    good = outcomes.get("accepted", 0) + outcomes.get("duplicate", 0)
    if good / answered >= MIN_GOOD_SHARE:
        return None
    service = {k: n for k, n in errors.items() if k not in GENERATOR_ERRORS}
    worst = sorted(service.items(), key=lambda kv: -kv[1])[:3]
    why = ", ".join(f"{name} {n:,}" for name, n in worst if n) or "no error class"
    return (
        f"kubetest load: warning: only {good / answered * 100:.1f} % of {answered:,} requests "
        f"were accepted or duplicates (below {MIN_GOOD_SHARE * 100:.0f} %): {why}; see the records"
    )


# -- the guide's generate_synthetic_alerts.py --------------------------------------------


def run_guide_load(
    url: str,
    rate_per_min: float,
    duration_min: float,
    types: list[str],
    out_dir: Path,
    *,
    unique: bool = True,
    api: str = "webhook",
    timeout_s: float = 30.0,
    workers: int = 1,
    scheduler: str | None = None,
    records_url: str | None = None,
    progress: bool | None = None,
    auth_token_env: str | None = None,
    arrivals: str = "constant",
    max_in_flight: int = 10_000,
    seed: int = 0,
    tls: TlsSettings | None = None,
    echo: TextIO | None = None,
    client: str = "fast",
) -> Path:
    """``kubetest load``: the guide's alert generator, measured properly.

    Writes ``alert_generation_<timestamp>.json`` (the guide's ``sent_count``,
    ``success_count``, ``success_rate`` as a fraction 0..1 like every summary, and
    ``avg_response_time``, plus p50/p95/p99/max in seconds, ``achieved_rate_per_min``,
    ``schedule_lag_p99``, ``saturated``, ``outcomes``, ``complete``) and
    ``records_<timestamp>.csv`` beside it (a folder ``records_<timestamp>/`` of Parquet
    parts with ``workers`` > 1 or ``scheduler``; the Dask dashboard link is in
    ``dashboard_url``); returns the JSON path. An interrupted run still writes both,
    marked ``complete: false``. ``echo``: where the plan line (rate, duration, alerts,
    URL) goes before the load and the summary line after (``engine.guide``).
    """
    if rate_per_min <= 0 or duration_min <= 0:
        raise KubetestError("--rate and --duration must be > 0")
    try:
        payload = PayloadFactory(list(types), unique=unique, seed=seed, api=api)
    except ValueError as exc:
        raise KubetestError(str(exc)) from None
    rate_s, duration_s = rate_per_min / 60.0, duration_min * 60.0
    if arrivals == "poisson":
        sched = poisson(rate_s, duration_s, seed=seed)
    elif arrivals == "constant":
        sched = constant(rate_s, duration_s)
    else:
        raise KubetestError(f"arrivals must be constant or poisson, got {arrivals!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    suffix, n = "", 1
    while (
        (out_dir / f"alert_generation_{stamp}{suffix}.json").exists()
        or (out_dir / f"records_{stamp}{suffix}.csv").exists()
        or (out_dir / f"records_{stamp}{suffix}").exists()
    ):
        suffix, n = f"_{n}", n + 1
    stamp += suffix
    plan = LoadPlan(
        url=url,
        api=api,
        mode="open",
        schedule=sched,
        timeout_s=timeout_s,
        max_in_flight=max_in_flight,
        payload=payload,
        auth_token_env=auth_token_env,
        target_rate_per_s=rate_s,
        tls=tls or TlsSettings(),
        client=client,
    )
    if echo is not None:
        echo.write(header_line(public_url(url), rate_per_min, duration_min, len(sched)) + "\n")
        echo.flush()
    result = run_load(
        plan,
        out_dir,
        name=f"records_{stamp}",
        workers=workers,
        scheduler=scheduler,
        records_url=records_url,
        progress=progress,
        write_summary=False,
    )
    s = result.summary
    doc = {
        "sent_count": s["sent_count"],
        "success_count": s["success_count"],
        "success_rate": s["success_rate"],  # a fraction, as in ``summary``
        "avg_response_time": s["mean"],
        "p50": s["p50"],
        "p95": s["p95"],
        "p99": s["p99"],
        "max": s["max"],
        "achieved_rate_per_min": s["achieved_rate_per_s"] * 60.0,
        "target_rate_per_min": rate_per_min,
        "schedule_lag_p99": s["schedule_lag_p99"],
        "saturated": s["saturated"],
        "saturation_reasons": s["saturation_reasons"],
        "outcomes": s["outcomes"],
        "errors": s["errors"],
        "complete": s["complete"],
        "interrupted": s["interrupted"],
        "rate_per_min": rate_per_min,
        "duration_min": duration_min,
        "types": list(types),
        "records": result.records_path.name,
        "workers": s["workers"],
        "dashboard_url": s["dashboard_url"],
        "summary": s,
    }
    path = out_dir / f"alert_generation_{stamp}.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    if echo is not None:
        echo.write(summary_line(doc) + "\n")
        echo.flush()
    return path


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
