"""The engine benchmark's report: Markdown tables, ratios against the peers measured in
the same run, and the verdicts on each issue's targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.limits import FAR_FACTOR, STALL_TOL, WORKERS_2, disturbed

#: How each unit is written in the tables.
_UNITS: dict[str, Callable[[float], str]] = {
    "s": lambda v: f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.4f} s",
    "ms": lambda v: f"{v * 1e3:.2f} ms",
    "%": lambda v: f"{v * 100:+.2f} %",
    "pct": lambda v: f"{v * 100:.2f} %",
    "rate": lambda v: f"{v:,.0f}/s",
    "cpu": lambda v: f"{v:.3f} s",
    "mb": lambda v: f"{v:,.0f} MB",
    "x": lambda v: f"{v:.2f}x",
}


def _s(v: float | None, unit: str = "s") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    write = _UNITS.get(unit)
    return write(v) if write else str(v)


def _load(r: dict[str, Any]) -> str:
    """``target CPU / other load on generator core / on target core`` (shares of a core)."""
    m = r.get("machine") or {}

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.0f}%"

    mark = " (disturbed)" if disturbed(r) else ""
    if "machine_other" in m:  # generator on every core: other load on all of them
        return f"{pct(m.get('target_cpu'))} / {pct(m.get('machine_other'))} all cores{mark}"
    return (
        f"{pct(m.get('target_cpu'))} / {pct(m.get('gen_core_other'))} / "
        f"{pct(m.get('target_core_other'))}{mark}"
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _yes(flag: bool | None) -> str:
    return "**held**" if flag else "**NOT held**"


def _table(
    header: str, align: str, rows: list[tuple[str, dict[str, Any] | None]],
    cells: Callable[[dict[str, Any]], list[str]], *, needs: str | None = None,
) -> list[str]:  # fmt: skip
    """A Markdown table: ``header``, ``align``, then a line per ``(label, run)`` (a None run
    is left out). A run with an ``error`` (and, with ``needs``, no value for that key: an
    error beside a measurement is shown as a measurement) gets a line with the error."""
    width = align.count("|") - 1
    out = [header, align]
    for label, r in rows:
        if r is None:
            continue
        if "error" in r and (needs is None or r.get(needs) is None):
            out.append(f"| {label} | error: {str(r['error'])[:80]} |" + "|" * (width - 2))
        else:
            out.append(f"| {' | '.join([label, *cells(r)])} |")
    return out


def _sweep_rows(sweep: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """A rate sweep's trials as table rows, labelled by target rate (and retry)."""
    return [(f"{t['target_rate']:,.0f}{' (retry)' if t.get('retry') else ''}", t) for t in sweep]


def _sweep_cells(t: dict[str, Any], *, sharded: bool = False) -> list[str]:
    """The cells of a sweep row after the target rate; ``sharded``: the per-worker rate and
    lag after the lag, and the worker processes' CPU after the total."""
    reasons = "; ".join(t.get("saturation_reasons") or [])[:90]
    per = "; ".join(
        f"{_s(x.get('achieved_rate_per_s'), 'rate')}, {_s(x.get('schedule_lag_p99'), 'ms')}"
        + (" **sat.**" if x.get("saturated") else "")
        + ("" if x.get("status") == "ok" else f" {x.get('status')}")
        for x in t.get("per_worker") or []
    )
    return [
        _s(t.get("rate_per_s"), "rate"), _s(t.get("achieved_fraction"), "pct"),
        _s(t.get("schedule_lag_p99"), "ms"), *([per] if sharded else []),
        _s(t.get("p50")), _s(t.get("p99")), _s(t.get("loop_busy"), "pct"),
        _s(t.get("cpu_per_1k_steady_s"), "cpu"),
        *([_s(t.get("cpu_per_1k_workers_s"), "cpu")] if sharded else []),
        _load(t), "yes: " + reasons if t.get("saturated") else "no",
        "yes" if t.get("holds") else "no",
    ]  # fmt: skip


def markdown(doc: dict[str, Any]) -> str:
    out: list[str] = []
    env = doc["environment"]
    out.append(
        f"## kubetest engine benchmark ({'quick' if doc['quick'] else 'full'} run, "
        f"{doc['timestamp']})\n"
    )
    out.append(
        f"{env['cpu']}, {env['cores']} cores; target on core {env['target_core']}, "
        f"generator on core {env['generator_core']}; Python {env['python']}, "
        f"aiohttp {env['aiohttp']}, httptools {env.get('httptools')}, uvloop "
        f"{env['uvloop']}, nginx {env['nginx']}, "
        f"wrk {env['wrk']}, hey {env['hey']}, Locust {env['locust']}. Load average "
        f"(1/5/15 min) by part: {doc.get('loadavg_1_5_15')}.\n"
    )

    slow = doc.get("slow")
    if slow:
        out.append(
            f"### 1. Server answering in exactly {slow['delay_s']:g} s, "
            f"{slow['rate']:g} req/s for {slow['duration_s']} s\n"
        )
        out += _table(
            "| tool | mode | requests | success | rate | rate err | p50 | p50 err | "
            "p99 | p99 err | max | target CPU / other on gen. / target core |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            [(r["tool"], r) for r in slow["runs"]],
            lambda r: [
                r.get("mode", ""), str(r.get("requests", "-")), _s(r.get("success_rate"), "pct"),
                _s(r.get("rate_per_s"), "rate"), _s(r.get("rate_error"), "%"), _s(r.get("p50")),
                _s(r.get("p50_error"), "%"), _s(r.get("p99")), _s(r.get("p99_error"), "%"),
                _s(r.get("max")), _load(r),
            ],
            needs="p50",
        )  # fmt: skip
        e = slow["runs"][0]
        rc = e.get("records_check") or {}
        out.append(
            f"\nEngine schedule lag p99 {_s(e.get('schedule_lag_p99'), 'ms')}, max in "
            f"flight {e.get('max_in_flight_seen')}; p50/p99 recomputed from the records: "
            f"{_s(rc.get('p50'))} / {_s(rc.get('p99'))}.\n"
        )

    ng = doc.get("nginx")
    if ng:
        out.append(
            f"### 2. nginx: open-loop rate sweep ({ng['step_s']} s per step; held = lag "
            f"p99 < 10 ms, achieved >= 99 %, not saturated)\n"
        )
        for one in (ng, ng.get("aiohttp")):
            if not one:
                continue
            client = one.get("client", "fast")
            out.append(f"#### 1 worker, {client} client\n")
            out += _table(
                "| target | achieved | achieved % | lag p99 | p50 | p99 | loop busy | "
                "CPU/1k req | nginx CPU / other on gen. / target core | saturated | held |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
                _sweep_rows([*one["sweep"], one["far_beyond"]]),
                _sweep_cells,
            )
            far = one["far_beyond"]
            held = one.get("engine_at_max") or {}
            out.append(
                f"\n{client}: max held open-loop rate **{_s(one['max_held_rate'], 'rate')}**"
                f" (first failing step {_s(one['first_failing_rate'], 'rate')}); rate at which "
                f"its event loop would be 100 % busy (rate / loop busy, median of the held "
                f"steps): {_s(one.get('loop_bound_rate'), 'rate')}. Far beyond "
                f"({far.get('target_rate', 0):,.0f}/s asked): {_s(far.get('rate_per_s'), 'rate')}"
                f" sent, saturated={far.get('saturated')}, {far.get('late')} late and "
                f"{far.get('dropped')} dropped arrivals counted, peak RSS "
                f"{_s(far.get('max_rss_mb'), 'mb')} (at its max held rate: "
                f"{_s(held.get('max_rss_mb'), 'mb')}); records "
                f"{'sampled' if far.get('records_sampled') else 'all kept'}.\n"
            )
        two = ng.get("workers2")
        if two:
            w = two.get("workers", WORKERS_2)
            out.append(f"#### The same sweep with {w} workers (shards on a local Dask cluster)\n")
            out += _table(
                "| target | achieved | achieved % | lag p99 | per worker: rate, lag p99 | "
                "p50 | p99 | loop busy (busiest) | CPU/1k req (all processes) | "
                "CPU/1k req (workers) | nginx CPU / other load | saturated | held |",
                "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|",
                _sweep_rows(
                    [*two["sweep"], *([two["far_beyond"]] if two.get("far_beyond") else [])]
                ),
                lambda t: _sweep_cells(t, sharded=True),
            )
            out.append(
                f"\n{w} workers: max held open-loop rate **{_s(two['max_held_rate'], 'rate')}**"
                f" (first failing step {_s(two['first_failing_rate'], 'rate')}); rate at which "
                f"the busiest shard's event loop would be 100 % busy (median of the held "
                f"steps): {_s(two.get('loop_bound_rate'), 'rate')}. Not pinned: the "
                f"generator's processes (client and Dask scheduler, {w} workers) use both "
                f"cores, so nginx, pinned to core {env['target_core']}, shares its core with "
                f"them. CPU/1k req sums the processes' CPU (per pid, /proc); 'workers' is the "
                f"worker processes' share. Other load = all cores' busy time less the "
                f"generator's processes and nginx, in cores.\n"
            )
        rows = []
        for one in (ng, ng.get("aiohttp") or {}):
            at_max, at_2000 = one.get("engine_at_max"), one.get("engine_at_2000")
            label = f"kubetest {one.get('client', 'fast')}, 1 worker"
            rows += [(label, at_max), (label, at_2000 if at_2000 is not at_max else None)]
        if two:
            m2, a2 = two.get("engine_at_max"), two.get("engine_at_2000")
            label = f"kubetest fast, {two.get('workers', WORKERS_2)} workers"
            rows += [(label, m2), (label, a2 if a2 is not m2 else None)]
        rows += [(r["tool"], r) for r in ng["peers"]]

        def errors(r: dict[str, Any]) -> str:
            n = r.get("errors")
            return str(sum(n.values()) if isinstance(n, dict) else n)

        out += _table(
            "| tool | mode | rate | p50 | p99 | CPU used (cores) | CPU/1k req (steady) "
            "| CPU/1k req (whole process) | errors | nginx CPU / other on gen. / target core |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
            [(tool, r or None) for tool, r in rows],
            lambda r: [
                r.get("mode", ""), _s(r.get("rate_per_s"), "rate"), _s(r.get("p50")),
                _s(r.get("p99")), _s(r.get("utilisation"), "x").rstrip("x"),
                _s(r.get("cpu_per_1k_steady_s"), "cpu"), _s(r.get("cpu_per_1k_total_s"), "cpu"),
                errors(r), _load(r),
            ],
            needs="rate_per_s",
        )  # fmt: skip
        bound = [r["tool"] for r in ng["peers"] if not r.get("at_fixed_rate")
                 and r.get("utilisation") is not None and r["utilisation"] < 0.8]  # fmt: skip
        if bound:
            out.append(
                f"\n{', '.join(bound)}: used under 80 % of the generator core at its maximum, "
                "so nginx (one worker, one core) was the limit, not the tool."
            )
        out.append("")

    st = doc.get("stall")
    if st:
        out.append(
            f"### 3. Stall server: {st['stall_s']:g} s stall every {st['period_s']:g} s "
            f"(otherwise {st['base_s'] * 1e3:g} ms), {st['duration_s']} s\n"
        )
        out.append(
            f"Analytic p99 = base + S - (1 - q) T = {st['analytic_p99']:.3f} s "
            f"({st['held_fraction']:.0%} of open-loop arrivals are held).\n"
        )
        out += _table(
            "| tool | mode | requests | rate | p50 | p99 | p99 / analytic | max | "
            "target CPU / other on gen. / target core |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
            [(r["tool"], r) for r in st["runs"]],
            lambda r: [
                r.get("mode", ""), str(r.get("requests", "-")), _s(r.get("rate_per_s"), "rate"),
                _s(r.get("p50")), _s(r.get("p99")), _s(r.get("p99_vs_analytic"), "x"),
                _s(r.get("max")), _load(r),
            ],
            needs="p99",
        )  # fmt: skip
        if any(r.get("co_corrected") for r in st["runs"]):
            out.append(
                "\nwrk 4 (Debian's) is closed-loop but, after the run, back-fills its histogram "
                "(`stats_correct`: each latency above the mean per-connection interval adds "
                "synthetic samples at that interval), so its p99 approximates the stall; "
                "hey and Locust report what they measured from the actual send."
            )
        out.append("")

    out.append("### Ratios (same run)\n")
    out.append("| ratio | value |")
    out.append("|---|---:|")
    for name, value in doc["ratios"].items():
        out.append(f"| {name} | {_s(value, 'x')} |")
    out.append("\n### Issue 3 and issue 21 targets\n")
    out.append("| target | measured | status |")
    out.append("|---|---|---|")
    for name, measured, flag in doc["verdicts"]:
        out.append(f"| {name} | {measured} | {_yes(flag)} |")
    return "\n".join(out) + "\n"


def ratios(doc: dict[str, Any]) -> dict[str, float | None]:
    r: dict[str, float | None] = {}
    ng = doc.get("nginx")
    if ng:
        best = ng.get("max_held_rate")
        at_max = ng.get("engine_at_max") or {}
        at_2000 = ng.get("engine_at_2000") or {}
        two = ng.get("workers2") or {}
        w = f"{two.get('workers', WORKERS_2)} workers"
        best2 = two.get("max_held_rate")
        max2 = two.get("engine_at_max") or {}
        at2000_2 = two.get("engine_at_2000") or {}
        aio = ng.get("aiohttp") or {}
        if aio:  # the fast client (the engine's default) against the aiohttp one
            r["engine max open-loop rate: fast / aiohttp client"] = _ratio(
                best, aio.get("max_held_rate")
            )
            for key, a, b in (
                ("@max", at_max, aio.get("engine_at_max") or {}),
                ("@2000/s", at_2000, aio.get("engine_at_2000") or {}),
            ):
                r[f"CPU/1k req: engine fast / aiohttp client, each {key}"] = _ratio(
                    a.get("cpu_per_1k_steady_s"), b.get("cpu_per_1k_steady_s")
                )
        if two:
            r[f"engine max open-loop rate: {w} / 1 worker"] = _ratio(best2, best)
            r[f"CPU/1k req: engine {w} / 1 worker, both @2000/s"] = _ratio(
                at2000_2.get("cpu_per_1k_steady_s"), at_2000.get("cpu_per_1k_steady_s")
            )
            r[f"CPU/1k req: engine {w} @max / 1 worker @max"] = _ratio(
                max2.get("cpu_per_1k_steady_s"), at_max.get("cpu_per_1k_steady_s")
            )
        for p in ng["peers"]:
            if p.get("rate_per_s") is None:
                continue
            label = f"{p['tool']}{' @2000/s' if p.get('at_fixed_rate') else ''}"
            if not p.get("at_fixed_rate"):
                r[f"engine max open-loop rate / {label} closed-loop max"] = _ratio(
                    best, p["rate_per_s"]
                )
                r[f"CPU/1k req: engine @max / {label} @max"] = _ratio(
                    at_max.get("cpu_per_1k_steady_s"), p.get("cpu_per_1k_steady_s")
                )
                if two:
                    r[f"engine {w} max open-loop rate / {label} closed-loop max"] = _ratio(
                        best2, p["rate_per_s"]
                    )
                    r[f"CPU/1k req: engine {w} @max / {label} @max"] = _ratio(
                        max2.get("cpu_per_1k_steady_s"), p.get("cpu_per_1k_steady_s")
                    )
            else:
                r[f"CPU/1k req: engine @2000/s / {label}"] = _ratio(
                    at_2000.get("cpu_per_1k_steady_s"), p.get("cpu_per_1k_steady_s")
                )
                if two:
                    r[f"CPU/1k req: engine {w} @2000/s / {label}"] = _ratio(
                        at2000_2.get("cpu_per_1k_steady_s"), p.get("cpu_per_1k_steady_s")
                    )
    slow = doc.get("slow")
    if slow:
        e = slow["runs"][0]
        for p in slow["runs"][1:]:
            if p.get("p99_error") and e.get("p99_error") is not None:
                r[f"slow server p99 error: engine / {p['tool']}"] = _ratio(
                    e["p99_error"], p["p99_error"]
                )
    st = doc.get("stall")
    if st:
        e = st["runs"][0]
        for p in st["runs"][1:]:
            if p.get("p99"):
                r[f"stall p99: engine / {p['tool']}"] = _ratio(e.get("p99"), p["p99"])
    return r


def verdicts(doc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    v: list[tuple[str, str, bool]] = []
    slow = doc.get("slow")
    if slow:
        e, t = slow["runs"][0], slow["targets"]
        v += [
            ("slow 2 s @300/s: 100 % success",
             f"{_s(e.get('success_rate'), 'pct')}, not sent {e.get('late_or_dropped')}",
             t["success_100"]),
            ("slow: p50 within +2 % of 2.0 s", _s(e.get("p50_error"), "%"), t["p50_within_2pct"]),
            ("slow: p99 within +4 % of 2.0 s", _s(e.get("p99_error"), "%"), t["p99_within_4pct"]),
            ("slow (issue 21): fast client p99 within +0.2 % of 2.0 s",
             _s(e.get("p99_error"), "%"), t["p99_within_0.2pct"]),
            ("slow: achieved rate within 1 % of 300/s",
             f"{_s(e.get('rate_per_s'), 'rate')} ({_s(e.get('rate_error'), '%')})",
             t["rate_within_1pct"]),
        ]  # fmt: skip
    ng = doc.get("nginx")
    if ng:
        far = ng["far_beyond"]
        calm = ng.get("engine_at_max") or ng.get("engine_at_2000") or {}
        v += [
            ("nginx: hold >= 3,000/s open loop (lag p99 < 10 ms, >= 99 %, not saturated)",
             f"max held {_s(ng['max_held_rate'], 'rate')}", ng["targets"]["holds_3000"]),
            ("nginx: far beyond the ceiling reports saturated",
             f"{far['target_rate']:,.0f}/s asked, {_s(far.get('rate_per_s'), 'rate')} sent, "
             f"saturated={far.get('saturated')}", ng["targets"]["saturated_far_beyond"]),
            ("nginx (issue 21): fast client holds >= 20,000/s on one core",
             f"max held {_s(ng['max_held_rate'], 'rate')}", ng["targets"]["fast_holds_20000"]),
            ("nginx (issue 21): fast client CPU/1k req <= 0.05 s at its max held rate",
             _s((ng.get("engine_at_max") or {}).get("cpu_per_1k_steady_s"), "cpu"),
             ng["targets"]["fast_cpu_per_1k"]),
            (f"nginx (issue 21): {FAR_FACTOR}x the ceiling: arrivals not sent on time counted "
             "(late or dropped at the in-flight cap), memory bounded",
             f"{far.get('late')} late, {far.get('dropped')} dropped; peak RSS "
             f"{_s(far.get('max_rss_mb'), 'mb')} vs "
             f"{_s(calm.get('max_rss_mb'), 'mb')} at a rate it held (bounded: < 2x)",
             ng["targets"]["far_beyond_counts_late"]
             and ng["targets"]["far_beyond_memory_bounded"]),
        ]  # fmt: skip
    st = doc.get("stall")
    if st:
        e = st["runs"][0]
        v += [
            (f"stall: open-loop p99 reflects the stall (within {STALL_TOL:.0%} of analytic)",
             f"{_s(e.get('p99'))} vs {st['analytic_p99']:.3f} s",
             st["targets"]["engine_p99_matches_analytic"]),
            ("stall: closed-loop peers without CO correction hide it (p99 < 10 % of analytic)",
             ", ".join(f"{r['tool']} {_s(r.get('p99'))}" for r in st["runs"][1:]
                       if not r.get("co_corrected") and "client" not in r),
             st["targets"]["closed_loop_hides_stall"]),
        ]  # fmt: skip
    return v
